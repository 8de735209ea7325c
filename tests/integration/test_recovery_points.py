"""Every create a client may retry has a recovery point: a run that dies (or answers 5xx) after
its write and before its answer is finished by the retry with the same Idempotency-Key, which
answers with the same object and writes nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.courses import create_course, update_course
from functions.instructors import create_instructor
from functions.students import create_student, update_student
from learnflow import deps
from learnflow.db.courses import CourseRepository
from learnflow.db.instructors import InstructorRepository
from learnflow.db.students import StudentRepository
from learnflow.resources import RESOURCES
from learnflow.tenancy import Tenant
from tests.support.handlers import Caller, Context, Handler

pytestmark = pytest.mark.usefixtures("module_table")


class Crash(BaseException):
    """The invocation dies here: nothing after it runs and nothing is settled."""


@dataclass(frozen=True)
class Create:
    name: str
    handler: Handler
    event: str
    body: dict[str, Any]
    repository: type
    count: Callable[[Tenant], int]


CREATES = [
    Create(
        "course",
        create_course.lambda_handler,
        "create_course",
        {"title": "T", "description": "D", "price": Decimal("9.99"), "currency": "EUR"},
        CourseRepository,
        lambda tenant: deps.repository(CourseRepository).count(tenant),
    ),
    Create(
        "instructor",
        create_instructor.lambda_handler,
        "create_instructor",
        {"name": "Grace Hopper"},
        InstructorRepository,
        lambda tenant: deps.repository(InstructorRepository).count(tenant),
    ),
    Create(
        "student",
        create_student.lambda_handler,
        "create_student",
        {"email": "grace@example.com", "name": "Grace Hopper"},
        StudentRepository,
        lambda tenant: deps.repository(StudentRepository).count(tenant),
    ),
]


def test_every_resource_that_can_be_created_is_here() -> None:
    """A new resource's create joins CREATES (enrollments have their own fault matrix, with the
    charge between the claim and the write: tests/integration/test_enrollments.py)."""
    assert {c.name for c in CREATES} | {"enrollment"} == {r.object for r in RESOURCES}


def fail_after_the_write(
    monkeypatch: pytest.MonkeyPatch, repository: type, failure: BaseException
) -> list[str]:
    """The next `create` of `repository` writes, then `failure` is raised: returns the id
    it wrote."""
    original = getattr(repository, "create")  # noqa: B009 - any of the repositories
    written: list[str] = []

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        if not written:
            written.append(made.id)
            raise failure
        return made

    monkeypatch.setattr(repository, "create", create)
    return written


@pytest.mark.parametrize("create", CREATES, ids=[c.name for c in CREATES])
def test_a_crash_after_the_write_then_a_retry_answers_the_same_object_once(
    create: Create, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = Caller()
    written = fail_after_the_write(monkeypatch, create.repository, Crash())
    with pytest.raises(Crash):
        caller.call(create.handler, create.event, body=create.body, key="k", context=Context(50))
    assert create.count(caller.tenant) == 1  # written, never answered
    time.sleep(0.1)  # the dead invocation's lease (its remaining time) runs out
    retry = caller.call(create.handler, create.event, body=create.body, key="k")
    assert (retry.status, retry.replayed) == (201, False)
    assert retry.body["id"] == written[0]
    assert create.count(caller.tenant) == 1
    again = caller.call(create.handler, create.event, body=create.body, key="k")
    assert (again.status, again.replayed, again.body) == (201, True, retry.body)


@pytest.mark.parametrize("create", CREATES, ids=[c.name for c in CREATES])
def test_a_5xx_after_the_write_then_a_retry_answers_the_same_object_once(
    create: Create, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = Caller()
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "TransactWriteItems",
    )
    written = fail_after_the_write(monkeypatch, create.repository, throttled)
    first = caller.call(create.handler, create.event, body=create.body, key="k")
    assert (first.status, first.error["code"]) == (503, "service_unavailable")
    assert first.headers["Retry-After"] == "1"
    retry = caller.call(create.handler, create.event, body=create.body, key="k")
    assert (retry.status, retry.body["id"]) == (201, written[0])
    assert create.count(caller.tenant) == 1


def crash_after_the_first(monkeypatch: pytest.MonkeyPatch, repository: type, method: str) -> None:
    """The first call of `repository.method` completes, then the invocation dies (`Crash`);
    later calls run as they are."""
    original = getattr(repository, method)
    calls: list[None] = []

    def crash_once(self: Any, *args: Any) -> Any:
        done = original(self, *args)
        calls.append(None)
        if len(calls) == 1:
            raise Crash
        return done

    monkeypatch.setattr(repository, method, crash_once)


def test_a_patch_retried_after_a_crash_is_applied_once(monkeypatch: pytest.MonkeyPatch) -> None:
    caller = Caller()
    course = caller.call(create_course.lambda_handler, "create_course", body=CREATES[0].body)
    course_id = course.body["id"]
    crash_after_the_first(monkeypatch, CourseRepository, "save")
    patch = {"status": "published", "metadata": {"wave": "1"}}
    call: dict[str, Any] = {
        "path": f"/courses/{course_id}",
        "path_params": {"course_id": course_id},
        "body": patch,
        "key": "p",
    }
    with pytest.raises(Crash):
        caller.call(update_course.lambda_handler, "update_course", context=Context(50), **call)
    time.sleep(0.1)
    retry = caller.call(update_course.lambda_handler, "update_course", **call)
    assert (retry.status, retry.body["status"], retry.body["metadata"]) == (
        200,
        "published",
        {"wave": "1"},
    )
    assert deps.repository(CourseRepository).count(caller.tenant, status="published") == 1
    assert deps.repository(CourseRepository).count(caller.tenant, status="draft") == 0


def test_a_student_email_change_retried_after_a_crash_moves_the_address_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caller = Caller()
    created = caller.call(
        create_student.lambda_handler,
        "create_student",
        body={"email": "old@example.com", "name": "Ada"},
    )
    student_id = created.body["id"]
    crash_after_the_first(monkeypatch, StudentRepository, "_save")
    call: dict[str, Any] = {
        "path": f"/students/{student_id}",
        "path_params": {"student_id": student_id},
        "body": {"email": "new@example.com"},
        "key": "e",
    }
    with pytest.raises(Crash):
        caller.call(update_student.lambda_handler, "update_student", context=Context(50), **call)
    time.sleep(0.1)
    retry = caller.call(update_student.lambda_handler, "update_student", **call)
    assert (retry.status, retry.body["email"]) == (200, "new@example.com")
    old_free = caller.call(
        create_student.lambda_handler,
        "create_student",
        body={"email": "OLD@example.com", "name": "Bea"},
    )
    assert old_free.status == 201
    taken = caller.call(
        create_student.lambda_handler,
        "create_student",
        body={"email": "new@example.com", "name": "Cy"},
    )
    assert (taken.status, taken.error["code"]) == (409, "email_taken")
