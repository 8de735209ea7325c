"""A tenant with a catalogue and students, made through the route handlers: what the tests of
enrollments, and of everything that runs around them (metrics, IAM, recovery), set up first."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from functions.courses import create_course, update_course
from functions.enrollments import create_enrollment
from functions.instructors import create_instructor
from functions.students import create_student
from tests.support.handlers import Caller, Handler, Reply

_n = itertools.count(1)


@dataclass
class School(Caller):
    """`Caller` with the objects an enrollment needs; `ok` insists on the status it expects."""

    def ok(self, status: int, handler: Handler, event: str, **given: Any) -> Reply:
        reply = self.call(handler, event, **given)
        assert reply.status == status, reply.body
        return reply

    def instructor(self, name: str = "Ada") -> str:
        body = {"name": name, "email": f"instructor{next(_n)}@example.com"}
        created = self.ok(201, create_instructor.lambda_handler, "create_instructor", body=body)
        return str(created.body["id"])

    def course(
        self, price: str = "49.99", currency: str = "USD", *, publish: bool = True, **fields: Any
    ) -> str:
        """A new course at `price`, published unless told otherwise; `fields` add to the body
        (`category`, `instructor_id`, ...)."""
        body = {
            "title": "Course",
            "description": "What it teaches.",
            "price": Decimal(price),
            "currency": currency,
            **fields,
        }
        created = self.ok(201, create_course.lambda_handler, "create_course", body=body)
        course_id = str(created.body["id"])
        if publish:
            self.patch_course(course_id, {"status": "published"})
        return course_id

    def patch_course(self, course_id: str, body: dict[str, Any]) -> Reply:
        return self.ok(
            200,
            update_course.lambda_handler,
            "update_course",
            path=f"/courses/{course_id}",
            path_params={"course_id": course_id},
            body=body,
        )

    def student(self, name: str = "Ada") -> str:
        body = {"email": f"student{next(_n)}@example.com", "name": name}
        created = self.ok(201, create_student.lambda_handler, "create_student", body=body)
        return str(created.body["id"])

    def enroll(
        self,
        student_id: str,
        course_id: str,
        pm: str | None = "pm_card_visa",
        *,
        key: str | None = None,
        context: object | None = None,
        direct: bool = False,
        **fields: Any,
    ) -> Reply:
        """POST /enrollments paying with `pm` (none at all when None); `fields` add to the body."""
        body: dict[str, Any] = {"student_id": student_id, "course_id": course_id}
        if pm is not None:
            body["payment_method_id"] = pm
        return self.call(
            create_enrollment.lambda_handler,
            "create_enrollment",
            body=body | fields,
            key=key,
            context=context,
            direct=direct,
        )
