"""The `learnflow` administration commands through click's CliRunner, in this process (on moto
when the test has it)."""

from __future__ import annotations

import json
from typing import Any

import click
from click.testing import CliRunner, Result

from learnflow_cli.admin.commands import accounts, keys
from learnflow_cli.admin.welcome import welcome
from tests.support.aws import SESSION


@click.group()
def cli() -> None:
    """The administration groups as `learnflow` mounts them (main.py also mounts `serve`)."""


cli.add_command(accounts)
cli.add_command(keys)
cli.add_command(welcome)


def run(*args: str) -> Result:
    """One command; the tests' boto3 session is click's context object, as main.py makes one
    for a run (each command would otherwise load botocore's service models again)."""
    return CliRunner().invoke(cli, list(args), obj=SESSION, catch_exceptions=False)


def run_json(*args: str, code: int = 0) -> dict[str, Any]:
    """Runs with --json, expecting exit status `code`, and checks stdout is exactly one JSON
    object on one line."""
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


def assert_clean_failure(result: Result) -> None:
    """Exit status 1 and one `Error: ...` on stderr, never a traceback."""
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: ")
