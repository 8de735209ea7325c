"""The `stack` fixture: one `learnflow serve` per test session, a subprocess on free ports.

`stack` (session scope) is a `Stack` with:

- `api` — the API base URL, `http://127.0.0.1:<port>/v2`; `stack.url("/courses")` joins a path.
- `accounts` — the two seeded `Account`s (`.id`, `.plan`, `.keys["test"|"live"]`);
  `stack.standard` and `stack.pro` pick one by plan. Standard allows 60 requests a minute per
  mode, Pro 300: tests that make many requests should use `stack.create_account("pro")`.
- `env` — the keys file's `env` (point boto3 or the `learnflow` CLI at the running stack).
- `keys_file` — the keys file (docs/local-stack.md); `stripe_url` — the Stripe-compatible server.
- `headers(secret)` — `{"Authorization": "Bearer <secret>"}`.
- `create_account(plan="pro")` — a fresh `Account` with test and live secret keys, made through
  the administration API against the stack; `create_key(account_id, mode, permissions=None)` —
  a new key as the admin API returns it (`["id"]`, `["secret"]`; restricted when `permissions`
  is given); `revoke_key(key_id)`;
  `admin()` — the `Admin` itself; `session()` — a boto3 session with the stack's credentials and
  region (pass `endpoint_url=stack.env["AWS_ENDPOINT_URL"]`); `table()` — the stack's boto3 Table.
- `log()` — everything the stack has printed so far; `log_line(request_id)` — the console line
  of one request (`… <status> <ms> ms <function or (gateway)> [auth <ms> ms] … req <id>`).

At the end of the session the stack gets SIGINT (Ctrl-C) and must exit with status 0, leaving no
process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from learnflow_cli.admin.service import Admin

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    plan: str
    keys: dict[str, str]  # mode → secret


@dataclass(slots=True)
class Stack:
    api: str
    accounts: list[Account]
    env: dict[str, str]
    keys_file: Path
    log_file: Path
    stripe_url: str
    process: subprocess.Popen[bytes]
    _admin: Admin | None = field(default=None, repr=False)

    @property
    def standard(self) -> Account:
        return next(account for account in self.accounts if account.plan == "standard")

    @property
    def pro(self) -> Account:
        return next(account for account in self.accounts if account.plan == "pro")

    def url(self, path: str) -> str:
        return self.api + path

    @staticmethod
    def headers(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def log_line(self, request_id: str, timeout: float = 5.0) -> str:
        """The console line of one request (it is written just after the response is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if line.endswith(f"req {request_id}"):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line for request {request_id}")
            time.sleep(0.05)

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        )

    def table(self) -> Table:
        resource = self.session().resource("dynamodb", endpoint_url=self.env["AWS_ENDPOINT_URL"])
        return resource.Table(self.env["LEARNFLOW_TABLE"])

    def admin(self) -> Admin:
        if self._admin is None:
            from learnflow_cli.admin.service import Admin  # noqa: PLC0415 - imports the layer

            apigateway = self.session().client(
                "apigateway", endpoint_url=self.env["AWS_ENDPOINT_URL"]
            )
            plans = {
                plan: self.env[f"LEARNFLOW_USAGE_PLAN_{plan.upper()}"]
                for plan in ("standard", "pro")
            }
            self._admin = Admin(table=self.table(), apigateway=apigateway, usage_plans=plans)
        return self._admin

    def create_account(self, plan: str = "pro") -> Account:
        created = self.admin().create_account(f"e2e {plan}", plan)
        keys = {
            mode: self.create_key(str(created["id"]), mode)["secret"] for mode in ("test", "live")
        }
        return Account(id=str(created["id"]), plan=plan, keys=keys)

    def create_key(
        self, account_id: str, mode: str, permissions: list[str] | None = None
    ) -> dict[str, Any]:
        return self.admin().create_key(account_id, mode, permissions)

    def revoke_key(self, key_id: str) -> None:
        self.admin().revoke_key(key_id)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc; elsewhere nothing is checked)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pids = {int(child) for child in children.read_text().split()}
            except OSError:
                continue
            pending.extend(pids - found)
            found |= pids
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@contextmanager
def run_stack(tmp: Path) -> Iterator[Stack]:
    """`learnflow serve --port 0` as a user runs it, until the keys file appears."""
    keys_file = tmp / "keys.json"
    log_file = tmp / "serve.log"
    stripe_port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "LEARNFLOW_STRIPE_API_BASE")
    }
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-c",
        "from learnflow_cli.main import cli; cli()",
        "serve",
        "--port",
        "0",
        "--stripe-port",
        str(stripe_port),
        "--keys-file",
        str(keys_file),
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    stack: Stack | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not keys_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"learnflow serve did not start:\n{log_file.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        document = json.loads(keys_file.read_text())
        stack = Stack(
            api=document["api"],
            accounts=[
                Account(item["id"], item["plan"], dict(item["keys"]))
                for item in document["accounts"]
            ],
            env=dict(document["env"]),
            keys_file=keys_file,
            log_file=log_file,
            stripe_url=f"http://127.0.0.1:{stripe_port}",
            process=process,
        )
        yield stack
    finally:
        children = _descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = sorted(pid for pid in children if _alive(pid))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    if stack is not None and (code != 0 or left):
        raise AssertionError(
            f"learnflow serve stopped with status {code}, leaving {len(left)} process(es):\n"
            + log_file.read_text(errors="replace")[-4000:]
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running local stack (see the module docstring)."""
    with run_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
