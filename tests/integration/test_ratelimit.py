"""Per-minute rate limits in DynamoDB fixed windows (docs/api.md §7), against moto."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from learnflow.errors import RateLimitError
from learnflow.ratelimit import DynamoDBLimiter
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

A = Tenant("acct_A", "test")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_down_within_a_window_and_refuses_past_the_limit(table: Table) -> None:
    clock = Clock(1_700_000_010.5)  # 10.5 s into a UTC minute (1_700_000_000 is 20 s in)
    limiter = DynamoDBLimiter(table, clock=clock)
    window_end = 1_700_000_040
    remaining = [limiter.hit(A, 3).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(RateLimitError) as refused:
        limiter.hit(A, 3)
    assert refused.value.status == 429
    assert refused.value.headers["X-RateLimit-Remaining"] == "0"
    assert refused.value.headers["X-RateLimit-Reset"] == str(window_end)
    assert refused.value.headers["Retry-After"] == str(window_end - 1_700_000_010)


def test_a_refused_request_is_not_counted(table: Table) -> None:
    clock = Clock(1_700_000_000)
    limiter = DynamoDBLimiter(table, clock=clock)
    limiter.hit(A, 1)
    for _ in range(3):
        with pytest.raises(RateLimitError):
            limiter.hit(A, 1)
    window = table.scan()["Items"]
    assert [int(item["count"]) for item in window] == [1]  # type: ignore[arg-type]


def test_windows_align_to_the_utc_minute(table: Table) -> None:
    clock = Clock(1_700_000_039.9)  # last moment of the window […980, …040)
    limiter = DynamoDBLimiter(table, clock=clock)
    assert limiter.hit(A, 1).reset == 1_700_000_040
    clock.now = 1_700_000_040.0  # the next minute starts afresh
    allowance = limiter.hit(A, 1)
    assert allowance.remaining == 0
    assert allowance.reset == 1_700_000_100


def test_accounts_and_modes_have_their_own_windows(table: Table) -> None:
    limiter = DynamoDBLimiter(table, clock=Clock(1_700_000_000))
    assert limiter.hit(A, 1).remaining == 0
    assert limiter.hit(Tenant("acct_A", "live"), 1).remaining == 0
    assert limiter.hit(Tenant("acct_B", "test"), 1).remaining == 0


def test_window_items_expire_through_ttl(table: Table) -> None:
    DynamoDBLimiter(table, clock=Clock(1_700_000_000)).hit(A, 5)
    (item,) = table.scan()["Items"]
    assert int(item["expires_at"]) == 1_699_999_980 + 120  # type: ignore[arg-type]


def test_headers_report_limit_remaining_and_reset(table: Table) -> None:
    allowance = DynamoDBLimiter(table, clock=Clock(1_700_000_000)).hit(A, 60)
    assert allowance.headers() == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "59",
        "X-RateLimit-Reset": "1700000040",
    }
