"""The metrics the functions write as they work (the alarms and the dashboard read these): each
event counted once where it happens, with the dimensions template.yaml's alarms ask for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import EndpointConnectionError

from functions.authorizer import authorize
from functions.courses import list_courses
from functions.enrollments import cancel_enrollment
from learnflow import clients, observability
from learnflow.observability import InvocationMetrics
from tests.support.events import load_event
from tests.support.handlers import Caller, Context
from tests.support.school import School

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from learnflow_cli.local.stripe_server import StripeServer

Flushed = list[tuple[str, float, dict[str, str]]]
LAMBDA_CONTEXT: Any = Context()


@pytest.fixture
def flushed(table: Table, local_stripe: StripeServer, monkeypatch: pytest.MonkeyPatch) -> Flushed:
    """Every metric each invocation flushes, in order (the EMF lines, as data)."""
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


def test_requests_are_counted_by_route_and_status_class(flushed: Flushed) -> None:
    caller = Caller()
    caller.call(list_courses.lambda_handler, "list_courses")
    caller.call(list_courses.lambda_handler, "list_courses", query={"limit": "0"})

    assert _named(flushed, "Requests") == [
        (1.0, {"route": "GET /courses", "status_class": "2xx"}),
        (1.0, {"route": "GET /courses", "status_class": "4xx"}),
    ]


def test_enrollments_charges_declines_and_refunds_in_minor_units(flushed: Flushed) -> None:
    school = School(mode="live")
    course_id = school.course("49.99", "EUR")
    student_id, other_id = school.student(), school.student()

    enrolled = school.enroll(student_id, course_id, "pm_card_visa")
    declined = school.enroll(other_id, course_id, "pm_card_chargeDeclined")
    again = school.enroll(student_id, course_id, "pm_card_visa")  # 409: counts nothing
    enrollment_id = enrolled.body["id"]
    cancelled = school.call(
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
