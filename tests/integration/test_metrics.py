"""The metrics the functions write as they work (the alarms and the dashboard read these): each
event counted once where it happens, with the dimensions template.yaml's alarms ask for."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import requests
from botocore.exceptions import EndpointConnectionError

from functions.authorizer import authorize
from functions.courses import create_course, list_courses, update_course
from functions.enrollments import cancel_enrollment, create_enrollment
from functions.students import create_student
from learnflow import clients, deps, observability
from learnflow.observability import InvocationMetrics
from learnflow_cli.local.stripe_server import StripeServer
from tests.conftest import load_event
from tests.support.handlers import Caller, Context

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

SECRETS = {"test": "sk_test_" + "T" * 32, "live": "sk_live_" + "L" * 32}
Flushed = list[tuple[str, float, dict[str, str]]]
LAMBDA_CONTEXT: Any = Context()


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[StripeServer]:
    server = StripeServer(port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def flushed(table: Table, stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch) -> Flushed:
    """Every metric each invocation flushes, in order (the EMF lines, as data)."""
    monkeypatch.setenv("LEARNFLOW_STRIPE_API_BASE", stripe_server.url)
    for mode, secret in SECRETS.items():
        monkeypatch.setenv(f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()}", secret)
    requests.post(
        stripe_server.url + "/_local/faults", json={"fail_next": 0, "delay_ms": 0}, timeout=5
    )
    deps.reset()
    seen: Flushed = []
    flush = InvocationMetrics.flush

    def record(self: InvocationMetrics) -> None:
        seen.extend(self.pending())
        flush(self)

    monkeypatch.setattr(InvocationMetrics, "flush", record)
    observability.metrics.clear()
    return seen


def _named(flushed: Flushed, name: str) -> list[tuple[float, dict[str, str]]]:
    return [(value, dimensions) for metric, value, dimensions in flushed if metric == name]


def _course(caller: Caller, price: str) -> str:
    body = {"title": "T", "description": "D", "price": Decimal(price), "currency": "EUR"}
    course_id = str(
        caller.call(create_course.lambda_handler, "create_course", body=body).body["id"]
    )
    caller.call(
        update_course.lambda_handler,
        "update_course",
        path=f"/courses/{course_id}",
        path_params={"course_id": course_id},
        body={"status": "published"},
    )
    return course_id


def _student(caller: Caller, n: int) -> str:
    body = {"email": f"m{n}@example.com", "name": "Ada"}
    return str(caller.call(create_student.lambda_handler, "create_student", body=body).body["id"])


def _enroll(caller: Caller, student_id: str, course_id: str, pm: str) -> Any:
    body = {"student_id": student_id, "course_id": course_id, "payment_method_id": pm}
    return caller.call(create_enrollment.lambda_handler, "create_enrollment", body=body)


def test_requests_are_counted_by_route_and_status_class(flushed: Flushed) -> None:
    caller = Caller()
    caller.call(list_courses.lambda_handler, "list_courses")
    caller.call(list_courses.lambda_handler, "list_courses", query={"limit": "0"})

    assert _named(flushed, "Requests") == [
        (1.0, {"route": "GET /courses", "status_class": "2xx"}),
        (1.0, {"route": "GET /courses", "status_class": "4xx"}),
    ]


def test_enrollments_charges_declines_and_refunds_in_minor_units(flushed: Flushed) -> None:
    caller = Caller(mode="live")
    course_id = _course(caller, "49.99")
    student_id, other_id = _student(caller, 1), _student(caller, 2)

    enrolled = _enroll(caller, student_id, course_id, "pm_card_visa")
    declined = _enroll(caller, other_id, course_id, "pm_card_chargeDeclined")
    again = _enroll(caller, student_id, course_id, "pm_card_visa")  # 409: counts nothing
    enrollment_id = enrolled.body["id"]
    cancelled = caller.call(
        cancel_enrollment.lambda_handler,
        "cancel_enrollment",
        path=f"/enrollments/{enrollment_id}/cancel",
        path_params={"enrollment_id": enrollment_id},
        body={"refund": True},
    )

    assert (enrolled.status, declined.status, again.status, cancelled.status) == (
        201,
        402,
        409,
        200,
    )
    live = {"mode": "live"}
    assert _named(flushed, "EnrollmentsCreated") == [(1.0, live)]
    assert _named(flushed, "PaymentsDeclined") == [(1.0, live)]
    assert _named(flushed, "AmountCharged") == [(4999.0, {"currency": "eur", **live})]
    assert _named(flushed, "AmountRefunded") == [(4999.0, {"currency": "eur", **live})]


def test_rate_limit_refusals_are_counted_by_plan(flushed: Flushed) -> None:
    caller = Caller(rate_limit=1)
    first = caller.call(list_courses.lambda_handler, "list_courses")
    second = caller.call(list_courses.lambda_handler, "list_courses")

    assert (first.status, second.status) == (200, 429)
    assert _named(flushed, "RateLimitRefusals") == [(1.0, {"plan": "standard"})]


def test_authorizer_refusals_are_counted_by_reason(
    flushed: Flushed, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = load_event("authorizer_token", authorizationToken="Bearer sk_test_" + "x" * 40)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize.lambda_handler(unknown, LAMBDA_CONTEXT)

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb")

    clients.key_store().meta.client.meta.events.register("before-send.dynamodb", unreachable)
    with pytest.raises(Exception, match=r"^KeyStoreUnavailable$"):
        authorize.lambda_handler(unknown, LAMBDA_CONTEXT)

    assert _named(flushed, "AuthorizerRefusals") == [
        (1.0, {"reason": "unknown"}),
        (1.0, {"reason": "key_store_unavailable"}),
    ]
