"""The keys the load runs with: fresh Pro accounts from the admin CLI, or the keys file's own,
and the per-minute request budget that keeps every client under its account's rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAN_LIMITS = {"standard": 60, "pro": 300}  # docs/api.md §7, requests a minute per account and mode
WINDOW = 60  # rate-limit windows are aligned to the UTC minute
ADMIN_TIMEOUT = 60.0
ADMIN_PARALLEL = 4


class SetupError(Exception):
    """The run cannot start: a bad option, a stack that did not come up, a key that fails."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One account and mode: what a rate limit counts, with the secret key used for it."""

    account: str
    mode: str
    secret: str
    limit: int  # requests a minute
    plan: str

    @property
    def name(self) -> str:
        return f"{self.account}/{self.mode}"


@dataclass(frozen=True, slots=True)
class KeysFile:
    api: str
    accounts: list[dict[str, Any]]
    env: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> KeysFile:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                api=str(document["api"]),
                accounts=list(document["accounts"]),
                env={str(k): str(v) for k, v in (document.get("env") or {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SetupError(f"cannot read the keys file {path}: {error}") from None

    def scopes(self) -> list[Scope]:
        return [
            Scope(
                str(account["id"]),
                mode,
                str(secret),
                PLAN_LIMITS.get(account["plan"], 60),
                str(account["plan"]),
            )
            for account in self.accounts
            for mode, secret in sorted(account["keys"].items())
        ]


def learnflow_command() -> list[str]:
    """The admin CLI of this interpreter's environment (`.venv/bin/learnflow`)."""
    script = Path(sys.executable).with_name("learnflow")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from learnflow_cli.main import cli; cli()"]


class Admin:
    """`learnflow … --json` with the keys file's env pointing it at the stack."""

    def __init__(self, env: dict[str, str]) -> None:
        # Only what the CLI needs: a developer's AWS_PROFILE or session token must not point it
        # anywhere else than the keys file says.
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - a fallback HOME, nothing written
            **env,
        }

    def run(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(  # noqa: S603 - our own console entry point
            [*learnflow_command(), *args, "--json"],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=ADMIN_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise SetupError(
                f"learnflow {' '.join(args)} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    def pro_scope(self, name: str) -> Scope:
        """A fresh Pro account and its test secret key: a rate limit nothing else touches."""
        account = self.run("accounts", "create", "--name", name, "--plan", "pro")
        key = self.run("keys", "create", "--account", str(account["id"]), "--mode", "test")
        limit = int(account.get("rate_limit") or PLAN_LIMITS["pro"])
        return Scope(str(account["id"]), "test", str(key["secret"]), limit, "pro")

    def pro_scopes(self, count: int, run_id: str) -> list[Scope]:
        with ThreadPoolExecutor(ADMIN_PARALLEL) as pool:
            return list(pool.map(lambda n: self.pro_scope(f"load {run_id} #{n}"), range(count)))


class Budget:
    """Requests this run sent per scope in each UTC minute.

    The load must measure the API, not the rate limiter: every client takes a slot before a
    request, and waits for the next minute when its share of the scope's limit is used up.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def take(
        self,
        scope: Scope,
        share: float,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> bool:
        """A slot under `share` of the limit in the current minute; False once `stop` is set or
        the next minute would come after `deadline` (a `time.monotonic()` value)."""
        ceiling = max(1, int(scope.limit * share))
        while time.monotonic() < deadline:
            now = self._clock()
            minute = int(now // WINDOW)
            with self._lock:
                used = self._counts.get((scope.name, minute), 0)
                if used < ceiling:
                    self._counts[(scope.name, minute)] = used + 1
                    return True
            wait = (minute + 1) * WINDOW - now + 0.05
            if time.monotonic() + wait > deadline:
                return False
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):
                return False
        return False

    def busiest(self) -> tuple[str, int]:
        """The scope and count of the busiest scope-minute (what the rate limit saw at most)."""
        with self._lock:
            if not self._counts:
                return "", 0
            (name, _minute), count = max(self._counts.items(), key=lambda item: item[1])
            return name, count
