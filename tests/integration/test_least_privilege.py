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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from functions.authorizer import authorize
from functions.courses import create_course, get_course, list_courses, update_course
from functions.enrollments import (
    cancel_enrollment,
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
from tests.support.aws import SENDER, SESSION, TABLE
from tests.support.events import load_event
from tests.support.handlers import Context
from tests.support.iam import Policy, Request, Resolver, recording
from tests.support.payments import faults
from tests.support.sam import actions, role_statements, translated
from tests.support.school import School as BaseSchool

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

LAMBDA_CONTEXT: Any = Context()  # what the authorizer and the stream function are given
_n = itertools.count(1)


pytestmark = pytest.mark.usefixtures("module_table")


@pytest.fixture(scope="module", autouse=True)
def _verified_sender(module_table: Table) -> None:
    SESSION.client("sesv2").create_email_identity(EmailIdentity=SENDER)


@pytest.fixture(autouse=True)
def _settings(local_stripe: StripeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", SENDER)
    deps.reset()


@dataclass
class School(BaseSchool):
    """Its courses are in one category, so the lists by category read something."""

    def course(
        self, price: str = "49.99", currency: str = "USD", *, publish: bool = True, **fields: Any
    ) -> str:
        return super().course(price, currency, publish=publish, **{"category": "science", **fields})


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
            faults(os.environ["LEARNFLOW_STRIPE_API_BASE"], fail_next=2)
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
