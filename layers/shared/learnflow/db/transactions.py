"""TransactWriteItems with the retry every repository wants and reasons it can act on."""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from learnflow import errors
from learnflow.db.conditions import error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_TRANSACTION_CANCELED: Final = "TransactionCanceledException"
# Conflicts with another transaction in flight on one of the items, and throttling: they pass.
_TRANSIENT_REASONS: Final = frozenset({"TransactionConflict", "ThrottlingError"})
_EXPECTED_REASONS: Final = frozenset({"None", "ConditionalCheckFailed"}) | _TRANSIENT_REASONS
_ATTEMPTS: Final = 8
_BACKOFF_SECONDS: Final = 0.025
_BACKOFF_CAP_SECONDS: Final = 0.8


def write_transaction(table: Table, actions: list[dict[str, Any]]) -> list[str] | None:
    """Run one TransactWriteItems (the resource's client takes native values); None once it
    commits, else the cancellation reason code of each action when a condition failed
    (`ConditionalCheckFailed` where it failed, `None` elsewhere).

    A conflict with another transaction in flight on the same item (creates racing for a counter
    shard) or throttling is retried with capped exponential backoff and full jitter (about 2.5 s
    at most in all, well inside the functions' timeouts), so racing writers do not collide again
    in step. If it still does not pass, the answer is 503 `service_unavailable`: a transient
    conflict is never the caller's fault (never a 4xx), and nothing was written.

    Each attempt carries its own ClientRequestToken: when botocore resends an attempt whose first
    try committed but whose answer was lost (a timeout, a 500), DynamoDB recognises the token and
    reports success instead of failing the conditions the first try already satisfied.
    """
    for attempt in range(_ATTEMPTS):
        if attempt:
            ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_SECONDS * 2**attempt)
            # Jitter spreads retries, it is not a secret: the stdlib generator is right here.
            time.sleep(random.uniform(0, ceiling))  # noqa: S311
        try:
            table.meta.client.transact_write_items(
                TransactItems=cast("Any", actions), ClientRequestToken=str(uuid.uuid4())
            )
        except ClientError as error:
            if error_code(error) != _TRANSACTION_CANCELED:
                raise
            reasons = [
                str(reason.get("Code") or "None")
                for reason in cast(
                    "list[dict[str, Any]]", error.response.get("CancellationReasons", [])
                )
            ]
            if not set(reasons) <= _EXPECTED_REASONS:
                raise  # a malformed request or a validation error: a fault of ours
            if "ConditionalCheckFailed" in reasons:
                return reasons
            if not set(reasons) & _TRANSIENT_REASONS:
                raise  # cancelled for no reason we know: do not guess
        else:
            return None
    raise errors.service_unavailable()
