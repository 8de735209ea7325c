"""Where the functions' payments go: Stripe itself (or another Stripe-compatible API) with secret
keys from the environment, one per mode, or the local Stripe-compatible server with a generated
key per mode; and the environment variables that tell the functions which."""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from learnflow_cli.local.console import LOOPBACK

STRIPE_MODES = ("test", "live")


@dataclass(frozen=True, slots=True)
class Payments:
    api_base: str
    keys: dict[str, str]  # mode → Stripe secret key
    # The local Stripe-compatible server when it runs (a StripeServer), else None. Typed Any
    # while tests/e2e/test_local_stack_payments.py stops it without checking for None.
    server: Any = None


def start_payments(
    *, api_base: str | None, port: int, port_given: bool, note: Callable[[str], None]
) -> Payments:
    """Where the functions' payments go: `api_base` with keys from the environment, else the
    local Stripe-compatible server on `port` with a generated key per mode (the server tells
    live mode from `_live_` in the key, as Stripe's keys read). When the port was not chosen
    (`port_given` False) and is taken, any free port is used, and `note` says which."""
    from learnflow_cli.local import services  # noqa: PLC0415 - `learnflow --help` stays fast

    if api_base:
        keys, missing = stripe_keys_from_environment(os.environ)
        for mode in missing:
            note(
                f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()} is not set: requests made with "
                f"{mode} API keys cannot reach Stripe"
            )
        return Payments(api_base, keys)
    server = services.start_stripe(LOOPBACK, port, any_port_if_taken=not port_given)
    listening = urlsplit(str(server.url)).port
    if port and listening != port:
        note(
            f"port {port} is taken; the Stripe-compatible server listens on {listening} "
            "instead (--stripe-port chooses)"
        )
    return Payments(str(server.url), {mode: _local_secret(mode) for mode in STRIPE_MODES}, server)


def _local_secret(mode: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"sk_{mode}_local" + "".join(secrets.choice(alphabet) for _ in range(24))


def stripe_keys_from_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The Stripe secret key of each mode for --stripe-api-base, and the modes without one:
    LEARNFLOW_STRIPE_SECRET_KEY_TEST (or the older LEARNFLOW_STRIPE_SECRET_KEY) and
    LEARNFLOW_STRIPE_SECRET_KEY_LIVE. A key of the other mode in a slot is refused: test
    requests must never move real money, nor live ones go to the sandbox."""
    names = {
        "test": ("LEARNFLOW_STRIPE_SECRET_KEY_TEST", "LEARNFLOW_STRIPE_SECRET_KEY"),
        "live": ("LEARNFLOW_STRIPE_SECRET_KEY_LIVE",),
    }
    keys: dict[str, str] = {}
    for mode, candidates in names.items():
        name = next((name for name in candidates if environ.get(name, "").strip()), None)
        if name is None:
            continue
        key = environ[name].strip()
        if not key.startswith((f"sk_{mode}_", f"rk_{mode}_")):
            raise click.ClickException(
                f"{name} is not a {mode}-mode key (expected sk_{mode}_... or rk_{mode}_...)"
            )
        keys[mode] = key
    if not keys:
        raise click.ClickException(
            "--stripe-api-base needs LEARNFLOW_STRIPE_SECRET_KEY_TEST (a sk_test_ key) and/or "
            "LEARNFLOW_STRIPE_SECRET_KEY_LIVE (a sk_live_ key) set"
        )
    return keys, [mode for mode in STRIPE_MODES if mode not in keys]


def stripe_environment(base: str, keys: Mapping[str, str]) -> dict[str, str]:
    """What the functions read to reach Stripe: the API base and a secret key per mode."""
    return {
        "LEARNFLOW_STRIPE_API_BASE": base,
        **{f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()}": key for mode, key in keys.items()},
    }
