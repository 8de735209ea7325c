"""TransactWriteItems with the retry every repository wants and reasons it can act on."""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_TRANSACTION_CANCELED: Final = "TransactionCanceledException"
_TRANSACTION_ATTEMPTS: Final = 6
_BACKOFF_SECONDS: Final = 0.025
_EXPECTED_REASONS: Final = frozenset({"None", "ConditionalCheckFailed", "TransactionConflict"})


def write_transaction(table: Table, actions: list[dict[str, Any]]) -> list[str] | None:
    """Run one TransactWriteItems (the resource's client takes native values); None once it
    commits, else the cancellation reason code of each action (`ConditionalCheckFailed`, …).

    A conflict with another transaction in flight on the same item (creates racing for the
    counters item) is retried with full jitter, so racing writers do not collide again in step:
    it is not a failure of the request.

    Each attempt carries its own ClientRequestToken: when botocore resends an attempt whose first
    try committed but whose answer was lost (a timeout, a 500), DynamoDB recognises the token and
    reports success instead of failing the conditions the first try already satisfied.
    """
    for attempt in range(_TRANSACTION_ATTEMPTS):
        try:
            table.meta.client.transact_write_items(
                TransactItems=cast("Any", actions), ClientRequestToken=str(uuid.uuid4())
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != _TRANSACTION_CANCELED:
                raise
            reasons = [
                str(reason.get("Code", "None"))
                for reason in cast(
                    "list[dict[str, Any]]", error.response.get("CancellationReasons", [])
                )
            ]
            if not set(reasons) <= _EXPECTED_REASONS:
                raise  # a malformed request or throttling: not the caller's condition failing
            if "TransactionConflict" not in reasons or attempt == _TRANSACTION_ATTEMPTS - 1:
                return reasons
            # Jitter spreads retries, it is not a secret: the stdlib generator is right here.
            time.sleep(random.uniform(0, _BACKOFF_SECONDS * 2**attempt))  # noqa: S311
        else:
            return None
    return None  # pragma: no cover - the loop always returns
