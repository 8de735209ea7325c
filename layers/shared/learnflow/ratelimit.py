"""Per-account-and-mode rate limits in fixed windows aligned to the UTC minute (docs/api.md §7).

One conditional `UpdateItem` per request: the counter grows only while it is under the limit, so
a request answered 429 is not counted and has no other effect. API Gateway's usage plans stay
in front as the coarse per-second guard; this is the exact per-minute one with the headers
clients read (no maintained library does DynamoDB fixed windows with these semantics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

from learnflow.db import keys
from learnflow.errors import RateLimitError
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

WINDOW_SECONDS = 60
_KEEP_SECONDS = 120  # TTL: a window item outlives its minute, then DynamoDB deletes it


def gateway_throttle(per_minute: int) -> tuple[float, int]:
    """The API Gateway usage plan throttle (rate per second, burst) in front of a plan's limit.

    The gateway can only be a coarse guard that never refuses what the exact limit allows: one
    API Gateway key serves both modes of an account (2x), and fixed windows let a full minute's
    worth arrive just before a boundary and another just after (2x again) — so a burst of four
    minutes' worth, and a sustained rate of two minutes' worth spread over sixty seconds.
    """
    return 2 * per_minute / WINDOW_SECONDS, 4 * per_minute


@dataclass(frozen=True, slots=True)
class Allowance:
    limit: int
    remaining: int
    reset: int  # Unix epoch seconds at which the window resets

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset),
        }


class Limiter(Protocol):
    def hit(self, tenant: Tenant, limit: int) -> Allowance:
        """Count one request; raise `RateLimitError` (with headers) when over the limit."""
        ...


class DynamoDBLimiter:
    """Fixed-window counters in the single table (`RL#<acct>#<mode>#<window start>`)."""

    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    def hit(self, tenant: Tenant, limit: int) -> Allowance:
        now = self._clock()
        start = int(now) - int(now) % WINDOW_SECONDS
        reset = start + WINDOW_SECONDS
        try:
            result = self._table.update_item(
                Key=keys.rate_window(tenant, start),
                UpdateExpression="ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "count", "#ttl": keys.TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": 1,
                    ":limit": limit,
                    ":ttl": start + _KEEP_SECONDS,
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            allowance = Allowance(limit=limit, remaining=0, reset=reset)
            retry_after = max(1, reset - int(now))
            raise RateLimitError(
                f"Too many requests: the limit is {limit} a minute.",
                headers={**allowance.headers(), "Retry-After": str(retry_after)},
            ) from None
        count = int(result["Attributes"]["count"])  # type: ignore[arg-type]
        return Allowance(limit=limit, remaining=limit - count, reset=reset)
