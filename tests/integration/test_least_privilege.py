"""Each function's role, as template.yaml grants it, against what the function does.

Every function's code runs its paths (happy ones and the branches that touch other items:
replays, conflicts, declines, refunds, failed sends) against moto, with every DynamoDB call
turned into the authorizations IAM would make (tests/support/iam.py). Two things must hold:
every one of them is allowed by the function's role, and every DynamoDB action the role grants
is used by one of them. So the grants are enough, and no more than enough. tests/template
checks the grants themselves (resources, key prefixes) against its table of needs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.authorizer import authorize
from functions.courses import create_course, get_course, list_courses, update_course
from functions.enrollments import (
    cancel_enrollment,
    create_enrollment,
    get_enrollment,
    list_enrollments,
)
from functions.instructors import create_instructor, get_instructor, list_instructors
from functions.notifications import send_welcome_email
from functions.openapi import get_openapi
from functions.students import create_student, get_student, list_students, update_student
from learnflow import clients, deps
from learnflow.db.accounts import AccountRepository
from learnflow.keys import hash_secret
from learnflow_cli.admin.service import Admin
from learnflow_cli.local.stripe_server import StripeServer
from learnflow_cli.template import TableDefinition
from tests.conftest import FAKE_ENV, load_event
from tests.support.handlers import Caller, Context, Reply
from tests.support.iam import Policy, Request, Resolver, recording
from tests.support.sam import actions, role_statements, translated

TABLE = FAKE_ENV["LEARNFLOW_TABLE"]
LAMBDA_CONTEXT: Any = Context()  # what the authorizer and the stream function are given
SENDER = "no-reply@learnflow.com"
SECRETS = {"test": "sk_test_" + "T" * 32, "live": "sk_live_" + "L" * 32}
_n = itertools.count(1)


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[StripeServer]:
    server = StripeServer(port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def _aws(table_spec: TableDefinition) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAKE_ENV.items():
            env.setenv(name, value)
        with mock_aws():
            boto3.client("dynamodb").create_table(**table_spec.create_table_kwargs(TABLE))
            boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
            yield


@pytest.fixture(autouse=True)
def _settings(stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNFLOW_STRIPE_API_BASE", stripe_server.url)
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", SENDER)
    for mode, secret in SECRETS.items():
        monkeypatch.setenv(f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()}", secret)
    requests.post(
        stripe_server.url + "/_local/faults", json={"fail_next": 0, "delay_ms": 0}, timeout=5
    )
    deps.reset()


@dataclass
class School(Caller):
    """A tenant calling routes; `ok` insists on the status it expects."""

    def ok(self, status: int, handler: Callable[..., Any], event: str, **given: Any) -> Reply:
        reply = self.call(handler, event, **given)
        assert reply.status == status, reply.body
        return reply

    def instructor(self) -> str:
        body = {"name": "Ada", "email": f"ada{next(_n)}@example.com"}
        return str(
            self.ok(201, create_instructor.lambda_handler, "create_instructor", body=body).body[
                "id"
            ]
        )

    def course(self, price: str = "49.99", *, instructor_id: str | None = None) -> str:
        body: dict[str, Any] = {
            "title": "Course",
            "description": "What it teaches.",
            "price": Decimal(price),
            "currency": "USD",
            "category": "science",
        }
        if instructor_id:
            body["instructor_id"] = instructor_id
        course_id = str(
            self.ok(201, create_course.lambda_handler, "create_course", body=body).body["id"]
        )
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

    def student(self) -> str:
        body = {"email": f"s{next(_n)}@example.com", "name": "Grace"}
        return str(
            self.ok(201, create_student.lambda_handler, "create_student", body=body).body["id"]
        )

    def enroll(
        self,
        student_id: str,
        course_id: str,
        pm: str = "pm_card_visa",
        *,
        key: str | None = None,
        **fields: Any,
    ) -> Reply:
        body = {"student_id": student_id, "course_id": course_id, "payment_method_id": pm}
        return self.call(
            create_enrollment.lambda_handler, "create_enrollment", body=body | fields, key=key
        )


def _stripe_faults(**settings: int) -> None:
    base = os.environ["LEARNFLOW_STRIPE_API_BASE"]
    requests.post(base + "/_local/faults", json=settings, timeout=5).raise_for_status()


def _by_id(path: str, name: str, object_id: str) -> dict[str, Any]:
    return {"path": path.format(object_id), "path_params": {name: object_id}}


# --------------------------------------------------------------------------- the paths


def instructors(school: School, function: str) -> None:
    if function == "CreateInstructorFunction":
        body = {"name": "Ada", "email": "ada@example.com"}
        with recording() as calls:
            school.ok(
                201, create_instructor.lambda_handler, "create_instructor", body=body, key="i"
            )
            school.ok(
                201, create_instructor.lambda_handler, "create_instructor", body=body, key="i"
            )
        RECORDED[function] = calls
        return
    instructor_id = school.instructor()
    school.instructor()
    with recording() as calls:
        if function == "GetInstructorFunction":
            given = _by_id("/instructors/{}", "instructor_id", instructor_id)
            school.ok(200, get_instructor.lambda_handler, "get_instructor", **given)
        else:
            school.ok(
                200, list_instructors.lambda_handler, "list_instructors", query={"limit": "1"}
            )
            query = {"limit": "1", "starting_after": instructor_id}
            school.ok(200, list_instructors.lambda_handler, "list_instructors", query=query)
    RECORDED[function] = calls


def courses(school: School, function: str) -> None:
    instructor_id = school.instructor()
    if function == "CreateCourseFunction":
        with recording() as calls:
            body = {
                "title": "T",
                "description": "D",
                "price": Decimal("10.00"),
                "currency": "USD",
                "instructor_id": instructor_id,
            }
            school.ok(201, create_course.lambda_handler, "create_course", body=body, key="c")
            school.ok(201, create_course.lambda_handler, "create_course", body=body, key="c")
        RECORDED[function] = calls
        return
    course_id = school.course(instructor_id=instructor_id)
    with recording() as calls:
        if function == "UpdateCourseFunction":
            school.patch_course(course_id, {"title": "New title"})  # one UpdateItem
            school.patch_course(course_id, {"status": "archived"})  # with its counts
            reply = school.call(
                update_course.lambda_handler,
                "update_course",
                key="u",
                **_by_id("/courses/{}", "course_id", course_id),
                body={"instructor_id": instructor_id},
            )
            assert reply.status == 200, reply.body
        elif function == "GetCourseFunction":
            given = _by_id("/courses/{}", "course_id", course_id)
            school.ok(200, get_course.lambda_handler, "get_course", **given)
        else:
            for query in (
                {},
                {"status": "published"},
                {"category": "science"},
                {"category": "science", "status": "published"},
                {"limit": "1", "starting_after": course_id},
            ):
                school.ok(200, list_courses.lambda_handler, "list_courses", query=query)
    RECORDED[function] = calls


def students(school: School, function: str) -> None:
    if function == "CreateStudentFunction":
        with recording() as calls:
            body = {"email": "taken@example.com", "name": "Ada"}
            school.ok(201, create_student.lambda_handler, "create_student", body=body, key="s")
            school.ok(409, create_student.lambda_handler, "create_student", body=body)
        RECORDED[function] = calls
        return
    student_id = school.student()
    with recording() as calls:
        given = _by_id("/students/{}", "student_id", student_id)
        if function == "UpdateStudentFunction":
            body = {"email": f"new{next(_n)}@example.com"}
            school.ok(200, update_student.lambda_handler, "update_student", body=body, **given)
            body = {"name": "Grace B."}
            school.ok(
                200, update_student.lambda_handler, "update_student", body=body, key="p", **given
            )
        elif function == "GetStudentFunction":
            school.ok(200, get_student.lambda_handler, "get_student", **given)
        else:
            school.ok(200, list_students.lambda_handler, "list_students", query={"limit": "1"})
            query = {"email": "nobody@example.com"}
            school.ok(200, list_students.lambda_handler, "list_students", query=query)
            query = {"limit": "1", "starting_after": student_id}
            school.ok(200, list_students.lambda_handler, "list_students", query=query)
    RECORDED[function] = calls


def enrollments(school: School, function: str) -> None:
    course_id, free_id = school.course(), school.course("0")
    student_id, other_id, third_id = school.student(), school.student(), school.student()
    if function == "CreateEnrollmentFunction":
        with recording() as calls:
            assert school.enroll(student_id, course_id, key="e").status == 201
            assert school.enroll(student_id, course_id, key="e").replayed
            assert school.enroll(student_id, course_id).status == 409
            assert school.enroll(other_id, course_id, "pm_card_chargeDeclined").status == 402
            assert school.enroll(other_id, free_id).status == 201
            # Stripe fails twice (the SDK retries once): the draft stays, its lease ended. The
            # next request for that pair finishes it first, then reads the pair again: 409.
            _stripe_faults(fail_next=2)
            assert school.enroll(third_id, course_id).status == 502
            assert school.enroll(third_id, course_id).status == 409
        RECORDED[function] = calls
        return
    enrollment_id = str(school.enroll(student_id, course_id).body["id"])
    given = _by_id("/enrollments/{}", "enrollment_id", enrollment_id)
    with recording() as calls:
        if function == "CancelEnrollmentFunction":
            given["path"] += "/cancel"
            body = {"refund": True}
            school.ok(
                200,
                cancel_enrollment.lambda_handler,
                "cancel_enrollment",
                body=body,
                key="x",
                **given,
            )
            school.ok(
                400, cancel_enrollment.lambda_handler, "cancel_enrollment", body=body, **given
            )
        elif function == "GetEnrollmentFunction":
            school.ok(200, get_enrollment.lambda_handler, "get_enrollment", **given)
        else:
            for query in (
                {},
                {"status": "active"},
                {"course_id": course_id},
                {"course_id": course_id, "status": "active"},
                {"student_id": student_id},
                {"student_id": student_id, "status": "active"},
                {"course_id": course_id, "student_id": student_id},
                {"course_id": course_id, "student_id": student_id, "status": "active"},
                {"limit": "1", "starting_after": enrollment_id},
            ):
                school.ok(200, list_enrollments.lambda_handler, "list_enrollments", query=query)
    RECORDED[function] = calls


def public(school: School, function: str) -> None:
    with recording() as calls:
        if function == "GetOpenApiFunction":
            reply = get_openapi.lambda_handler(load_event("get_openapi"), LAMBDA_CONTEXT)
            assert reply["statusCode"] == 200
        # GET /docs serves a page built from files: like /openapi.json, no table, no grant.
    RECORDED[function] = calls


def authorizer(school: School, function: str) -> None:
    admin = Admin(clients.table(), None, {})
    account = admin.create_account("Acme", "standard")
    secret = str(admin.create_key(account["id"], "test")["secret"])
    assert AccountRepository(clients.table()).find_key(hash_secret(secret)) is not None
    clients.reset()
    with recording() as calls:
        allowed = authorize.lambda_handler(
            load_event("authorizer_token", authorizationToken=f"Bearer {secret}"), LAMBDA_CONTEXT
        )
        assert allowed["principalId"] == account["id"]
        with pytest.raises(Exception, match="Unauthorized"):
            authorize.lambda_handler(
                load_event("authorizer_token", authorizationToken="Bearer sk_test_" + "x" * 40),
                LAMBDA_CONTEXT,
            )
    RECORDED[function] = calls


def welcome(school: School, function: str) -> None:
    course_id, student_id = school.course(), school.student()
    reply = school.enroll(student_id, course_id, send_welcome_email=True)
    assert reply.status == 201, reply.body
    item = clients.table().get_item(
        Key={"PK": f"T#{school.account_id}#test#ENROLLMENT", "SK": reply.body["id"]}
    )["Item"]
    image = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    event = load_event("stream_enrollment_insert")
    event["Records"][0]["dynamodb"]["NewImage"] = image
    event["Records"][0]["dynamodb"]["Keys"] = {"PK": image["PK"], "SK": image["SK"]}
    refusals = ["once"]

    def refuse(**_: Any) -> None:
        if refusals:
            refusals.clear()
            raise ClientError({"Error": {"Code": "TooManyRequestsException"}}, "SendEmail")

    clients.ses().meta.events.register("before-parameter-build.sesv2.SendEmail", refuse)
    with recording() as calls:
        # SES refuses once: the claim is released (DeleteItem) for the retry, which sends, and
        # a redelivery after that finds the claim sent.
        with pytest.raises(BatchProcessingError):
            send_welcome_email.lambda_handler(event, LAMBDA_CONTEXT)
        assert send_welcome_email.lambda_handler(event, LAMBDA_CONTEXT)["batchItemFailures"] == []
        assert send_welcome_email.lambda_handler(event, LAMBDA_CONTEXT)["batchItemFailures"] == []
    RECORDED[function] = calls


PATHS: dict[str, Callable[[School, str], None]] = {
    "AuthorizerFunction": authorizer,
    "CreateInstructorFunction": instructors,
    "GetInstructorFunction": instructors,
    "ListInstructorsFunction": instructors,
    "CreateCourseFunction": courses,
    "GetCourseFunction": courses,
    "UpdateCourseFunction": courses,
    "ListCoursesFunction": courses,
    "CreateStudentFunction": students,
    "GetStudentFunction": students,
    "UpdateStudentFunction": students,
    "ListStudentsFunction": students,
    "CreateEnrollmentFunction": enrollments,
    "GetEnrollmentFunction": enrollments,
    "CancelEnrollmentFunction": enrollments,
    "ListEnrollmentsFunction": enrollments,
    "GetOpenApiFunction": public,
    "GetDocsFunction": public,
    "SendWelcomeEmailFunction": welcome,
}
RECORDED: dict[str, list[Request]] = {}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated()


def test_every_function_has_its_paths(cfn: dict[str, Any]) -> None:
    functions = {k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert functions == set(PATHS)


@pytest.mark.parametrize("function", sorted(PATHS))
def test_role_allows_what_the_function_does_and_nothing_it_does_not(
    cfn: dict[str, Any], function: str
) -> None:
    PATHS[function](School(), function)
    used = RECORDED.pop(function)
    statements = role_statements(cfn, function)
    policy = Policy.of(statements, Resolver(cfn, TABLE))

    refused = [request for request in used if not policy.allows(request)]
    granted = {
        action
        for statement in statements
        for action in actions(statement)
        if action.startswith("dynamodb:")
    }

    assert refused == []
    assert granted == {request.action for request in used}
