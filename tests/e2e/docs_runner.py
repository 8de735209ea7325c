"""Runs the examples of a Markdown reference in one bash session and compares their responses.

The format (docs/api.md, section 1): a fenced block whose info string is `sh example` holds one
command; it is immediately followed (blank lines aside) by a fenced block `json response` holding
the response the command must produce. A command that saves an id in a variable
(`VAR=$(curl … | tee /dev/stderr | python3 -c '…')`) writes the response to standard error;
any other writes it to standard output. All examples run in document order in one bash process,
so variables carry from one to the next.

Responses compare structurally: the same keys at every level, lists item by item, the same
values (numbers exactly, `true` only as `true`), except that an expected string ending in `…`
(U+2026) stands for any string that starts with what precedes the `…`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

ELLIPSIS = "\u2026"
FENCE = re.compile(r"^```(.*)$")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=\$\(")


class FormatError(Exception):
    """The reference breaks its own example format."""


@dataclass(frozen=True, slots=True)
class Example:
    index: int  # 1-based, in document order
    line: int  # of the `sh example` fence
    command: str
    expected_text: str
    expected: Any

    @property
    def writes_to_stderr(self) -> bool:
        return "tee /dev/stderr" in self.command

    @property
    def variable(self) -> str | None:
        """The shell variable the command saves an id in (`COURSE=$(…)`), if any."""
        found = ASSIGNMENT.match(self.command.strip())
        return found.group(1) if found else None

    @property
    def title(self) -> str:
        first = self.command.strip().splitlines()[0]
        return f"block {self.index} (docs/api.md line {self.line}): {first}"


@dataclass(frozen=True, slots=True)
class _Block:
    info: str
    body: str
    line: int
    end: int  # the line of the closing fence


def _blocks(markdown: str) -> list[_Block]:
    blocks: list[_Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise FormatError(f"line {start + 1}: a fenced block that never closes")
        blocks.append(_Block(opening.group(1).strip(), "\n".join(body) + "\n", start + 1, i + 1))
        i += 1
    return blocks


def _loads(text: str) -> Any:
    # Decimals, so that 49.99 is compared as written and not as a binary float
    return json.loads(text, parse_float=Decimal)


def parse_examples(markdown: str) -> list[Example]:
    """Every `sh example` with its `json response`, in document order."""
    blocks = _blocks(markdown)
    lines = markdown.splitlines()
    examples: list[Example] = []
    for position, block in enumerate(blocks):
        if block.info == "json response" and (
            position == 0 or blocks[position - 1].info != "sh example"
        ):
            raise FormatError(f"line {block.line}: a `json response` without its `sh example`")
        if block.info != "sh example":
            continue
        if position + 1 == len(blocks) or blocks[position + 1].info != "json response":
            raise FormatError(f"line {block.line}: an `sh example` without a `json response`")
        response = blocks[position + 1]
        between = lines[block.end : response.line - 1]
        if any(line.strip() for line in between):
            raise FormatError(
                f"line {block.line}: text between the `sh example` and its `json response`"
            )
        try:
            expected = _loads(response.body)
        except ValueError as error:
            raise FormatError(f"line {response.line}: the response is not JSON: {error}") from None
        examples.append(
            Example(len(examples) + 1, block.line, block.body, response.body.strip(), expected)
        )
    return examples


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: True is an int to Python, not to JSON
    (int, "integer"),
    (Decimal, "decimal number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Where `actual` departs from `expected` (empty when it matches), one line each."""
    if _kind(expected) != _kind(actual):
        return [f"{path}: expected {_kind(expected)} {expected!r}, got {_kind(actual)} {actual!r}"]
    if isinstance(expected, dict):
        return _object_differences(expected, actual, path)
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} item(s), got {len(actual)}"]
        return [
            line
            for n, (want, got) in enumerate(zip(expected, actual, strict=True))
            for line in differences(want, got, f"{path}[{n}]")
        ]
    if isinstance(expected, str) and expected.endswith(ELLIPSIS):
        prefix = expected[: -len(ELLIPSIS)]
        matches = actual.startswith(prefix)
        return [] if matches else [f"{path}: expected {prefix!r}…, got {actual!r}"]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def _object_differences(expected: dict[str, Any], actual: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    missing = [key for key in expected if key not in actual]
    extra = [key for key in actual if key not in expected]
    if missing:
        found.append(f"{path}: missing key(s) {missing}")
    if extra:
        found.append(f"{path}: unexpected key(s) {extra}")
    for key, value in expected.items():
        if key in actual:
            found.extend(differences(value, actual[key], f"{path}.{key}"))
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    stdout: str
    stderr: str
    status: int | None  # the block's exit status; None if it did not finish in time
    seconds: float


class BashSession:
    """One `bash` process fed one block at a time over stdin; each block is followed by a
    sentinel on both streams, and its output is what comes before the sentinels."""

    def __init__(self, env: dict[str, str]) -> None:
        self._token = uuid.uuid4().hex
        self._process = subprocess.Popen(
            ["/bin/bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._stdout: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: queue.Queue[bytes | None] = queue.Queue()
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        for stream, lines in (
            (self._process.stdout, self._stdout),
            (self._process.stderr, self._stderr),
        ):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True).start()
        self._count = 0
        self._broken = False
        self._send("set -o pipefail\n")

    @staticmethod
    def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(None)

    def _send(self, text: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(text.encode())
        self._process.stdin.flush()

    def run(self, script: str, timeout: float) -> Outcome:
        if self._broken:
            return Outcome("", "(the bash session ended with an earlier block)", None, 0.0)
        self._count += 1
        sentinel = f"__end_of_block_{self._count}_{self._token}__"
        started = time.monotonic()
        try:
            self._send(
                f"{script.rstrip()}\n"
                f"__status=$?; printf '\\n%s %s\\n' '{sentinel}' \"$__status\"; "
                f"printf '\\n%s\\n' '{sentinel}' >&2\n"
            )
        except BrokenPipeError:
            self._broken = True
            return Outcome("", "(the bash session has ended)", None, 0.0)
        deadline = started + timeout
        stdout, status = self._collect(self._stdout, sentinel, deadline)
        stderr, done = self._collect(self._stderr, sentinel, deadline)
        if status is None or done is None:
            status = None
            self._broken = True
        return Outcome(stdout, stderr, status, time.monotonic() - started)

    def _collect(
        self, lines: queue.Queue[bytes | None], sentinel: str, deadline: float
    ) -> tuple[str, int | None]:
        got: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                break
            if line is None:
                break
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            if text.startswith(sentinel):
                output = b"".join(got).decode("utf-8", errors="replace")
                # the sentinel's own leading newline
                output = output.removesuffix("\n")
                rest = text[len(sentinel) :].strip()
                return output, int(rest) if rest else 0
            got.append(line)
        return b"".join(got).decode("utf-8", errors="replace"), None

    def close(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
