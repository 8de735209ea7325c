"""The local Stripe-compatible server in this process, as the payment code's tests use it.

The fixtures are in tests/conftest.py: `stripe_server` (one server for a module) and
`local_stripe` (this test's settings point at it, with no fault left from another test).
"""

from __future__ import annotations

import requests

from learnflow_cli.local.stripe_server import StripeServer

# A secret key per mode, as `learnflow serve` hands the functions.
SECRETS = {"test": "sk_test_" + "T" * 32, "live": "sk_live_" + "L" * 32}


def faults(server: StripeServer | str, **settings: int) -> None:
    """The server's next answers fail or wait (`fail_next`, `status`, `delay_ms`)."""
    url = server if isinstance(server, str) else server.url
    requests.post(url + "/_local/faults", json=settings, timeout=5).raise_for_status()
