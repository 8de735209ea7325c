"""What handlers depend on, built once per warm container at first use; tests replace it here."""

from __future__ import annotations

from functools import lru_cache

from learnflow import clients
from learnflow.ratelimit import DynamoDBLimiter, Limiter


@lru_cache(maxsize=1)
def limiter() -> Limiter:
    return DynamoDBLimiter(clients.table())


def reset() -> None:
    """Forget every cached dependency and client."""
    limiter.cache_clear()
    clients.reset()
