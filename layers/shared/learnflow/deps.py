"""What handlers depend on, built once per warm container at first use; tests replace it here."""

from __future__ import annotations

import sys
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from learnflow import clients
from learnflow.idempotency import IdempotencyStore
from learnflow.ratelimit import DynamoDBLimiter, Limiter

if TYPE_CHECKING:
    from learnflow.db.repository import Repository
    from learnflow.services.enrollments import EnrollmentService

R = TypeVar("R", bound="Repository[Any]")

_lock = threading.Lock()
_repositories: dict[type[Any], Any] = {}


@lru_cache(maxsize=1)
def limiter() -> Limiter:
    return DynamoDBLimiter(clients.table())


@lru_cache(maxsize=1)
def idempotency_store() -> IdempotencyStore:
    return IdempotencyStore(clients.table())


def repository(kind: type[R]) -> R:
    """The container's one `kind` repository over the function's table (a handler imports the
    repository module it uses, so it pays at cold start only for that one)."""
    with _lock:
        found = _repositories.get(kind)
        if found is None:
            found = _repositories[kind] = kind(clients.table())
    return cast("R", found)


@lru_cache(maxsize=1)
def enrollment_service() -> EnrollmentService:
    # Only the two functions that pay or refund call this: they alone import payments (stripe).
    from learnflow import payments  # noqa: PLC0415
    from learnflow.db.enrollments import EnrollmentRepository  # noqa: PLC0415
    from learnflow.services.enrollments import EnrollmentService  # noqa: PLC0415

    return EnrollmentService(repository(EnrollmentRepository), payments.gateway)


def reset() -> None:
    """Forget every cached dependency and client."""
    limiter.cache_clear()
    idempotency_store.cache_clear()
    enrollment_service.cache_clear()
    with _lock:
        _repositories.clear()
    if "learnflow.payments" in sys.modules:  # never import stripe just to forget it
        sys.modules["learnflow.payments"].reset()
    clients.reset()
