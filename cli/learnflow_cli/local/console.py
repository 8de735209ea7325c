"""What `learnflow serve` shows and writes: the console (one writer for request lines, e-mails
and notes from every thread), the banner printed once the stack is ready, and the keys file."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from learnflow_cli.local.aws import Aws
    from learnflow_cli.local.http_messages import HttpResponse
    from learnflow_cli.local.provisioning import SeededAccount

LOOPBACK = "127.0.0.1"  # where the stack listens unless --host says otherwise
CURL_PATH = "/courses"  # what the banner's ready-to-paste curl line calls


class Console:
    """One writer for every thread: request lines, e-mails and the banner never interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str, *, err: bool = False) -> None:
        with self._lock:
            click.echo(text, err=err)

    def request(self, method: str, target: str, response: HttpResponse, ms: float) -> None:
        """`12:00:03  GET    /v2/courses  200  31 ms  ListCoursesFunction  auth 9 ms  req …`"""
        parts = [datetime.now().strftime("%H:%M:%S"), f"{method:<5}", target]
        parts += [str(response.status), f"{ms:.0f} ms", response.function or "(gateway)"]
        if response.authorizer_ms is not None:
            parts.append(f"auth {response.authorizer_ms:.0f} ms")
        parts += [note for note in response.notes if note.startswith("cold")]
        if response.request_id:
            parts.append(f"req {response.request_id}")
        problems = [f"    {note}" for note in response.notes if not note.startswith("cold")]
        self.line("\n".join(["  ".join(parts), *problems]))

    def email(self, message: dict[str, Any]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        to = ", ".join(message.get("to") or []) or "(no recipient)"
        subject, sender = message.get("subject", ""), message.get("from", "")
        self.line(f'{stamp}  [mail] to {to}: "{subject}" (from {sender})')


def display_host(host: str) -> str:
    return LOOPBACK if host in ("0.0.0.0", "") else host  # noqa: S104 - only displayed


def write_keys_file(
    path: Path, api_url: str, accounts: list[SeededAccount], env: dict[str, str]
) -> None:
    """The keys file's JSON, written whole (a reader never sees half a file), readable only by
    its owner (it holds secrets)."""
    document = {
        "api": api_url,
        "accounts": [
            {"id": account.id, "plan": account.plan, "keys": dict(account.keys)}
            for account in accounts
        ],
        "env": env,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    partial.replace(path)


def ready_banner(
    *,
    api_url: str,
    accounts: list[SeededAccount],
    aws: Aws,
    own_moto: bool,
    stripe_base: str,
    local_stripe: bool,
    authorizer_cache: bool,
    table: str,
    keys_file: Path | None,
    seconds: float,
) -> str:
    """What `learnflow serve` prints once it is ready: where everything is, and the keys."""
    lines = [
        "",
        f"LearnFlow API v2 is running locally (ready in {seconds:.1f} s)",
        "",
        f"  API        {api_url}",
        f"  OpenAPI    {api_url}/openapi.json",
        f"  Reference  {api_url}/docs",
        "",
    ]
    for account in accounts:
        lines.append(f"  {account.plan.title():<9}  {account.id}")
        lines += [f"    {mode}     {account.keys[mode]}" for mode in ("test", "live")]
    if accounts:
        test_key = accounts[0].keys["test"]
        lines += [
            "",
            "  Try it:",
            f'    curl {api_url}{CURL_PATH} -H "Authorization: Bearer {test_key}"',
        ]
    else:
        lines.append("  No demo accounts (--no-seed): `learnflow accounts create` makes one.")
    if own_moto:
        aws_where = f"moto at {aws.endpoint}"
        mail = "printed below as [mail] lines when SES accepts them"
    else:
        aws_where = aws.endpoint or "real AWS (your AWS configuration)"
        mail = "in the SES of the endpoint above"
    payments = f"{stripe_base}" + (
        " (local; test cards pm_card_visa, pm_card_chargeDeclined, ...)" if local_stripe else ""
    )
    cache = "on (the template's TTL)" if authorizer_cache else "off (revocation is instant)"
    lines += [
        "",
        f"  AWS        DynamoDB, SES, API Gateway: {aws_where} (table {table})",
        f"  Payments   {payments}",
        f"  E-mails    {mail}",
        f"  Auth cache {cache}",
    ]
    if keys_file is not None:
        lines.append(f"  Keys file  {keys_file} (its env points `learnflow` here)")
    lines += ["", "  One line per request below. Press Ctrl-C to stop.", ""]
    return "\n".join(lines)
