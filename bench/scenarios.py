"""What `make bench` measures: the authorizer, the shared request pipeline, course lists at two
catalogue sizes and the cost of enrollments, each beside a baseline taken in the same run."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from bench.harness import Timing, measure, report
from learnflow import clients, deps, ids
from learnflow.config import get_settings
from learnflow.db import keys
from learnflow.db.courses import CourseRepository
from learnflow.jsonio import dumps
from learnflow.keys import hash_secret
from learnflow.models.courses import Course
from learnflow.tenancy import Tenant
from learnflow_cli.admin.service import Admin
from learnflow_cli.template import load_template, table_definition
from tests.support.dynamo_calls import count_dynamo_calls

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

EVENTS = Path(__file__).resolve().parent.parent / "events"
CATEGORIES = ("web", "data", "design", "business", "music")
STATUSES = ("draft", "published", "archived")


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"


def _event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


def create_table() -> None:
    spec = table_definition(load_template())
    boto3.client("dynamodb").create_table(
        **spec.create_table_kwargs(get_settings().require_table())
    )
    deps.reset()


def _table() -> Table:
    return clients.table()


def authorizer() -> None:
    from functions.authorizer import authorize  # noqa: PLC0415 - after the table exists

    admin = Admin(_table(), None, {})
    account = admin.create_account("Bench", "pro")
    secret = admin.create_key(account["id"], "test")["secret"]
    event = _event("authorizer_token")
    event["authorizationToken"] = f"Bearer {secret}"
    malformed = dict(event, authorizationToken="Bearer nope")
    key = keys.api_key(hash_secret(secret))

    def refused() -> None:
        refusal = ""
        try:
            authorize.lambda_handler(malformed, Context())  # type: ignore[arg-type]
        except Exception as error:  # the 401 path is a bare Exception by design
            refusal = str(error)
        if refusal != "Unauthorized":
            raise AssertionError(refusal)

    timings = [
        measure("GetItem of the key item (baseline)", lambda: _table().get_item(Key=key)),
        measure(
            "authorizer, valid key",
            lambda: authorize.lambda_handler(event, Context()),  # type: ignore[arg-type]
        ),
        measure("authorizer, malformed header (no read)", refused),
    ]
    report("TOKEN authorizer, warm, moto in-process", timings, "GetItem of the key item (baseline)")


def _course(index: int) -> Course:
    return Course(
        id=ids.new_id("crs"),
        title=f"Course {index}",
        description="A course for the benchmark.",
        category=CATEGORIES[index % len(CATEGORIES)],
        instructor_id=None,
        instructor=None,
        price=Decimal("49.99"),
        currency="USD",
        status=STATUSES[index % len(STATUSES)],  # type: ignore[arg-type]
        enrollment_count=0,
        livemode=False,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


def _seed(tenant: Tenant, count: int) -> str:
    courses = [_course(index) for index in range(count)]
    deps.repository(CourseRepository).load(tenant, courses)
    return courses[0].id


def request_pipeline() -> None:
    from functions.courses import get_course  # noqa: PLC0415

    tenant = Tenant("acct_benchpipeline00000000001", "test")
    course_id = _seed(tenant, 1)
    event = _event("get_course")
    event["pathParameters"] = {"course_id": course_id}
    event["path"] = f"/courses/{course_id}"
    event["requestContext"]["authorizer"].update(
        {"account_id": tenant.account_id, "mode": "test", "rate_limit": "100000000"}
    )
    item_key = keys.item(tenant, keys.COURSE, course_id)

    def raw_reads() -> None:
        _table().update_item(
            Key=keys.rate_window(tenant, 0),
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": "count"},
            ExpressionAttributeValues={":one": 1},
        )
        _table().get_item(Key=item_key, ConsistentRead=True)

    def handler() -> None:
        result = get_course.lambda_handler(event, Context())  # type: ignore[arg-type]
        assert result["statusCode"] == 200

    timings = [
        measure("GetItem of the course (baseline)", lambda: _table().get_item(Key=item_key)),
        measure("UpdateItem + GetItem, no handler code", raw_reads),
        measure("GET /courses/{id} through the handler", handler),
    ]
    report("One request through the shared layer", timings, "GetItem of the course (baseline)")


def list_courses() -> None:
    from functions.courses import list_courses as handler_module  # noqa: PLC0415

    timings: list[Timing] = []
    reads: list[tuple[str, int]] = []
    for size in (100, 10_000):
        tenant = Tenant(f"acct_benchlist{size:014d}", "test")
        _seed(tenant, size)
        for label, query in (
            ("limit 10", {"limit": "10"}),
            ("limit 100", {"limit": "100"}),
            ("limit 10, category+status", {"limit": "10", "category": "web", "status": "draft"}),
        ):
            event = _event("list_courses")
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
            event["requestContext"]["authorizer"].update(
                {"account_id": tenant.account_id, "mode": "test", "rate_limit": "100000000"}
            )

            def call(event: dict[str, Any] = event) -> None:
                result = handler_module.lambda_handler(event, Context())  # type: ignore[arg-type]
                assert result["statusCode"] == 200

            with count_dynamo_calls(_table().meta.client) as calls:
                call()
            reads.append((f"{size:>6} courses, {label}", calls.items_read))
            timings.append(measure(f"{size:>6} courses, {label}", call, runs=60))
    report("GET /courses at two catalogue sizes", timings, "   100 courses, limit 10")
    print(
        "(the times above are mostly moto's Query, which walks the whole partition in memory;"
        "\n DynamoDB reads by key, so what the code controls is the items read, below)"
    )
    print("\nitems read per list call (Query page + has_more probe + counters item):")
    for name, count in reads:
        print(f"  {name:<44} {count}")


class _School:
    """One tenant's catalogue and the enrollment routes, called as API Gateway calls them."""

    def __init__(self, tenant: Tenant) -> None:
        from functions.courses import create_course, update_course  # noqa: PLC0415
        from functions.enrollments import cancel_enrollment, create_enrollment  # noqa: PLC0415
        from functions.students import create_student  # noqa: PLC0415

        self.tenant = tenant
        self._students = iter(range(1_000_000))
        self._handlers: dict[str, Any] = {
            "create_course": create_course,
            "update_course": update_course,
            "create_student": create_student,
            "create_enrollment": create_enrollment,
            "cancel_enrollment": cancel_enrollment,
        }
        self.paid, self.free = self.course("49.99"), self.course("0")

    def call(self, name: str, body: dict[str, Any], **path: str) -> dict[str, Any]:
        event = _event(name)
        event["body"] = dumps(body)
        event["requestContext"]["authorizer"].update(
            {"account_id": self.tenant.account_id, "mode": "test", "rate_limit": "100000000"}
        )
        if path:
            event["pathParameters"] = path
            event["path"] = str(event["resource"]).format(**path)
        result = self._handlers[name].lambda_handler(event, Context())
        answer = dict(json.loads(result["body"], parse_float=Decimal))
        assert "error" not in answer, answer
        return answer

    def course(self, price: str) -> str:
        body = {"title": "C", "description": "D", "price": Decimal(price), "currency": "USD"}
        course_id = str(self.call("create_course", body)["id"])
        self.call("update_course", {"status": "published"}, course_id=course_id)
        return course_id

    def student(self) -> str:
        body = {"email": f"bench{next(self._students)}@example.com", "name": "Bench"}
        return str(self.call("create_student", body)["id"])

    def enroll(self, course_id: str, student_id: str | None = None) -> str:
        body = {"student_id": student_id or self.student(), "course_id": course_id}
        if course_id == self.paid:
            body["payment_method_id"] = "pm_card_visa"
        return str(self.call("create_enrollment", body)["id"])

    def cancel(self, enrollment_id: str) -> None:
        self.call("cancel_enrollment", {"refund": True}, enrollment_id=enrollment_id)


def enrollments() -> None:
    """What one enrollment costs: DynamoDB calls, items written and read, and calls to the
    payments server (the local Stripe-compatible one, over HTTP through the real SDK), for a
    paid enrollment, a free one and a cancel with refund; and their times beside a GetItem."""
    from learnflow_cli.local.stripe_server import StripeServer  # noqa: PLC0415

    server = StripeServer(port=0)
    stripe_calls: list[str] = []
    api = server._api

    def counting(request: Any) -> Any:
        stripe_calls.append(f"{request.method} {request.path}")
        return api(request)

    server._api = counting  # type: ignore[method-assign]
    server.start()
    os.environ["LEARNFLOW_STRIPE_API_BASE"] = server.url
    os.environ["LEARNFLOW_STRIPE_SECRET_KEY_TEST"] = "sk_test_" + "B" * 32
    school = _School(Tenant("acct_benchenrollments000000001", "test"))
    print("\n## What one enrollment costs (each operation's own DynamoDB and payments traffic)")
    print(
        f"{'operation':<20} {'DynamoDB calls':>15} {'written':>8} {'read':>5} {'Stripe':>7}  calls"
    )
    operations: list[tuple[str, Any, Any]] = [
        ("paid enrollment", lambda student: school.enroll(school.paid, student), school.student),
        ("free enrollment", lambda student: school.enroll(school.free, student), school.student),
        ("cancel with refund", school.cancel, lambda: school.enroll(school.paid)),
    ]
    for label, operation, prepare in operations:
        argument = prepare()
        stripe_calls.clear()
        with count_dynamo_calls(_table().meta.client) as calls:
            operation(argument)
        detail = ", ".join(f"{name} {n}" for name, n in sorted(calls.calls.items()))
        print(
            f"{label:<20} {sum(calls.calls.values()):>15} {calls.items_written:>8}"
            f" {calls.items_read:>5} {len(stripe_calls):>7}  {detail}"
        )
    item_key = keys.item(school.tenant, keys.COURSE, school.paid)
    timings = [
        measure("GetItem of the course (baseline)", lambda: _table().get_item(Key=item_key)),
        measure("POST /students (a transaction of 3 items)", school.student, runs=60),
        measure("POST /enrollments, free course", lambda: school.enroll(school.free), runs=60),
        measure("POST /enrollments, paid (Stripe over HTTP)", lambda: school.enroll(school.paid)),
        measure(
            "enroll paid + cancel with refund",
            lambda: school.cancel(school.enroll(school.paid)),
            runs=40,
        ),
    ]
    report("Enrollments, warm, moto in-process", timings, "GetItem of the course (baseline)")
    server.stop()
