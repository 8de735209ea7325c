"""The stack under load: starting our own `learnflow serve`, finding a running one's process,
and sampling its memory from /proc."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loadtest.accounts import KeysFile, SetupError, learnflow_command

START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
SAMPLE_EVERY = 0.5
PROC = Path("/proc")
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
# The banner line of the local Stripe server: `  Payments   http://127.0.0.1:<port> (local; …`
PAYMENTS = re.compile(r"^ +Payments +(http://\S+) \(local;", re.MULTILINE)


@dataclass(slots=True)
class OwnStack:
    keys_file: KeysFile
    process: subprocess.Popen[bytes]
    log: Path
    stripe_url: str | None  # the local Stripe-compatible server, from the banner
    keep_log: bool = False  # set it to keep the console log (moved out of the directory)
    exit_code: int | None = None


@contextmanager
def own_stack() -> Iterator[OwnStack]:
    """`learnflow serve --port 0` in a temporary directory, stopped with SIGINT (Ctrl-C) at the
    end; the directory goes with it, and the console log too unless `keep_log` is set."""
    directory = Path(tempfile.mkdtemp(prefix="learnflow-load-"))
    keys_path, log_path = directory / "keys.json", directory / "serve.log"
    # A developer's AWS_ENDPOINT_URL would point serve at another DynamoDB (and skip moto): the
    # load test's own stack is self-contained, as the end-to-end tests' is.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "LEARNFLOW_STRIPE_API_BASE")
    }
    env["PYTHONUNBUFFERED"] = "1"
    command = [*learnflow_command(), "serve", "--port", "0", "--stripe-port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own console entry point
            [*command, "--keys-file", str(keys_path)], env=env, stdout=log, stderr=log
        )
    stack: OwnStack | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while stack is None:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SetupError(f"learnflow serve did not start:\n{tail}")
            # The keys file is written whole (renamed into place) once the stack is ready, and the
            # banner naming the Stripe server follows it.
            payments = PAYMENTS.search(log_path.read_text(errors="replace"))
            if keys_path.exists() and payments:
                stack = OwnStack(KeysFile.read(keys_path), process, log_path, payments.group(1))
            else:
                time.sleep(0.05)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if stack is not None:
            stack.exit_code = code
            if stack.keep_log:
                stack.log = Path(tempfile.gettempdir()) / f"{directory.name}-serve.log"
                shutil.move(log_path, stack.log)
        shutil.rmtree(directory, ignore_errors=True)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _parents() -> dict[int, int]:
    """pid → parent pid of every process we can see."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (in parentheses) may hold spaces and parentheses itself
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (the topmost one, when forked children inherited
    the socket), from /proc/net/tcp and /proc/*/fd; None where /proc cannot tell."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return None
    holders: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            holders.add(int(entry.name))
    parents = _parents()
    top = [pid for pid in holders if parents.get(pid) not in holders]
    return min(top) if top else None


def _family(pid: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, pending = {pid}, [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0  # gone, or a kernel thread


@dataclass(slots=True)
class MemoryFigures:
    pid: int
    samples: int = 0
    first_mib: float = 0.0
    peak_mib: float = 0.0
    last_mib: float = 0.0
    processes_at_peak: int = 0


class MemorySampler:
    """The stack's resident memory every 0.5 s: the sum of VmRSS over the serve process and all
    its descendants (moto, the forkserver, every Lambda worker). Shared pages of forked workers
    count once per process, as VmRSS does."""

    def __init__(self, pid: int) -> None:
        self.figures = MemoryFigures(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self._sample()

    def _sample(self) -> None:
        if not (PROC / str(self.figures.pid)).exists():
            return  # stopped: keep the figures we have
        family = _family(self.figures.pid, _parents())
        mib = sum(_rss_kib(pid) for pid in family) / 1024
        figures = self.figures
        if figures.samples == 0:
            figures.first_mib = mib
        figures.samples += 1
        figures.last_mib = mib
        if mib > figures.peak_mib:
            figures.peak_mib, figures.processes_at_peak = mib, len(family)
