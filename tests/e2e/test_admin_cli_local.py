"""The administration CLI against the running local stack, as a user would drive it.

The `learnflow` command runs as a subprocess with nothing but the keys file's `env`
(docs/local-stack.md) pointing it at the stack; every key it issues is then used over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.client import Client

if TYPE_CHECKING:
    from tests.support.stack import Stack


def learnflow(stack: Stack, *args: str) -> dict[str, Any]:
    """`learnflow <args> --json` with the keys file's env: exactly one JSON object on stdout."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        **stack.env,
    }
    done = subprocess.run(  # noqa: S603 - our own console entry point
        [sys.executable, "-c", "from learnflow_cli.main import cli; cli()", *args, "--json"],
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)  # one object, nothing else on stdout
    return parsed


@pytest.fixture(scope="module")
def account(stack: Stack) -> dict[str, Any]:
    return learnflow(stack, "accounts", "create", "--name", "CLI Academy", "--plan", "pro")


def test_cli_issues_a_working_key_and_lists_it_without_the_secret(
    stack: Stack, account: dict[str, Any]
) -> None:
    created = learnflow(stack, "keys", "create", "--account", account["id"], "--mode", "test")
    assert created["secret"].startswith("sk_test_")
    assert Client(stack, created["secret"]).get("/courses").status == 200
    listed = learnflow(stack, "keys", "list", "--account", account["id"])
    text = json.dumps(listed)
    assert created["id"] in text
    assert created["secret"] not in text


def test_cli_restricted_key_is_held_to_its_permission(
    stack: Stack, account: dict[str, Any]
) -> None:
    created = learnflow(
        stack, "keys", "create", "--account", account["id"], "--mode", "live",
        "--restricted", "--permission", "instructors:read",
    )  # fmt: skip
    assert created["secret"].startswith("rk_live_")
    client = Client(stack, created["secret"])
    assert client.get("/instructors").status == 200
    assert client.get("/courses").status == 403


def test_cli_revoke_takes_effect_at_once(stack: Stack, account: dict[str, Any]) -> None:
    created = learnflow(stack, "keys", "create", "--account", account["id"], "--mode", "test")
    client = Client(stack, created["secret"])
    assert client.get("/courses").status == 200
    learnflow(stack, "keys", "revoke", created["id"])
    refused = client.get("/courses")
    assert (refused.status, refused.error["type"]) == (401, "authentication_error")


def test_cli_roll_keeps_the_old_key_until_it_expires(stack: Stack, account: dict[str, Any]) -> None:
    old = learnflow(stack, "keys", "create", "--account", account["id"], "--mode", "test")
    rolled = learnflow(stack, "keys", "roll", old["id"], "--expire-old-in", "3600")
    assert rolled["id"] != old["id"]
    assert Client(stack, rolled["secret"]).get("/courses").status == 200
    assert Client(stack, old["secret"]).get("/courses").status == 200  # still within the hour
    at_once = learnflow(stack, "keys", "roll", rolled["id"])
    assert Client(stack, at_once["secret"]).get("/courses").status == 200
    assert Client(stack, rolled["secret"]).get("/courses").status == 401


def test_no_secret_reaches_the_stacks_console(stack: Stack, account: dict[str, Any]) -> None:
    created = learnflow(stack, "keys", "create", "--account", account["id"], "--mode", "test")
    client = Client(stack, created["secret"])
    client.get("/courses")
    client.post("/courses", "{not json")
    client.get("/nowhere")
    log = stack.log()
    assert created["secret"].split("_", 2)[2] not in log
    # The banner shows the seeded keys on purpose (and the curl line repeats one); nothing after
    # it — request lines, function logs, mail — may show any of them.
    requests_part = log.split("One line per request below", 1)[1]
    for seeded in stack.accounts:
        for secret in seeded.keys.values():
            assert secret.split("_", 2)[2] not in requests_part
