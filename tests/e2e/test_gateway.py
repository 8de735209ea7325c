"""The local API Gateway in front of the real functions, against `learnflow serve`: the keys
file, keys and the authorizer, routes, rate limits, the Stripe-compatible server and the stream."""

from __future__ import annotations

import json
import re
import stat
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests
import stripe

from learnflow.db import keys as db_keys
from learnflow.ids import new_id
from learnflow.tenancy import Tenant
from tests.support.gateway import UUID, assert_error, json_body

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

    from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

SECRET = re.compile(r"^sk_(test|live)_[A-Za-z0-9]{32,}$")


def test_keys_file_has_the_contract_shape(stack: Stack) -> None:
    document = json.loads(stack.keys_file.read_text())
    assert set(document) == {"api", "accounts", "env"}
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v2", document["api"])
    assert [account["plan"] for account in document["accounts"]] == ["standard", "pro"]
    for account in document["accounts"]:
        assert set(account) == {"id", "plan", "keys"}
        assert re.fullmatch(r"acct_[0-9A-Za-z]{24}", account["id"])
        assert set(account["keys"]) == {"test", "live"}
        assert account["keys"]["test"].startswith("sk_test_")
        assert account["keys"]["live"].startswith("sk_live_")
        assert all(SECRET.match(secret) for secret in account["keys"].values())
    assert {
        "LEARNFLOW_TABLE",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE",
        "LEARNFLOW_USAGE_PLAN_STANDARD",
        "LEARNFLOW_USAGE_PLAN_PRO",
    } <= set(document["env"])
    assert document["env"]["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    # It holds secrets: only its owner may read it.
    assert stat.S_IMODE(stack.keys_file.stat().st_mode) == 0o600


def test_seeded_keys_authenticate_with_their_plan_limits(stack: Stack) -> None:
    for account, limit in ((stack.standard, "60"), (stack.pro, "300")):
        for secret in account.keys.values():
            response = requests.get(
                stack.url("/courses"), headers=stack.headers(secret), timeout=10
            )
            assert response.status_code == 200, response.text
            assert json_body(response)["object"] == "list"
            # The plan's limit comes from the authorizer's context: it reached the handler.
            assert response.headers["X-RateLimit-Limit"] == limit


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer sk_test_short",
        "Basic dXNlcjpwYXNz",
        "bearer sk_test_" + "a" * 32,
        "Bearer pk_test_" + "a" * 32,
        "Bearer sk_test_" + "a" * 31 + "!",
        "Bearer  sk_test_" + "a" * 32,
    ],
)
def test_malformed_authorization_is_401_without_invoking_the_authorizer(
    stack: Stack, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(stack.url("/courses"), headers=headers, timeout=10)
    assert_error(response, 401, "authentication_error", None)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    line = stack.log_line(response.headers["Request-Id"])
    assert "(gateway)" in line
    assert " auth " not in line


def test_unknown_well_formed_key_is_401_from_the_authorizer(stack: Stack) -> None:
    response = requests.get(
        stack.url("/courses"), headers=stack.headers("sk_test_" + "Z" * 40), timeout=10
    )
    assert_error(response, 401, "authentication_error", None)
    assert " auth " in stack.log_line(response.headers["Request-Id"])


def test_revoked_key_fails_at_once_without_the_authorizer_cache(stack: Stack) -> None:
    account = stack.create_account("standard")
    key = stack.create_key(account.id, "test")
    headers = stack.headers(key["secret"])
    assert requests.get(stack.url("/courses"), headers=headers, timeout=10).status_code == 200
    stack.revoke_key(key["id"])
    response = requests.get(stack.url("/courses"), headers=headers, timeout=10)
    assert_error(response, 401, "authentication_error", None)


def test_restricted_key_permissions_reach_the_handler(stack: Stack) -> None:
    account = stack.create_account("standard")
    key = stack.create_key(account.id, "test", ["courses:read"])
    headers = stack.headers(key["secret"])
    assert requests.get(stack.url("/courses"), headers=headers, timeout=10).status_code == 200
    response = requests.post(
        stack.url("/courses"), headers=headers, json={"title": "Denied"}, timeout=10
    )
    assert_error(response, 403, "permission_error", "insufficient_permissions")
    # The handler answered (the gateway allowed the call): its rate-limit headers are there.
    assert response.headers["X-RateLimit-Limit"] == "60"


def test_disabled_api_gateway_key_is_401_api_key_invalid(stack: Stack) -> None:
    admin = stack.admin()
    account = admin.create_account("e2e disabled", "standard")
    secret = admin.create_key(account["id"], "test")["secret"]
    apigateway = stack.session().client("apigateway", endpoint_url=stack.env["AWS_ENDPOINT_URL"])
    apigateway.update_api_key(
        apiKey=account["api_gateway_key_id"],
        patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
    )
    response = requests.get(stack.url("/courses"), headers=stack.headers(secret), timeout=10)
    assert_error(response, 401, "authentication_error", "api_key_invalid")
    assert " auth " in stack.log_line(response.headers["Request-Id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/nothing"),
        ("GET", "/v2/courses/crs_1/extra"),
        ("DELETE", "/v2/courses"),
        ("PUT", "/v2/courses/crs_1"),
        ("OPTIONS", "/v2/courses"),
        ("GET", "/v2"),
        ("GET", "/courses"),
        ("GET", "/v1/courses"),
    ],
)
@pytest.mark.parametrize("with_key", [False, True])
def test_unknown_route_or_method_is_404_with_or_without_a_key(
    stack: Stack, method: str, path: str, with_key: bool
) -> None:
    headers = stack.headers(stack.standard.keys["live"]) if with_key else {}
    base = stack.api.removesuffix("/v2")
    response = requests.request(method, base + path, headers=headers, timeout=10)
    assert_error(response, 404, "invalid_request_error", "route_not_found")
    assert " auth " not in stack.log_line(response.headers["Request-Id"])


def test_every_response_is_json_with_a_request_id(stack: Stack) -> None:
    secret = stack.pro.keys["live"]
    responses = [
        requests.get(stack.url("/courses"), headers=stack.headers(secret), timeout=10),
        requests.get(stack.url("/courses/crs_missing"), headers=stack.headers(secret), timeout=10),
        requests.post(stack.url("/courses"), headers=stack.headers(secret), data="[", timeout=10),
        requests.get(stack.url("/courses"), timeout=10),
        requests.get(stack.url("/nothing"), timeout=10),
        requests.get(stack.url("/openapi.json"), timeout=10),
    ]
    ids = set()
    for response in responses:
        json_body(response)
        assert UUID.match(response.headers["Request-Id"])
        ids.add(response.headers["Request-Id"])
        if response.status_code >= 400:
            assert json_body(response)["error"]["request_id"] == response.headers["Request-Id"]
    assert len(ids) == len(responses)
    assert [response.status_code for response in responses] == [200, 404, 400, 401, 404, 200]


def test_rate_limit_headers_count_each_request(stack: Stack) -> None:
    headers = stack.headers(stack.create_account("standard").keys["test"])
    for _ in range(2):  # a second try only when the pair straddled a minute boundary
        first = requests.get(stack.url("/courses"), headers=headers, timeout=10)
        second = requests.get(stack.url("/courses"), headers=headers, timeout=10)
        if first.headers["X-RateLimit-Reset"] == second.headers["X-RateLimit-Reset"]:
            break
    assert first.headers["X-RateLimit-Limit"] == second.headers["X-RateLimit-Limit"] == "60"
    assert (
        int(second.headers["X-RateLimit-Remaining"])
        == int(first.headers["X-RateLimit-Remaining"]) - 1
    )
    reset = int(first.headers["X-RateLimit-Reset"])
    assert reset % 60 == 0
    assert 0 < reset - time.time() <= 61


def test_twenty_parallel_requests_are_each_answered_and_counted(stack: Stack) -> None:
    headers = stack.headers(stack.create_account("pro").keys["test"])

    def call(index: int) -> requests.Response:
        path = "/courses" if index % 2 else f"/courses/crs_{index:024d}"
        return requests.get(stack.url(path), headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(call, range(20)))
    for index, response in enumerate(responses):
        if index % 2:
            assert response.status_code == 200
            assert json_body(response)["url"] == "/v2/courses"
        else:
            # Each handler saw its own event: the id it reports missing is the one it was sent.
            assert_error(response, 404, "invalid_request_error", "resource_missing")
            assert f"crs_{index:024d}" in response.text
    assert len({response.headers["Request-Id"] for response in responses}) == 20
    # Every request was counted once: within each minute window the remaining counts are
    # exactly 299, 298, ... (two windows only if the burst straddled a minute boundary).
    windows: dict[str, list[int]] = {}
    for response in responses:
        windows.setdefault(response.headers["X-RateLimit-Reset"], []).append(
            int(response.headers["X-RateLimit-Remaining"])
        )
    for remaining in windows.values():
        assert sorted(remaining) == list(range(300 - len(remaining), 300))


def test_openapi_document_needs_no_key(stack: Stack) -> None:
    response = requests.get(stack.url("/openapi.json"), timeout=10)
    assert response.status_code == 200
    document = json_body(response)
    assert document["openapi"].startswith("3.")
    assert "/courses" in document["paths"]
    assert "X-RateLimit-Limit" not in response.headers


def test_stripe_server_speaks_to_the_real_sdk_with_idempotency_and_errors(stack: Stack) -> None:
    client = stripe.StripeClient(
        "sk_test_" + "e2e" * 10, base_addresses={"api": stack.stripe_url}, max_network_retries=0
    )

    def params(amount: int = 4999, card: str = "pm_card_visa") -> PaymentIntentCreateParams:
        return {
            "amount": amount,
            "currency": "usd",
            "payment_method": card,
            "confirm": True,
            "off_session": True,
        }

    key = str(uuid.uuid4())
    first = client.v1.payment_intents.create(params=params(), options={"idempotency_key": key})
    again = client.v1.payment_intents.create(params=params(), options={"idempotency_key": key})
    assert first.id == again.id
    assert first.status == "succeeded"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(params=params(5000), options={"idempotency_key": key})
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(params=params(card="pm_card_chargeDeclined"))
    assert declined.value.code == "card_declined"
    assert declined.value.http_status == 402


def test_welcome_email_reaches_the_console_through_the_stream(stack: Stack) -> None:
    table = stack.table()
    tenant = Tenant(account_id=stack.pro.id, mode="test")
    student_id, course_id = new_id("stu"), new_id("crs")
    address = f"{student_id.lower()}@example.com"
    table.put_item(
        Item={
            **db_keys.item(tenant, db_keys.STUDENT, student_id),
            "type": "student",
            "id": student_id,
            "email": address,
            "name": "Ada",
        }
    )
    table.put_item(
        Item={
            **db_keys.item(tenant, db_keys.COURSE, course_id),
            "type": "course",
            "id": course_id,
            "title": f"Course {course_id}",
        }
    )
    for welcome in ("not_requested", "requested"):
        enrollment_id = new_id("enr")
        table.put_item(
            Item={
                **db_keys.item(tenant, db_keys.ENROLLMENT, enrollment_id),
                "type": "enrollment",
                "id": enrollment_id,
                "account_id": tenant.account_id,
                "mode": tenant.mode,
                "status": "active",
                "student_id": student_id,
                "course_id": course_id,
                "welcome_email": welcome,
            }
        )
    deadline = time.monotonic() + 20
    while f"[mail] to {address}" not in stack.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in stack.log().splitlines() if f"[mail] to {address}" in line]
    # Only the enrollment that asked for it passed the template's filter: exactly one e-mail.
    assert len(lines) == 1
    assert f'"Welcome to Course {course_id}"' in lines[0]
