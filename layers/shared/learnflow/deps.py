"""What handlers depend on, built once per warm container at first use; tests replace it here."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from learnflow import clients
from learnflow.idempotency import IdempotencyStore
from learnflow.ratelimit import DynamoDBLimiter, Limiter

if TYPE_CHECKING:
    from learnflow.db.courses import CourseRepository
    from learnflow.db.instructors import InstructorRepository


@lru_cache(maxsize=1)
def limiter() -> Limiter:
    return DynamoDBLimiter(clients.table())


@lru_cache(maxsize=1)
def idempotency_store() -> IdempotencyStore:
    return IdempotencyStore(clients.table())


@lru_cache(maxsize=1)
def instructor_repository() -> InstructorRepository:
    # Imported here: a function pays at cold start only for the repositories it uses.
    from learnflow.db.instructors import InstructorRepository  # noqa: PLC0415

    return InstructorRepository(clients.table())


@lru_cache(maxsize=1)
def course_repository() -> CourseRepository:
    from learnflow.db.courses import CourseRepository  # noqa: PLC0415

    return CourseRepository(clients.table(), instructor_repository())


def reset() -> None:
    """Forget every cached dependency and client."""
    limiter.cache_clear()
    idempotency_store.cache_clear()
    instructor_repository.cache_clear()
    course_repository.cache_clear()
    clients.reset()
