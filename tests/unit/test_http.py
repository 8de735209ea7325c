"""The shared HTTP layer: guards in the contract's order, the envelope, headers, validation."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import Response
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel, ConfigDict, Field

from learnflow import errors
from learnflow.http import App, caller, make_app, query, respond
from learnflow.observability import logger
from learnflow.tenancy import Tenant
from tests.support.events import LoadEvent
from tests.support.handlers import BareContext, FakeLimiter


class CourseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=200)]
    price: Decimal


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, le=100)] = 10


@dataclass
class Harness:
    app: App
    limiter: FakeLimiter
    calls: list[str]


def _build(permission: str = "courses:write", allow: int = 1000) -> Harness:
    limiter = FakeLimiter(allow=allow)
    app = make_app(permission=permission, query=None, limiter=lambda: limiter)
    calls: list[str] = []

    @app.post("/courses")
    def create(body: CourseIn) -> Response[str]:
        calls.append(caller(app).tenant.account_id)
        if body.title == "boom":
            raise RuntimeError("secret internals: table arn:aws:dynamodb:…")
        if body.title == "throttled":
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "Query",
            )
        if body.title == "timeout":
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        if body.title == "denied":
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Query"
            )
        if body.title == "taken":
            raise errors.ConflictError("Taken.", code="email_taken")
        return respond(
            {"title": body.title, "price": body.price, "mode": caller(app).tenant.mode}, 201
        )

    return Harness(app=app, limiter=limiter, calls=calls)


def _call(app: App, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    result = app.resolve(event, BareContext())  # type: ignore[arg-type]
    headers = dict(result.get("headers") or {})
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = values[-1]
    return result["statusCode"], headers, json.loads(result["body"])


def test_success_carries_request_id_and_rate_limit_headers(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "Intro", "price": 49.99})
    status, headers, body = _call(harness.app, event)
    assert status == 201
    assert body == {"title": "Intro", "price": 49.99, "mode": "test"}
    assert headers["Request-Id"] == event["requestContext"]["requestId"]
    assert headers["X-RateLimit-Limit"] == "60"
    assert headers["X-RateLimit-Remaining"] == "59"
    assert headers["X-RateLimit-Reset"] == "1700000060"
    assert headers["Content-Type"] == "application/json"


def test_price_is_an_exact_json_number(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body=None)
    event["body"] = '{"title": "Intro", "price": 1.13}'
    _, _, _ = _call(harness.app, event)
    result = harness.app.resolve(event, BareContext())  # type: ignore[arg-type]
    assert '"price":1.13' in result["body"]


def test_caller_comes_from_the_authorizer_context(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event(
        "create_course",
        body={"title": "x", "price": 1},
        authorizer={"account_id": "acct_other", "mode": "live", "rate_limit": "300"},
    )
    status, headers, body = _call(harness.app, event)
    assert status == 201
    assert body["mode"] == "live"
    assert harness.calls == ["acct_other"]
    assert harness.limiter.hits == [(Tenant("acct_other", "live"), 300)]
    assert headers["X-RateLimit-Limit"] == "300"


def test_missing_authorizer_context_is_401(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "x", "price": 1})
    event["requestContext"]["authorizer"] = None
    status, _, body = _call(harness.app, event)
    assert status == 401
    assert body["error"]["type"] == "authentication_error"
    assert harness.calls == []


def test_rate_limit_comes_before_permission_and_input(load_event: LoadEvent) -> None:
    harness = _build(allow=0)
    event = load_event(
        "create_course", body={"nonsense": True}, authorizer={"permissions": "courses:read"}
    )
    status, headers, body = _call(harness.app, event)
    assert status == 429
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert headers["Retry-After"] == "12"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["Request-Id"] == body["error"]["request_id"]
    assert harness.calls == []


def test_permission_comes_before_input(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event(
        "create_course",
        body={"nonsense": True},
        authorizer={"key_kind": "restricted", "permissions": "courses:read,students:write"},
    )
    status, headers, body = _call(harness.app, event)
    assert status == 403
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["code"] == "insufficient_permissions"
    assert headers["X-RateLimit-Remaining"] == "59"  # the request was counted
    assert harness.calls == []


@pytest.mark.parametrize(
    ("granted", "needed", "status"),
    [
        ("*", "courses:write", 201),
        ("courses:write", "courses:write", 201),
        ("courses:write", "courses:read", 201),
        ("courses:read", "courses:write", 403),
        ("students:write", "courses:read", 403),
        ("", "courses:read", 403),
    ],
)
def test_permission_matrix(load_event: LoadEvent, granted: str, needed: str, status: int) -> None:
    harness = _build(permission=needed)
    event = load_event(
        "create_course", body={"title": "x", "price": 1}, authorizer={"permissions": granted}
    )
    assert _call(harness.app, event)[0] == status


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ('{"price": 1}', "parameter_missing", "title"),
        ('{"title": "x"}', "parameter_missing", "price"),
        ('{"title": "x", "price": 1, "colour": "red"}', "parameter_unknown", "colour"),
        ('{"title": "", "price": 1}', "parameter_invalid", "title"),
        ('{"title": 5, "price": 1}', "parameter_invalid", "title"),
        ('{"title": "x", "price": "abc"}', "parameter_invalid", "price"),
        ('{"title": "x",', "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('"a string"', "invalid_json", None),
        ("", "parameter_missing", "title"),  # an empty POST body reads as {}
        ("   ", "invalid_json", None),  # blanks are not empty, and not JSON
    ],
)
def test_input_errors_are_400_with_param(
    load_event: LoadEvent, body: str, code: str, param: str | None
) -> None:
    harness = _build()
    event = load_event("create_course")
    event["body"] = body
    status, _, payload = _call(harness.app, event)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["code"] == code
    assert payload["error"].get("param") == param
    assert harness.calls == []


def test_body_is_json_whatever_the_content_type_says(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "curl", "price": 1})
    event["headers"]["Content-Type"] = "application/x-www-form-urlencoded"
    event["multiValueHeaders"]["Content-Type"] = ["application/x-www-form-urlencoded"]
    assert _call(harness.app, event)[0] == 201


def test_base64_body_is_decoded(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course")
    event["body"] = base64.b64encode(b'{"title": "b64", "price": 2}').decode()
    event["isBase64Encoded"] = True
    status, _, body = _call(harness.app, event)
    assert status == 201
    assert body["title"] == "b64"


def test_app_error_from_the_handler_uses_the_envelope(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "taken", "price": 1})
    status, headers, body = _call(harness.app, event)
    assert status == 409
    assert body["error"]["code"] == "email_taken"
    assert body["error"]["request_id"] == headers["Request-Id"]


def test_unexpected_error_is_a_generic_500_and_logged(
    load_event: LoadEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", log)
    harness = _build()
    event = load_event("create_course", body={"title": "boom", "price": 1})
    status, headers, body = _call(harness.app, event)
    assert status == 500
    assert body["error"]["type"] == "api_error"
    assert "internals" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)
    assert headers["Request-Id"] == event["requestContext"]["requestId"]
    # the log keeps what the client must not see
    assert "secret internals" in log.getvalue()


def _list_app() -> tuple[App, list[int]]:
    app = make_app(permission="courses:read", query=ListQuery, limiter=FakeLimiter)
    seen: list[int] = []

    @app.get("/courses")
    def list_courses() -> Response[str]:
        seen.append(query(app, ListQuery).limit)
        return respond({"object": "list"})

    return app, seen


def test_query_is_validated_with_the_route_model(load_event: LoadEvent) -> None:
    app, seen = _list_app()
    assert _call(app, load_event("list_courses", query={"limit": "25"}))[0] == 200
    assert _call(app, load_event("list_courses", query={}))[0] == 200
    assert seen == [25, 10]


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"limit": "0"}, "parameter_invalid", "limit"),
        ({"limit": "101"}, "parameter_invalid", "limit"),
        ({"limit": "abc"}, "parameter_invalid", "limit"),
        ({"colour": "red"}, "parameter_unknown", "colour"),
    ],
)
def test_bad_query_is_400(
    load_event: LoadEvent, params: dict[str, str], code: str, param: str
) -> None:
    app, seen = _list_app()
    status, _, body = _call(app, load_event("list_courses", query=params))
    assert status == 400
    assert body["error"]["code"] == code
    assert body["error"]["param"] == param
    assert seen == []


def test_repeated_query_parameter_is_400(load_event: LoadEvent) -> None:
    app, _ = _list_app()
    event = load_event("list_courses", query={"limit": "5"})
    event["multiValueQueryStringParameters"] = {"limit": ["5", "6"]}
    status, _, body = _call(app, event)
    assert status == 400
    assert body["error"]["param"] == "limit"


def test_route_without_query_model_rejects_any_parameter(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "x", "price": 1}, query={"expand": "all"})
    status, _, body = _call(harness.app, event)
    assert status == 400
    assert body["error"]["code"] == "parameter_unknown"


def test_unauthenticated_app_needs_no_caller_and_counts_nothing(load_event: LoadEvent) -> None:
    app = make_app(authenticated=False)

    @app.get("/openapi.json")
    def openapi() -> Response[str]:
        return respond({"openapi": "3.1.0"})

    event = load_event("get_openapi")
    event["requestContext"].pop("authorizer", None)
    status, headers, body = _call(app, event)
    assert status == 200
    assert body == {"openapi": "3.1.0"}
    assert "X-RateLimit-Limit" not in headers
    assert headers["Request-Id"] == event["requestContext"]["requestId"]


def test_unknown_route_inside_a_function_is_route_not_found(load_event: LoadEvent) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": "x", "price": 1})
    event["path"] = "/nowhere"
    event["resource"] = "/nowhere"
    status, _, body = _call(harness.app, event)
    assert status == 404
    assert body["error"]["code"] == "route_not_found"


@pytest.mark.parametrize(
    ("title", "status", "code"),
    [
        ("throttled", 503, "service_unavailable"),
        ("timeout", 503, "service_unavailable"),
        ("denied", 500, "api_error"),
    ],
)
def test_aws_try_again_answers_are_503_and_other_faults_500(
    load_event: LoadEvent, title: str, status: int, code: str
) -> None:
    harness = _build()
    event = load_event("create_course", body={"title": title, "price": 1})
    got, headers, body = _call(harness.app, event)
    assert (got, body["error"]["type"], body["error"]["code"]) == (status, "api_error", code)
    assert "dynamodb" not in json.dumps(body).lower()
    assert headers["Request-Id"] == body["error"]["request_id"]
