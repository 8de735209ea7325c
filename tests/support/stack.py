"""The local stack as the end-to-end tests run it: `learnflow serve` in a subprocess on free
ports (`run_stack`), and what a test needs of it (`Stack`; tests/e2e/conftest.py describes it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from learnflow_cli.admin.service import Admin

ROOT = Path(__file__).resolve().parents[2]
# The banner line of the Stripe-compatible server: `  Payments   http://127.0.0.1:<port> (local; …`
PAYMENTS = re.compile(r"^ +Payments +(http://\S+)", re.MULTILINE)
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


def _read(log_file: Path) -> str:
    return log_file.read_text(encoding="utf-8", errors="replace")


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
def run_stack(tmp: Path, *options: str, stripe_port: str | None = "0") -> Iterator[Stack]:
    """`learnflow serve --port 0 --stripe-port 0` as a user runs it (with `options`; without
    --stripe-port when `stripe_port` is None), until its keys file and its banner appear; then
    Ctrl-C, which must end it with status 0 and no process left. With every port the system's
    pick, stacks (one per pytest-xdist worker, or another `make run`) never clash."""
    keys_file = tmp / "keys.json"
    log_file = tmp / "serve.log"
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
        *(() if stripe_port is None else ("--stripe-port", stripe_port)),
        "--keys-file",
        str(keys_file),
        *options,
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    stack: Stack | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not keys_file.exists() or not (payments := PAYMENTS.search(_read(log_file))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"learnflow serve did not start:\n{_read(log_file)}")
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
            stripe_url=payments.group(1),
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
