"""Permissions end to end: the authorizer's context for a key → a route that needs a permission."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.event_handler import Response

from functions.authorizer import authorize
from learnflow.http import App, caller, make_app, respond
from learnflow.tenancy import Tenant
from learnflow_cli.admin.service import Admin
from tests.support.events import LoadEvent
from tests.support.handlers import BareContext, FakeLimiter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


@dataclass
class Routes:
    """Two tiny apps as route handlers build them: one reads courses, one writes them."""

    limiter: FakeLimiter = field(default_factory=FakeLimiter)
    handled: list[str] = field(default_factory=list)
    read: App = field(init=False)
    write: App = field(init=False)

    def __post_init__(self) -> None:
        self.read = make_app(permission="courses:read", limiter=lambda: self.limiter)
        self.write = make_app(permission="courses:write", limiter=lambda: self.limiter)

        @self.read.get("/courses/<course_id>")
        def get_course(course_id: str) -> Response[str]:
            self.handled.append(f"read {caller(self.read).key_id}")
            return respond({"id": course_id})

        @self.write.post("/courses")
        def create_course() -> Response[str]:
            self.handled.append(f"write {caller(self.write).key_id}")
            return respond({"ok": True}, 201)


@pytest.fixture
def admin(table: Table) -> Admin:
    return Admin(table, None, {})


def authorizer_context(load_event: LoadEvent, secret: str) -> dict[str, Any]:
    """What API Gateway puts in `requestContext.authorizer`: the authorizer's context and the
    principal id."""
    event = load_event("authorizer_token", authorizationToken=f"Bearer {secret}")
    policy = authorize.lambda_handler(event, BareContext())  # type: ignore[arg-type]
    return {"principalId": policy["principalId"], **policy["context"]}


def call(app: App, event: dict[str, Any], context: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event["requestContext"]["authorizer"] = context
    result = app.resolve(event, BareContext())  # type: ignore[arg-type]
    return result["statusCode"], json.loads(result["body"])


def read_event(load_event: LoadEvent) -> dict[str, Any]:
    return load_event("get_course", path_params={"course_id": "crs_0000000000000000000000AA"})


def write_event(load_event: LoadEvent) -> dict[str, Any]:
    return load_event("create_course", body={})


@pytest.mark.parametrize(
    ("granted", "can_read", "can_write"),
    [
        (None, True, True),  # a secret key
        (["courses:write"], True, True),
        (["courses:read"], True, False),
        (["students:write", "enrollments:read"], False, False),
        (["instructors:read"], False, False),
    ],
)
def test_restricted_keys_reach_only_routes_their_permissions_allow(
    load_event: LoadEvent,
    admin: Admin,
    granted: list[str] | None,
    can_read: bool,
    can_write: bool,
) -> None:
    account = admin.create_account("Acme", "standard")
    key = admin.create_key(account["id"], "test", granted)
    context = authorizer_context(load_event, key["secret"])
    routes = Routes()
    for app, event, allowed in (
        (routes.read, read_event(load_event), can_read),
        (routes.write, write_event(load_event), can_write),
    ):
        status, body = call(app, event, dict(context))
        if allowed:
            assert status in (200, 201)
        else:
            assert status == 403
            assert body["error"]["type"] == "permission_error"
            assert body["error"]["code"] == "insufficient_permissions"
            assert body["error"]["request_id"] == event["requestContext"]["requestId"]
    expected = [f"read {key['id']}"] * can_read + [f"write {key['id']}"] * can_write
    assert routes.handled == expected
    # A refused request still counts against the limit (docs/api.md §7: rate limit, then permission)
    assert routes.limiter.hits == [(Tenant(account["id"], "test"), 60)] * 2


def test_a_403_carries_the_rate_limit_headers(load_event: LoadEvent, admin: Admin) -> None:
    account = admin.create_account("Acme", "pro")
    key = admin.create_key(account["id"], "live", ["courses:read"])
    context = authorizer_context(load_event, key["secret"])
    event = write_event(load_event)
    event["requestContext"]["authorizer"] = context
    result = Routes().write.resolve(event, BareContext())  # type: ignore[arg-type]
    headers = dict(result.get("headers") or {})
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = values[-1]
    assert result["statusCode"] == 403
    assert headers["X-RateLimit-Limit"] == "300"
    assert headers["Request-Id"] == event["requestContext"]["requestId"]


def test_a_context_with_no_permissions_is_refused(load_event: LoadEvent) -> None:
    routes = Routes()
    context = {
        "account_id": "acct_0000000000000000000000A1",
        "mode": "test",
        "plan": "standard",
        "rate_limit": "60",
        "key_id": "key_x",
        "key_kind": "restricted",
        "permissions": "",
    }
    status, body = call(routes.read, read_event(load_event), context)
    assert (status, body["error"]["code"]) == (403, "insufficient_permissions")
    assert routes.handled == []
