"""The local API Gateway: against `learnflow serve`, and against a template of test functions."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pytest
import requests
import stripe
from botocore.exceptions import ClientError

from learnflow.db import keys as db_keys
from learnflow.ids import new_id
from learnflow.tenancy import Tenant
from learnflow_cli import template as tpl
from learnflow_cli.local import gateway as gw
from learnflow_cli.local import services

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

    from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SECRET = re.compile(r"^sk_(test|live)_[A-Za-z0-9]{32,}$")


def _json(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    return body


def _error(response: requests.Response, status: int, kind: str, code: str | None) -> None:
    """The contract's error envelope, with `request_id` equal to the `Request-Id` header."""
    assert response.status_code == status, response.text
    error = _json(response)["error"]
    assert error["type"] == kind
    if code is not None:
        assert error["code"] == code
    assert UUID.match(response.headers["Request-Id"])
    assert error["request_id"] == response.headers["Request-Id"]


# ========================================================================== learnflow serve


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
            assert _json(response)["object"] == "list"
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
    _error(response, 401, "authentication_error", None)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    line = stack.log_line(response.headers["Request-Id"])
    assert "(gateway)" in line
    assert " auth " not in line


def test_two_authorization_headers_are_401_before_the_authorizer(stack: Stack) -> None:
    secret = stack.pro.keys["test"]
    request = (
        "GET /v2/courses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {secret}\r\nAuthorization: Bearer {secret}\r\n\r\n"
    ).encode()
    response, body = _raw(stack, request)
    assert response.status == 401
    request_id = response.getheader("Request-Id") or ""
    error = json.loads(body)["error"]
    assert error["type"] == "authentication_error"
    assert error["request_id"] == request_id
    assert response.getheader("WWW-Authenticate") == "Bearer"
    line = stack.log_line(request_id)
    assert "(gateway)" in line
    assert " auth " not in line


def test_256_connections_at_once_are_each_answered(stack: Stack) -> None:
    """Clients arriving together wait to be accepted: none is reset (a listen queue of 5 reset
    about half of 200)."""
    address = urlsplit(stack.api)
    count = 256
    ready = threading.Barrier(count, timeout=20)

    def one(_: int) -> int:
        ready.wait()
        with socket.create_connection((address.hostname or "", address.port or 80), 30) as sock:
            sock.sendall(b"GET /v2/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(one, range(count)))
    assert statuses == [404] * count


def test_unknown_well_formed_key_is_401_from_the_authorizer(stack: Stack) -> None:
    response = requests.get(
        stack.url("/courses"), headers=stack.headers("sk_test_" + "Z" * 40), timeout=10
    )
    _error(response, 401, "authentication_error", None)
    assert " auth " in stack.log_line(response.headers["Request-Id"])


def test_revoked_key_fails_at_once_without_the_authorizer_cache(stack: Stack) -> None:
    account = stack.create_account("standard")
    key = stack.create_key(account.id, "test")
    headers = stack.headers(key["secret"])
    assert requests.get(stack.url("/courses"), headers=headers, timeout=10).status_code == 200
    stack.revoke_key(key["id"])
    response = requests.get(stack.url("/courses"), headers=headers, timeout=10)
    _error(response, 401, "authentication_error", None)


def test_restricted_key_permissions_reach_the_handler(stack: Stack) -> None:
    account = stack.create_account("standard")
    key = stack.create_key(account.id, "test", ["courses:read"])
    headers = stack.headers(key["secret"])
    assert requests.get(stack.url("/courses"), headers=headers, timeout=10).status_code == 200
    response = requests.post(
        stack.url("/courses"), headers=headers, json={"title": "Denied"}, timeout=10
    )
    _error(response, 403, "permission_error", "insufficient_permissions")
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
    _error(response, 401, "authentication_error", "api_key_invalid")
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
    _error(response, 404, "invalid_request_error", "route_not_found")
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
        _json(response)
        assert UUID.match(response.headers["Request-Id"])
        ids.add(response.headers["Request-Id"])
        if response.status_code >= 400:
            assert _json(response)["error"]["request_id"] == response.headers["Request-Id"]
    assert len(ids) == len(responses)
    assert [response.status_code for response in responses] == [200, 404, 400, 401, 404, 200]


def _raw(
    stack: Stack, request: bytes, *, half_close: bool = False
) -> tuple[http.client.HTTPResponse, bytes]:
    """Send `request` byte for byte (no client to tidy it up) and read the response to it."""
    address = urlsplit(stack.api)
    with socket.create_connection((address.hostname or "", address.port or 80), 10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read()


def _raw_error(
    stack: Stack, request: bytes, status: int, kind: str, *, half_close: bool = False
) -> dict[str, Any]:
    """The gateway's own error: the envelope with `request_id` equal to `Request-Id`, a console
    line of its own, and the connection closed (its framing can no longer be trusted)."""
    response, body = _raw(stack, request, half_close=half_close)
    assert response.status == status, body
    assert (response.getheader("Content-Type") or "").startswith("application/json")
    assert response.getheader("Connection") == "close"
    request_id = response.getheader("Request-Id") or ""
    assert UUID.match(request_id)
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["type"] == kind
    assert error["request_id"] == request_id
    line = stack.log_line(request_id)
    assert f" {status} " in line
    assert "(gateway)" in line
    return error


def _post_courses(stack: Stack, *headers: str) -> bytes:
    lines = [
        "POST /v2/courses HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {stack.pro.keys['live']}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "headers",
    [
        ["Content-Length: abc"],
        ["Content-Length: -1"],
        ["Content-Length: 2", "Content-Length: 3"],
    ],
    ids=["not-a-number", "negative", "conflicting"],
)
def test_malformed_content_length_is_the_gateways_400_envelope(
    stack: Stack, headers: list[str]
) -> None:
    _raw_error(stack, _post_courses(stack, *headers), 400, "invalid_request_error")


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n", b"2;ext\r\n{}XX0\r\n\r\n", b"5\r\n{}"],
    ids=["size-not-hex", "data-without-crlf", "stops-short"],
)
def test_broken_chunked_body_is_the_gateways_400_envelope(stack: Stack, body: bytes) -> None:
    request = _post_courses(stack, "Transfer-Encoding: chunked") + body
    _raw_error(stack, request, 400, "invalid_request_error", half_close=True)


def test_body_shorter_than_its_content_length_is_the_gateways_400_envelope(stack: Stack) -> None:
    request = _post_courses(stack, "Content-Length: 10") + b"{}"
    _raw_error(stack, request, 400, "invalid_request_error", half_close=True)


def test_chunked_body_reaches_the_function_and_the_connection_stays_usable(stack: Stack) -> None:
    host, port = urlsplit(stack.api).hostname or "", urlsplit(stack.api).port or 80
    connection = http.client.HTTPConnection(host, port, timeout=10)
    headers = {**stack.headers(stack.pro.keys["live"]), "Content-Type": "application/json"}
    try:
        # An iterable body without a length goes out chunked, here in two chunks.
        connection.request("POST", "/v2/courses", body=iter([b"[", b"1]"]), headers=headers)
        first = connection.getresponse()
        error = json.loads(first.read())["error"]
        assert first.status == 400
        assert error["code"] == "invalid_json"
        assert error["request_id"] == first.getheader("Request-Id")
        connection.request("GET", "/v2/courses", headers=headers)
        second = connection.getresponse()
        assert second.status == 200
        assert json.loads(second.read())["object"] == "list"
    finally:
        connection.close()


_LINE = 65537  # one byte over http.server's line limit: the whole request is read


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n", 400),
        (b"GET /v2/courses HTTP/x.y\r\n", 400),
        (b"GET /v2/courses HTTP/2.0\r\n", 400),
        (b"GET /v2/courses\r\n\r\n", 400),
        (b"GET /" + b"a" * (_LINE - len(b"GET /")), 414),
        (b"GET /v2/courses HTTP/1.1\r\nX-Long: " + b"a" * (_LINE - len(b"X-Long: ")), 431),
    ],
    ids=["bad-line", "bad-version", "http2", "http09", "line-too-long", "header-too-long"],
)
def test_requests_http_cannot_parse_get_the_gateways_envelope(
    stack: Stack, request_bytes: bytes, status: int
) -> None:
    _raw_error(stack, request_bytes, status, "invalid_request_error")


def test_method_http_does_not_know_is_an_unknown_route(stack: Stack) -> None:
    request = b"TRACE /v2/courses HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    error = _raw_error(stack, request, 404, "invalid_request_error")
    assert error["code"] == "route_not_found"


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
            assert _json(response)["url"] == "/v2/courses"
        else:
            # Each handler saw its own event: the id it reports missing is the one it was sent.
            _error(response, 404, "invalid_request_error", "resource_missing")
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
    document = _json(response)
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


# ========================================================================== the emulator itself

FUNCTIONS = {
    "auth.py": """
import json, os

def handler(event, context):
    with open(os.environ["INVOCATIONS"], "a") as log:
        log.write(json.dumps(event) + "\\n")
    token = event["authorizationToken"].split(" ", 1)[1]
    arn = event["methodArn"]
    base = arn.split("/", 1)[0]
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("database unavailable")
    if token == "slow":
        import time
        time.sleep(5)
    if token == "crash":
        os._exit(3)
    if token == "malformed":
        return {"policyDocument": {}}
    statements = {
        "allow": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": base + "/*/*"}],
        "getonly": [{"Action": "execute-api:*", "Effect": "Allow",
                     "Resource": [base + "/v2/GET/*"]}],
        "deny": [{"Action": "*", "Effect": "Allow", "Resource": "*"},
                 {"Action": "execute-api:Invoke", "Effect": "Deny",
                  "Resource": base + "/v2/GET/items/secre?"}],
        "nothing": [],
    }.get(token, [])
    return {"principalId": "user-" + token,
            "policyDocument": {"Version": "2012-10-17", "Statement": statements},
            "context": {"account": "acct_1", "n": 5, "flag": True, "ratio": 0.5}}
""",
    "echo.py": """
import os
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    import json, base64
    body = {
        "event": event,
        "count": COUNT,
        "pid": os.getpid(),
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining": context.get_remaining_time_in_millis(),
        },
        "env": {name: os.environ.get(name) for name in (
            "TABLE", "GREETING", "OWN", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "LOCAL",
            "AWS_PROFILE", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")},
    }
    query = event.get("queryStringParameters") or {}
    if query.get("binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": int(query.get("status", 200)),
        "headers": {"Content-Type": "application/json",
                    "Request-Id": event["requestContext"]["requestId"], "X-One": "single"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "body": json.dumps(body),
    }
""",
    "slow.py": """
import json, time

def handler(event, context):
    seconds = float((event.get("queryStringParameters") or {}).get("seconds", "0"))
    time.sleep(seconds)
    return {"statusCode": 200, "body": json.dumps({"slept": seconds})}
""",
    "broken.py": """
from decimal import Decimal

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raise":
        raise ValueError("handler bug")
    if mode == "status":
        return {"statusCode": "two hundred", "body": "{}"}
    if mode == "digits":
        return {"statusCode": "201", "body": "{}"}
    if mode == "object":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if mode == "decimal":
        return {"statusCode": 200, "body": "{}", "headers": {"X-Price": Decimal("1.5")}}
    if mode == "exit":
        import os
        os._exit(3)
    return None
""",
    "nosuch.py": "import module_that_does_not_exist\n",
}

_RESPONSE = {
    "ResponseParameters": {"Headers": {"Request-Id": "context.requestId"}},
    "ResponseTemplates": {
        "application/json": '{"error": {"type": "%s", "code": "%s", '
        '"request_id": "$context.requestId"}}'
    },
}


def _gateway_response(status: int | None, kind: str, code: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(_RESPONSE))
    template = body["ResponseTemplates"]["application/json"]
    body["ResponseTemplates"]["application/json"] = template % (kind, code)
    if status is not None:
        body["StatusCode"] = status
    return body


def _function(handler: str, events: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"CodeUri": "fns/", "Handler": handler, **extra}
    if events:
        properties["Events"] = events
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


def _api(path: str, method: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Api",
        "Properties": {"RestApiId": {"Ref": "Api"}, "Path": path, "Method": method, **extra},
    }


TEMPLATE: dict[str, Any] = {
    "Parameters": {"Greeting": {"Type": "String", "Default": "hello"}},
    "Globals": {
        "Function": {
            "Timeout": 5,
            "MemorySize": 256,
            "Environment": {
                "Variables": {
                    "TABLE": {"Ref": "Table"},
                    "GREETING": {"Ref": "Greeting"},
                    "INVOCATIONS": "",
                    "ARN": {"Fn::GetAtt": ["Table", "Arn"]},
                }
            },
        }
    },
    "Resources": {
        "Api": {
            "Type": "AWS::Serverless::Api",
            "Properties": {
                "StageName": "v2",
                "BinaryMediaTypes": ["application~1octet-stream"],
                "Auth": {
                    "DefaultAuthorizer": "TokenAuth",
                    "Authorizers": {
                        "TokenAuth": {
                            "FunctionPayloadType": "TOKEN",
                            "FunctionArn": {"Fn::GetAtt": ["AuthFunction", "Arn"]},
                            "Identity": {
                                "Header": "Authorization",
                                "ValidationExpression": "^Bearer [a-z]+$",
                                "ReauthorizeEvery": 60,
                            },
                        }
                    },
                },
                "GatewayResponses": {
                    "UNAUTHORIZED": _gateway_response(401, "authentication_error", "unauthorized"),
                    "ACCESS_DENIED": _gateway_response(403, "permission_error", "denied"),
                    "MISSING_AUTHENTICATION_TOKEN": _gateway_response(
                        404, "invalid_request_error", "route_not_found"
                    ),
                    "DEFAULT_5XX": _gateway_response(None, "api_error", "gateway"),
                    # AUTHORIZER_CONFIGURATION_ERROR is left out: it falls back to DEFAULT_5XX.
                    "AUTHORIZER_FAILURE": {
                        **_gateway_response(503, "api_error", "service_unavailable"),
                        "ResponseParameters": {
                            "Headers": {"Request-Id": "context.requestId", "Retry-After": "'1'"}
                        },
                    },
                },
            },
        },
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "AuthFunction": _function("auth.handler", Timeout=1),
        "EchoFunction": _function(
            "echo.handler",
            {
                "Get": _api("/items/{item_id}", "get"),
                "Post": _api("/items", "post"),
                "Literal": _api("/items/special", "get"),
                "Open": _api("/open/{proxy+}", "any", Auth={"Authorizer": "NONE"}),
            },
            MemorySize=256,
            Environment={"Variables": {"OWN": "mine", "GREETING": "overridden"}},
        ),
        "SlowFunction": _function("slow.handler", {"Get": _api("/slow", "get")}, Timeout=3),
        "TimeoutFunction": _function("slow.handler", {"Get": _api("/timeout", "get")}, Timeout=1),
        "BrokenFunction": _function("broken.handler", {"Get": _api("/broken", "get")}),
        "MissingFunction": _function("nosuch.handler", {"Get": _api("/missing", "get")}),
    },
}


@dataclass(slots=True)
class Emulator:
    url: str
    cached_url: str
    invocations: Path

    def authorizer_calls(self) -> int:
        return len(self.invocations.read_text().splitlines()) if self.invocations.exists() else 0


def _emulator_specs(
    root: Path, invocations: Path
) -> tuple[dict[str, Any], dict[str, gw.FunctionSpec]]:
    """TEMPLATE, and its functions written under `root` and ready to run."""
    (root / "fns").mkdir()
    for name, source in FUNCTIONS.items():
        (root / "fns" / name).write_text(source)
    template = json.loads(json.dumps(TEMPLATE))
    template["Globals"]["Function"]["Environment"]["Variables"]["INVOCATIONS"] = str(invocations)
    intrinsics = gw.Intrinsics(
        template,
        refs={"Table": "local-table", "Api": "api123"},
        attributes={("Table", "Arn"): "arn:aws:dynamodb:us-east-1:123456789012:table/local-table"},
        region="us-east-1",
    )
    specs = gw.function_specs(
        template, root, intrinsics, region="us-east-1", local_environment={"LOCAL": "yes"}
    )
    return template, specs


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The gateway over TEMPLATE's test functions, served twice: without and with the
    authorizer cache (one runtime, so both share warm workers)."""
    root = tmp_path_factory.mktemp("emulator")
    invocations = root / "invocations.log"
    template, specs = _emulator_specs(root, invocations)
    runtime = gw.LambdaRuntime(specs, preload=())
    servers = []
    for cache in (False, True):
        gateway = gw.Gateway(
            template, runtime, api_id="api123", region="us-east-1", authorizer_cache=cache
        )
        server = gw.GatewayServer(("127.0.0.1", 0), lambda *_: None)
        server.gateway = gateway
        gw.serve_in_thread(server)
        servers.append(server)
    try:
        yield Emulator(
            url=f"http://127.0.0.1:{servers[0].port}/v2",
            cached_url=f"http://127.0.0.1:{servers[1].port}/v2",
            invocations=invocations,
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        runtime.close()


ALLOW = {"Authorization": "Bearer allow"}


def _echo(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_proxy_event_has_api_gateway_shape(emulator: Emulator) -> None:
    response = requests.get(
        emulator.url + "/items/abc%20d?a=1&a=2&b=x+y&empty=",
        headers={**ALLOW, "X-Custom": "value"},
        timeout=10,
    )
    body = _echo(response)
    event = body["event"]
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/abc%20d"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"item_id": "abc%20d"}
    assert event["queryStringParameters"] == {"a": "2", "b": "x y", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "a": ["1", "2"],
        "b": ["x y"],
        "empty": [""],
    }
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["headers"]["X-Custom"] == "value"
    assert event["multiValueHeaders"]["X-Custom"] == ["value"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    context = event["requestContext"]
    assert context["stage"] == "v2"
    assert context["resourcePath"] == "/items/{item_id}"
    assert context["httpMethod"] == "GET"
    assert context["path"] == "/v2/items/abc%20d"
    assert context["apiId"] == "api123"
    assert context["accountId"] == "123456789012"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["protocol"] == "HTTP/1.1"
    assert abs(context["requestTimeEpoch"] / 1000 - time.time()) < 30
    assert re.fullmatch(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000", context["requestTime"])
    assert context["requestId"] == response.headers["Request-Id"]
    assert UUID.match(context["requestId"])
    # API Gateway passes the authorizer's context values as strings.
    assert context["authorizer"] == {
        "account": "acct_1",
        "n": "5",
        "flag": "true",
        "ratio": "0.5",
        "principalId": "user-allow",
        "integrationLatency": context["authorizer"]["integrationLatency"],
    }
    assert isinstance(context["authorizer"]["integrationLatency"], int)


def test_no_query_and_no_path_parameters_are_null(emulator: Emulator) -> None:
    event = _echo(requests.post(emulator.url + "/items", headers=ALLOW, json={"a": 1}, timeout=10))[
        "event"
    ]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["resource"] == "/items"
    assert json.loads(event["body"]) == {"a": 1}
    assert event["isBase64Encoded"] is False


def test_repeated_headers_are_multi_valued_and_the_last_one_wins(emulator: Emulator) -> None:
    host, port = emulator.url.removeprefix("http://").split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("GET", "/v2/items/x")
    connection.putheader("Authorization", "Bearer allow")
    connection.putheader("X-Dup", "1")
    connection.putheader("X-Dup", "2")
    connection.endheaders()
    reply = connection.getresponse()
    event = json.loads(reply.read())["event"]
    connection.close()
    assert event["headers"]["X-Dup"] == "2"
    assert event["multiValueHeaders"]["X-Dup"] == ["1", "2"]


def test_binary_body_arrives_base64_encoded_and_binary_responses_are_decoded(
    emulator: Emulator,
) -> None:
    payload = bytes(range(256))
    event = _echo(
        requests.post(
            emulator.url + "/items",
            headers={**ALLOW, "Content-Type": "application/octet-stream"},
            data=payload,
            timeout=10,
        )
    )["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    response = requests.get(emulator.url + "/items/x?binary=1", headers=ALLOW, timeout=10)
    assert response.content == payload
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_body_over_ten_megabytes_is_413(emulator: Emulator) -> None:
    response = requests.post(
        emulator.url + "/items", headers=ALLOW, data=b"x" * (10 * 1024 * 1024 + 1), timeout=30
    )
    assert response.status_code == 413


def test_response_headers_and_multi_value_headers_are_merged(emulator: Emulator) -> None:
    response = requests.get(emulator.url + "/items/x?status=418", headers=ALLOW, timeout=10)
    assert response.status_code == 418
    assert response.headers["X-One"] == "single"
    assert response.headers["X-Many"] == "a, b"


def test_lambda_context_and_environment_are_the_functions(emulator: Emulator) -> None:
    body = _echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    context = body["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(":function:EchoFunction")
    assert context["log_group_name"] == "/aws/lambda/EchoFunction"
    assert 0 < context["remaining"] <= 5000
    assert UUID.match(context["aws_request_id"])
    assert context["aws_request_id"] != body["event"]["requestContext"]["requestId"]
    assert body["env"] == {
        "TABLE": "local-table",  # !Ref Table
        "GREETING": "overridden",  # the function's own variables win over Globals
        "OWN": "mine",
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "AWS_REGION": "us-east-1",
        "LOCAL": "yes",
        "AWS_PROFILE": None,  # nothing of the developer's AWS configuration leaks in
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    }


def test_handler_module_stays_warm_between_requests(emulator: Emulator) -> None:
    first = _echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    second = _echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    assert second["pid"] == first["pid"]
    assert second["count"] == first["count"] + 1


def test_literal_resource_wins_over_a_path_parameter(emulator: Emulator) -> None:
    event = _echo(requests.get(emulator.url + "/items/special", headers=ALLOW, timeout=10))["event"]
    assert event["resource"] == "/items/special"
    assert event["pathParameters"] is None


def test_greedy_route_without_authorizer_takes_any_method(emulator: Emulator) -> None:
    response = requests.delete(emulator.url + "/open/a/b/c", timeout=10)
    event = _echo(response)["event"]
    assert event["pathParameters"] == {"proxy": "a/b/c"}
    assert event["resource"] == "/open/{proxy+}"
    assert "authorizer" not in event["requestContext"]


@pytest.mark.parametrize("authorization", [None, "Bearer UPPER", "Token allow", "Bearer a b"])
def test_header_failing_the_validation_expression_never_invokes_the_authorizer(
    emulator: Emulator, authorization: str | None
) -> None:
    before = emulator.authorizer_calls()
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(emulator.url + "/items/x", headers=headers, timeout=10)
    _error(response, 401, "authentication_error", "unauthorized")
    assert emulator.authorizer_calls() == before


def test_authorizer_event_is_a_token_event_with_the_method_arn(emulator: Emulator) -> None:
    requests.get(emulator.url + "/items/abc", headers=ALLOW, timeout=10)
    event = json.loads(emulator.invocations.read_text().splitlines()[-1])
    assert event == {
        "type": "TOKEN",
        "authorizationToken": "Bearer allow",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:api123/v2/GET/items/abc",
    }


@pytest.mark.parametrize(
    ("token", "status", "kind", "code"),
    [
        ("unauthorized", 401, "authentication_error", "unauthorized"),
        ("nothing", 403, "permission_error", "denied"),
        # Any other error of the function is AUTHORIZER_FAILURE, here the template's 503...
        ("boom", 503, "api_error", "service_unavailable"),
        ("slow", 503, "api_error", "service_unavailable"),  # past its 1 s timeout
        ("crash", 503, "api_error", "service_unavailable"),
        # ... and a malformed answer AUTHORIZER_CONFIGURATION_ERROR, not in this template:
        # API Gateway falls back to DEFAULT_5XX, with its default status 500.
        ("malformed", 500, "api_error", "gateway"),
    ],
)
def test_authorizer_outcomes_map_to_gateway_responses(
    emulator: Emulator, token: str, status: int, kind: str, code: str
) -> None:
    response = requests.get(
        emulator.url + "/items/x", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    _error(response, status, kind, code)
    if status == 503:
        assert response.headers["Retry-After"] == "1"  # the template's header mapping
    # The authorizer recovers: a crashed or timed-out worker is replaced.
    assert requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10).ok


class _AuthorizerDown:
    """The runtime as it answers when the authorizer cannot read the key store: the function
    raises (not "Unauthorized"). No handler must run after it."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.invoked: list[str] = []

    def invoke(self, name: str, event: Any, trace_id: str | None = None) -> gw.Invocation:
        self.invoked.append(name)
        return gw.Invocation(error=self.error)


@pytest.mark.parametrize(
    "error",
    [
        {"errorType": "KeyStoreUnavailable", "errorMessage": "DynamoDB could not be read"},
        {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 5.00 seconds"},
        {"errorType": "Runtime.ExitError", "errorMessage": "Worker exited"},
    ],
    ids=["exception", "timeout", "crash"],
)
def test_a_key_store_failure_is_the_templates_503_never_a_401(error: dict[str, Any]) -> None:
    """template.yaml's own AUTHORIZER_FAILURE: 503, Retry-After and the error envelope."""
    template = tpl.load_template()
    runtime = _AuthorizerDown(error)
    gateway = gw.Gateway(
        template, cast("gw.LambdaRuntime", runtime), api_id="api123", region="us-east-1"
    )
    headers = [("Authorization", "Bearer sk_test_" + "a" * 32)]
    response = gateway.handle(
        gw.HttpRequest("GET", "/v2/courses", headers, b"", source_ip="127.0.0.1")
    )
    assert response.status == 503
    body = json.loads(response.body)
    assert body["error"]["type"] == "api_error"
    assert body["error"]["code"] == "service_unavailable"
    sent = dict(response.headers)
    assert sent["Retry-After"]
    assert body["error"]["request_id"] == sent["Request-Id"] == response.request_id
    assert runtime.invoked == [gateway.authorizer_function]
    assert any(error["errorType"] in note for note in response.notes)  # on the console


def test_two_authorization_headers_are_401_without_invoking_the_authorizer(
    emulator: Emulator,
) -> None:
    before = emulator.authorizer_calls()
    address = urlsplit(emulator.url)
    request = (
        b"GET /v2/items/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer allow\r\n"
        b"Authorization: Bearer allow\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((address.hostname or "", address.port or 80), 10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
    assert response.status == 401
    assert body["error"]["code"] == "unauthorized"
    assert emulator.authorizer_calls() == before


def test_policy_is_evaluated_against_each_method_arn_with_deny_winning(
    emulator: Emulator,
) -> None:
    getonly = {"Authorization": "Bearer getonly"}
    assert requests.get(emulator.url + "/items/x", headers=getonly, timeout=10).status_code == 200
    response = requests.post(emulator.url + "/items", headers=getonly, json={}, timeout=10)
    _error(response, 403, "permission_error", "denied")
    deny = {"Authorization": "Bearer deny"}
    assert requests.get(emulator.url + "/items/public", headers=deny, timeout=10).status_code == 200
    _error(
        requests.get(emulator.url + "/items/secret", headers=deny, timeout=10),
        403,
        "permission_error",
        "denied",
    )


def test_policy_wildcards_follow_iam() -> None:
    arn = "arn:aws:execute-api:us-east-1:1:api/v2/GET/items/x"
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": "arn:aws:execute-api:us-east-1:1:api/v2/*/items/?",
            }
        ]
    }
    assert gw.policy_allows(policy, arn)
    assert not gw.policy_allows(policy, arn + "y")
    assert not gw.policy_allows({"Statement": []}, arn)
    wrong_action = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    assert not gw.policy_allows(wrong_action, arn)


def test_authorizer_cache_serves_a_token_for_its_ttl_only_when_enabled(
    emulator: Emulator,
) -> None:
    before = emulator.authorizer_calls()
    for _ in range(2):
        requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10)
    assert emulator.authorizer_calls() == before + 2
    token = {"Authorization": "Bearer getonly"}
    for _ in range(3):
        assert requests.get(emulator.cached_url + "/items/x", headers=token, timeout=10).ok
    # Cached, and still evaluated against each request's own method ARN.
    response = requests.post(emulator.cached_url + "/items", headers=token, json={}, timeout=10)
    assert response.status_code == 403
    assert emulator.authorizer_calls() == before + 3
    cached_event = _echo(requests.get(emulator.cached_url + "/items/y", headers=token, timeout=10))
    assert cached_event["event"]["requestContext"]["authorizer"]["integrationLatency"] == 0


@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v2/unknown"), ("DELETE", "/v2/items/x"), ("GET", "/other")]
)
def test_emulator_unknown_route_is_the_missing_token_response(
    emulator: Emulator, method: str, path: str, with_key: bool
) -> None:
    before = emulator.authorizer_calls()
    base = emulator.url.removesuffix("/v2")
    response = requests.request(method, base + path, headers=ALLOW if with_key else {}, timeout=10)
    _error(response, 404, "invalid_request_error", "route_not_found")
    assert emulator.authorizer_calls() == before


@pytest.mark.parametrize("mode", ["raise", "status", "object", "none", "exit"])
def test_function_errors_and_malformed_responses_are_502(emulator: Emulator, mode: str) -> None:
    response = requests.get(emulator.url + f"/broken?mode={mode}", headers=ALLOW, timeout=10)
    _error(response, 502, "api_error", "gateway")
    # The next request is served (a crashed worker is replaced).
    assert requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10).ok


class _BrokenRuntime:
    """A worker pool that raises instead of reporting an Invocation: the emulator's own bug,
    which no request can provoke on purpose (LambdaRuntime turns every failure it knows into
    an error Invocation)."""

    def invoke(self, name: str, event: Any, trace_id: str | None = None) -> gw.Invocation:
        raise RuntimeError(f"emulator bug invoking {name}")


def test_emulator_failure_is_the_templates_5xx_with_a_request_id() -> None:
    runtime = cast("gw.LambdaRuntime", _BrokenRuntime())
    gateway = gw.Gateway(TEMPLATE, runtime, api_id="api123", region="us-east-1")
    logged: list[gw.HttpResponse] = []
    done = threading.Event()

    def log(method: str, target: str, response: gw.HttpResponse, ms: float) -> None:
        logged.append(response)
        done.set()

    server = gw.GatewayServer(("127.0.0.1", 0), log)
    server.gateway = gateway
    gw.serve_in_thread(server)
    try:
        # /open/{proxy+} needs no authorizer: the request goes straight to the function.
        response = requests.get(f"http://127.0.0.1:{server.port}/v2/open/x", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    _error(response, 500, "api_error", "gateway")
    assert done.wait(5)
    assert logged[0].request_id == response.headers["Request-Id"]
    assert any("RuntimeError" in note for note in logged[0].notes)  # the console shows the bug


def _unknown_route(sock: socket.socket) -> int:
    sock.sendall(b"GET /v2/unknown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


@pytest.mark.parametrize("max_connections", [512, 4])
def test_connections_wait_in_the_listen_queue_until_served(max_connections: int) -> None:
    """256 clients connect before the server accepts any (as when it is busy): each handshake
    completes in the kernel's queue and each request is answered, also when fewer threads than
    clients may run at once. A queue of 5 left the 7th client's connect hanging."""
    runtime = cast("gw.LambdaRuntime", _BrokenRuntime())
    server = gw.GatewayServer(("127.0.0.1", 0), lambda *_: None, max_connections=max_connections)
    server.gateway = gw.Gateway(TEMPLATE, runtime, api_id="api123", region="us-east-1")
    sockets: list[socket.socket] = []
    serving = None
    try:
        for _ in range(256):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        serving = gw.serve_in_thread(server)
        statuses = [_unknown_route(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        if serving is not None:  # shutdown() waits for a serve loop: only when one runs
            server.shutdown()
        server.server_close()
    assert statuses == [404] * 256


def test_decimal_in_a_response_is_serialised_as_lambda_does(emulator: Emulator) -> None:
    response = requests.get(emulator.url + "/broken?mode=decimal", headers=ALLOW, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Price"] == "1.5"


def test_status_code_may_be_a_string_of_digits(emulator: Emulator) -> None:
    response = requests.get(emulator.url + "/broken?mode=digits", headers=ALLOW, timeout=10)
    assert response.status_code == 201
    assert response.json() == {}


def test_import_error_is_502_and_reported(emulator: Emulator) -> None:
    response = requests.get(emulator.url + "/missing", headers=ALLOW, timeout=10)
    _error(response, 502, "api_error", "gateway")


def test_function_timeout_is_502_and_the_function_recovers(emulator: Emulator) -> None:
    started = time.monotonic()
    response = requests.get(emulator.url + "/timeout?seconds=5", headers=ALLOW, timeout=10)
    assert time.monotonic() - started < 3  # Timeout: 1 in the template
    _error(response, 502, "api_error", "gateway")
    assert requests.get(emulator.url + "/timeout?seconds=0", headers=ALLOW, timeout=10).ok


def test_a_slow_request_does_not_block_others(emulator: Emulator) -> None:
    # Warm the echo function first so the timing below measures concurrency, not a cold start.
    _echo(requests.get(emulator.url + "/items/warm", headers=ALLOW, timeout=10))
    results: dict[str, float] = {}

    def slow() -> None:
        requests.get(emulator.url + "/slow?seconds=1", headers=ALLOW, timeout=10)
        results["slow"] = time.monotonic()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    for index in range(5):
        _echo(requests.get(emulator.url + f"/items/{index}", headers=ALLOW, timeout=10))
    results["fast"] = time.monotonic()
    thread.join()
    assert results["fast"] < results["slow"]


def test_concurrent_invocations_of_one_function_never_see_each_others_event(
    emulator: Emulator,
) -> None:
    def call(index: int) -> tuple[int, dict[str, Any]]:
        response = requests.get(emulator.url + f"/items/n{index}", headers=ALLOW, timeout=20)
        return index, _echo(response)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(24)))
    for index, body in results:
        assert body["event"]["pathParameters"] == {"item_id": f"n{index}"}
        assert body["event"]["requestContext"]["path"] == f"/v2/items/n{index}"
    # Several workers served them at once (at most four per function).
    assert 1 < len({body["pid"] for _, body in results}) <= 4


def _slow(seconds: float = 0) -> dict[str, Any]:
    return {"queryStringParameters": {"seconds": str(seconds)}, "mode": "digits"}


def _total(runtime: gw.LambdaRuntime) -> int:
    return sum(count for count, _ in runtime.workers().values())


def test_workers_are_capped_in_all_and_idle_ones_are_reaped(tmp_path: Path) -> None:
    """At most `max_total` workers across functions: a function without one takes the least
    recently used idle worker of another; and workers idle for `idle_seconds` are stopped."""
    _, specs = _emulator_specs(tmp_path, tmp_path / "invocations.log")
    runtime = gw.LambdaRuntime(specs, max_total=2, idle_seconds=0.5, preload=())
    try:
        for name in ("SlowFunction", "TimeoutFunction", "SlowFunction", "EchoFunction"):
            event = _slow() if name != "EchoFunction" else {"requestContext": {"requestId": "r"}}
            assert runtime.invoke(name, event).ok
            assert _total(runtime) <= 2
        # TimeoutFunction's worker was the least recently used when EchoFunction needed one.
        assert set(runtime.workers()) == {"SlowFunction", "EchoFunction"}
        deadline = time.monotonic() + 5
        while runtime.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.workers() == {}
    finally:
        runtime.close()


def test_a_function_without_a_worker_waits_for_room_when_all_are_busy(tmp_path: Path) -> None:
    _, specs = _emulator_specs(tmp_path, tmp_path / "invocations.log")
    runtime = gw.LambdaRuntime(specs, max_total=2, preload=())
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            busy = [pool.submit(runtime.invoke, "SlowFunction", _slow(0.5)) for _ in range(2)]
            time.sleep(0.2)
            assert _total(runtime) == 2
            started = time.monotonic()
            waiting = pool.submit(runtime.invoke, "TimeoutFunction", _slow())
            assert waiting.result(timeout=10).ok
            assert time.monotonic() - started > 0.2  # it waited for a SlowFunction worker
            assert all(result.result(timeout=10).ok for result in busy)
        assert _total(runtime) <= 2
    finally:
        runtime.close()


def test_two_slow_requests_to_one_function_run_at_the_same_time(emulator: Emulator) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(
            pool.map(
                lambda _: requests.get(emulator.url + "/slow?seconds=1", headers=ALLOW, timeout=10),
                range(2),
            )
        )
    assert all(reply.ok for reply in replies)
    assert time.monotonic() - started < 1.8  # one after the other would take 2 s


# ========================================================================== stream delivery


WELCOME_PATTERN = {
    "eventName": ["INSERT"],
    "dynamodb": {
        "NewImage": {
            "type": {"S": ["enrollment"]},
            "status": {"S": ["active"]},
            "welcome_email": {"S": ["requested"]},
        }
    },
}


def _record(sequence: int, *, event: str = "INSERT", welcome: str = "requested") -> dict[str, Any]:
    image = {
        "type": {"S": "enrollment"},
        "status": {"S": "active"},
        "welcome_email": {"S": welcome},
        "count": {"N": "3"},
    }
    return {
        "eventID": str(sequence),
        "eventName": event,
        "dynamodb": {"SequenceNumber": str(sequence), "NewImage": image},
    }


def test_filter_patterns_follow_lambda_event_filtering() -> None:
    assert services.matches_pattern(WELCOME_PATTERN, _record(1))
    assert not services.matches_pattern(WELCOME_PATTERN, _record(1, event="MODIFY"))
    assert not services.matches_pattern(WELCOME_PATTERN, _record(1, welcome="not_requested"))
    assert not services.matches_pattern(WELCOME_PATTERN, {"eventName": "INSERT"})
    record = _record(1)
    assert services.matches_pattern({"eventID": [{"prefix": "1"}]}, record)
    assert services.matches_pattern({"eventName": [{"anything-but": ["REMOVE"]}]}, record)
    assert not services.matches_pattern({"eventName": [{"anything-but": "INSERT"}]}, record)
    assert services.matches_pattern({"userIdentity": [{"exists": False}]}, record)
    assert not services.matches_pattern({"eventName": [{"exists": False}]}, record)
    assert services.matches_pattern({"n": [{"numeric": [">", 2, "<=", 3]}]}, {"n": 3})
    assert not services.matches_pattern({"n": [{"numeric": [">", 3]}]}, {"n": 3})


class _FakeStreams:
    """The dynamodbstreams API at the outer edge: one page of records, then nothing."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._pages = [records]
        self.drained = threading.Event()  # asked again: the page was handled to the end

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "iterator"}

    def get_records(self, **_: Any) -> dict[str, Any]:
        if not self._pages:
            self.drained.set()
        records = self._pages.pop(0) if self._pages else []
        return {"Records": records, "NextShardIterator": "iterator"}


class _TrimmedStreams(_FakeStreams):
    """A stream whose first position was trimmed before it was read (delivery fell behind)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__(records)
        self.positions: list[str] = []

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.positions.append(str(kwargs["ShardIteratorType"]))
        return {"ShardIterator": kwargs["ShardIteratorType"]}

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["ShardIterator"] == "LATEST":
            error = {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}}
            raise ClientError(error, "GetRecords")  # type: ignore[arg-type]
        return super().get_records(**kwargs)


def _deliver(
    records: list[dict[str, Any]],
    answers: list[gw.Invocation],
    *,
    retries: int = 2,
    batch_size: int = 10,
    streams: _FakeStreams | None = None,
) -> tuple[list[list[str]], list[str]]:
    """Run one delivery; (sequence numbers of each invocation's batch, log lines)."""
    function = tpl.StreamFunction(
        function_id="Welcome",
        code_uri="functions/notifications/",
        module="send_welcome_email",
        handler_attr="lambda_handler",
        environment={},
        table_id="Table",
        batch_size=batch_size,
        maximum_retry_attempts=retries,
        report_batch_item_failures=True,
        filter_patterns=[WELCOME_PATTERN],
        on_failure=None,
    )
    batches: list[list[str]] = []
    logs: list[str] = []
    prepared: list[bool] = []
    streams = streams or _FakeStreams(records)

    def invoke(name: str, event: dict[str, Any]) -> gw.Invocation:
        assert name == "Welcome"
        batches.append([record["dynamodb"]["SequenceNumber"] for record in event["Records"]])
        assert all(record["eventSourceARN"] == "arn:stream" for record in event["Records"])
        return answers.pop(0) if answers else gw.Invocation(payload={"batchItemFailures": []})

    delivery = services.StreamDelivery(
        cast("Any", streams),
        "arn:stream",
        function,
        invoke=invoke,
        log=logs.append,
        prepare=lambda: prepared.append(True),
    )
    delivery.start()
    try:
        assert streams.drained.wait(10)
    finally:
        delivery.stop()
    assert prepared == [True]
    return batches, logs


def test_stream_delivery_filters_batches_and_retries_from_the_first_failure() -> None:
    records = [_record(1), _record(2, welcome="not_requested"), _record(3), _record(4)]
    failure = gw.Invocation(payload={"batchItemFailures": [{"itemIdentifier": "3"}]})
    batches, logs = _deliver(records, [failure])
    assert batches == [["1", "3", "4"], ["3", "4"]]
    assert "2 record(s) processed" in logs[-1]


def test_stream_delivery_gives_up_after_the_maximum_retry_attempts() -> None:
    error = gw.Invocation(error={"errorType": "RuntimeError", "errorMessage": "SES down"})
    batches, logs = _deliver([_record(1), _record(2)], [error, error, error, error], retries=2)
    assert batches == [["1", "2"]] * 3
    assert "giving up on 2 record(s) after 2 retries" in logs[-1]


def test_stream_delivery_batches_by_batch_size() -> None:
    batches, _ = _deliver([_record(n) for n in range(1, 6)], [], batch_size=2)
    assert batches == [["1", "2"], ["3", "4"], ["5"]]


def test_stream_delivery_goes_on_from_the_oldest_record_kept_after_a_trim() -> None:
    streams = _TrimmedStreams([_record(1), _record(2)])
    batches, logs = _deliver([], [], streams=streams)
    assert streams.positions == ["LATEST", "TRIM_HORIZON"]
    assert batches == [["1", "2"]]
    assert any("trimmed" in line for line in logs)
