"""What handlers depend on, built once per warm container at first use; tests replace it here."""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import TYPE_CHECKING

from learnflow import clients
from learnflow.idempotency import IdempotencyStore
from learnflow.ratelimit import DynamoDBLimiter, Limiter

if TYPE_CHECKING:
    from learnflow.db.courses import CourseRepository
    from learnflow.db.enrollments import EnrollmentRepository
    from learnflow.db.instructors import InstructorRepository
    from learnflow.db.students import StudentRepository
    from learnflow.services.enrollments import EnrollmentService


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


@lru_cache(maxsize=1)
def student_repository() -> StudentRepository:
    from learnflow.db.students import StudentRepository  # noqa: PLC0415

    return StudentRepository(clients.table())


@lru_cache(maxsize=1)
def enrollment_repository() -> EnrollmentRepository:
    from learnflow.db.enrollments import EnrollmentRepository  # noqa: PLC0415

    return EnrollmentRepository(clients.table())


@lru_cache(maxsize=1)
def enrollment_service() -> EnrollmentService:
    # Only the two functions that pay or refund call this: they alone import payments (stripe).
    from learnflow import payments  # noqa: PLC0415
    from learnflow.services.enrollments import EnrollmentService  # noqa: PLC0415

    return EnrollmentService(enrollment_repository(), payments.gateway)


def reset() -> None:
    """Forget every cached dependency and client."""
    limiter.cache_clear()
    idempotency_store.cache_clear()
    instructor_repository.cache_clear()
    course_repository.cache_clear()
    student_repository.cache_clear()
    enrollment_repository.cache_clear()
    enrollment_service.cache_clear()
    if "learnflow.payments" in sys.modules:  # never import stripe just to forget it
        sys.modules["learnflow.payments"].reset()
    clients.reset()
