"""`learnflow serve`'s payments: a Stripe key per mode, and a free port when 12111 is taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import stripe

from learnflow_cli.local import serve
from learnflow_cli.local.services import ServiceError
from tests.support.stack import run_stack

DEFAULT_STRIPE_PORT = 12111


@contextmanager
def _taken_port(port: int = 0) -> Iterator[int]:
    """A port something else listens on (`port`, unless another program holds it already:
    then it is taken anyway)."""
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        except OSError:
            yield port
            return
        yield int(holder.getsockname()[1])


@pytest.mark.stripe
def test_the_local_server_gets_a_secret_key_per_mode_and_tells_them_apart() -> None:
    payments = serve.start_payments(api_base=None, port=0, port_given=True, note=print)
    try:
        assert payments.keys["test"].startswith("sk_test_")
        assert payments.keys["live"].startswith("sk_live_")
        assert serve.stripe_environment(payments.api_base, payments.keys) == {
            "LEARNFLOW_STRIPE_API_BASE": payments.api_base,
            "LEARNFLOW_STRIPE_SECRET_KEY_TEST": payments.keys["test"],
            "LEARNFLOW_STRIPE_SECRET_KEY_LIVE": payments.keys["live"],
        }
        for mode, livemode in (("test", False), ("live", True)):
            client = stripe.StripeClient(
                payments.keys[mode],
                base_addresses={"api": payments.api_base},
                max_network_retries=0,
            )
            intent = client.v1.payment_intents.create(
                params={"amount": 4999, "currency": "usd", "payment_method": "pm_card_visa"}
            )
            assert intent.livemode is livemode
    finally:
        payments.server.stop()


@pytest.mark.stripe
def test_a_taken_default_port_is_replaced_by_a_free_one_and_said() -> None:
    notes: list[str] = []
    with _taken_port() as taken:
        payments = serve.start_payments(
            api_base=None, port=taken, port_given=False, note=notes.append
        )
        try:
            listening = urlsplit(payments.api_base).port
            assert listening not in (None, taken)
            assert notes == [
                f"port {taken} is taken; the Stripe-compatible server listens on {listening} "
                "instead (--stripe-port chooses)"
            ]
        finally:
            payments.server.stop()


def test_a_taken_port_chosen_with_stripe_port_is_an_error() -> None:
    with _taken_port() as taken, pytest.raises(ServiceError, match="--stripe-port 0"):
        serve.start_payments(api_base=None, port=taken, port_given=True, note=print)


@pytest.mark.parametrize(
    ("environ", "keys", "missing"),
    [
        (
            {
                "LEARNFLOW_STRIPE_SECRET_KEY_TEST": "sk_test_1",
                "LEARNFLOW_STRIPE_SECRET_KEY_LIVE": "sk_live_2",
            },
            {"test": "sk_test_1", "live": "sk_live_2"},
            [],
        ),
        # The single key of before is still the test one.
        ({"LEARNFLOW_STRIPE_SECRET_KEY": "sk_test_old"}, {"test": "sk_test_old"}, ["live"]),
        (
            {
                "LEARNFLOW_STRIPE_SECRET_KEY_TEST": "rk_test_new",
                "LEARNFLOW_STRIPE_SECRET_KEY": "sk_test_old",
            },
            {"test": "rk_test_new"},
            ["live"],
        ),
        ({"LEARNFLOW_STRIPE_SECRET_KEY_LIVE": "sk_live_2"}, {"live": "sk_live_2"}, ["test"]),
    ],
)
def test_keys_for_another_stripe_come_from_the_environment(
    environ: dict[str, str], keys: dict[str, str], missing: list[str]
) -> None:
    assert serve.stripe_keys_from_environment(environ) == (keys, missing)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LEARNFLOW_STRIPE_SECRET_KEY_TEST": "sk_live_real_money"},
        {"LEARNFLOW_STRIPE_SECRET_KEY": "sk_live_real_money"},
        {"LEARNFLOW_STRIPE_SECRET_KEY_LIVE": "sk_test_sandbox"},
    ],
    ids=["none", "live-as-test", "live-as-legacy-test", "test-as-live"],
)
def test_missing_or_wrong_mode_keys_for_another_stripe_are_refused(
    environ: dict[str, str],
) -> None:
    with pytest.raises(click.ClickException):
        serve.stripe_keys_from_environment(environ)


@pytest.mark.e2e  # a `learnflow serve` of its own, without --stripe-port
def test_learnflow_serve_picks_a_free_port_when_the_default_is_taken(tmp_path: Path) -> None:
    """As `make run` starts it: without --stripe-port, with 12111 busy."""
    with (
        _taken_port(DEFAULT_STRIPE_PORT),
        run_stack(tmp_path, "--no-seed", stripe_port=None) as stack,
    ):
        output = stack.log()
    note = next(line for line in output.splitlines() if "is taken" in line)
    assert f"port {DEFAULT_STRIPE_PORT} is taken" in note
    port = note.split("listens on ")[1].split()[0]
    assert f"Payments   http://127.0.0.1:{port} (local;" in output
