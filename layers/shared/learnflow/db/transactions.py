"""TransactWriteItems with the retry every repository wants and reasons it can act on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_TRANSACTION_CANCELED: Final = "TransactionCanceledException"
_TRANSACTION_ATTEMPTS: Final = 3
_EXPECTED_REASONS: Final = frozenset({"None", "ConditionalCheckFailed", "TransactionConflict"})


def write_transaction(table: Table, actions: list[dict[str, Any]]) -> list[str] | None:
    """Run one TransactWriteItems (the resource's client takes native values); None once it
    commits, else the cancellation reason code of each action (`ConditionalCheckFailed`, …).

    A conflict with another transaction in flight on the same item (two creates racing for the
    counters item) is retried a few times, briefly: it is not a failure of the request.
    """
    for attempt in range(_TRANSACTION_ATTEMPTS):
        try:
            table.meta.client.transact_write_items(TransactItems=cast("Any", actions))
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
            time.sleep(0.02 * (attempt + 1))
        else:
            return None
    return None  # pragma: no cover - the loop always returns
