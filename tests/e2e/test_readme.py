"""The README's walk-through runs as it is written, against the local stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.stack import Stack

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    """The README's `sh walkthrough` block, exactly as written."""
    (block,) = re.findall(r"```sh walkthrough\n(.*?)```", README.read_text(), flags=re.S)
    return str(block)


def test_the_walkthrough_runs_as_written_from_a_course_to_a_refund(stack: Stack) -> None:
    account = stack.create_account("pro")
    log_before = len(stack.log())
    result = subprocess.run(  # noqa: S603 - bash runs the README's own block
        ["/bin/bash", "-e", "-o", "pipefail", "-c", walkthrough()],
        env={"PATH": os.environ["PATH"], "API": stack.api, "KEY": account.keys["test"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    published, listed, declined, enrollment, canceled = answers
    assert (published["object"], published["status"]) == ("course", "published")
    assert [course["id"] for course in listed["data"]] == [published["id"]]
    assert enrollment["status"] == "active"
    assert enrollment["payment"]["amount"] == 4999
    assert (enrollment["payment"]["currency"], enrollment["payment"]["status"]) == (
        "usd",
        "succeeded",
    )
    assert declined["error"]["code"] == "card_declined"
    assert (canceled["id"], canceled["status"]) == (enrollment["id"], "canceled")
    assert (canceled["payment"]["status"], canceled["payment"]["amount_refunded"]) == (
        "refunded",
        4999,
    )
    deadline = time.monotonic() + 10
    wanted = '[mail] to ada@example.com: "Welcome to Intro to Python"'
    while wanted not in stack.log()[log_before:]:
        assert time.monotonic() < deadline, "no welcome e-mail on the console"
        time.sleep(0.1)


def test_the_walkthrough_needs_no_command_beyond_curl_and_python3() -> None:
    commands = {
        line.split()[0]
        for line in walkthrough().splitlines()
        if line.strip() and not line.startswith(("#", " ", "API=", "AUTH=", "api()", "field()"))
    }
    assert commands <= {"api", "COURSE=$(api", "STUDENT=$(api", "ENROLLMENT=$(api"}
    assert "uuidgen" not in walkthrough()
    assert "jq" not in walkthrough().split()
