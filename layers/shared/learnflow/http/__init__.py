"""The HTTP layer every route handler shares (docs/api.md §5): `make_app` gives a route's
resolver, which for every request, in the contract's order, reads the caller from the authorizer's
context, counts the request against its per-minute limit, checks the route's permission, claims
a write's Idempotency-Key (a repeat replays the first answer, a retry after a fault resumes the
first run from its recovery point), rejects unknown query parameters and bad JSON, validates input
(400 with `param`), runs the handler, and answers every error in the envelope with `Request-Id`
and the rate-limit headers.

Modules: `app` (the resolver and what handlers read from it), `caller` (who is calling),
`events` (the proxy event as read), `answers` (the one place an exception becomes an answer),
`responses` (success answers and the headers every answer carries).
"""

from learnflow.http.app import (
    App,
    caller,
    make_app,
    new_id,
    query,
    recovery_token,
    remaining_ms,
)
from learnflow.http.caller import Caller, caller_from_event
from learnflow.http.responses import ok, respond

__all__ = [
    "App",
    "Caller",
    "caller",
    "caller_from_event",
    "make_app",
    "new_id",
    "ok",
    "query",
    "recovery_token",
    "remaining_ms",
    "respond",
]
