"""The local API Gateway's HTTP, against `learnflow serve`: requests sent byte for byte that HTTP
itself refuses (framing, request line, headers, versions, methods) answered as the gateway's own
error envelope, chunked bodies, repeated identity headers and many connections at once."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.support.gateway import UUID, raw_request

if TYPE_CHECKING:
    from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_two_authorization_headers_are_401_before_the_authorizer(stack: Stack) -> None:
    secret = stack.pro.keys["test"]
    request = (
        "GET /v2/courses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {secret}\r\nAuthorization: Bearer {secret}\r\n\r\n"
    ).encode()
    response, body = raw_request(stack.api, request)
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
    count = 256
    ready = threading.Barrier(count, timeout=20)

    def one(_: int) -> int:
        ready.wait()
        request = b"GET /v2/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        return raw_request(stack.api, request, timeout=30)[0].status

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(one, range(count)))
    assert statuses == [404] * count


def _raw_error(
    stack: Stack, request: bytes, status: int, kind: str, *, half_close: bool = False
) -> dict[str, Any]:
    """The gateway's own error: the envelope with `request_id` equal to `Request-Id`, a console
    line of its own, and the connection closed (its framing can no longer be trusted)."""
    response, body = raw_request(stack.api, request, half_close=half_close)
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
