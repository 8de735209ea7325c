"""The local gateway's Lambda proxy integration on its own: the event built from a request, and
the response made of a function's result, with no server and no worker."""

from __future__ import annotations

import base64

import pytest

from learnflow_cli.local.http_messages import HttpRequest, Refusal
from learnflow_cli.local.lambda_proxy import ProxyIntegration, proxy_response
from learnflow_cli.local.lambda_runtime import Invocation

PROXY = ProxyIntegration(stage="v2", api_id="api123", binary_media_types=["image/*"])
CONTEXT = {
    "requestId": "req-1",
    "extendedRequestId": "ext-1",
    "requestTime": "01/Jan/2026:00:00:00 +0000",
    "requestTimeEpoch": "1767225600000",
    "path": "/v2/items/a%20b",
}


def _event(request: HttpRequest, query: str = "") -> dict[str, object]:
    return PROXY.event(
        request,
        resource="/items/{item_id}",
        resource_id="abc123",
        path="/items/a%20b",
        path_params={"item_id": "a%20b"},
        query=query,
        context=CONTEXT,
        authorizer={"principalId": "p", "n": "5"},
        api_key=("key-value", "key-id"),
    )


def test_event_fields_follow_payload_format_1_0() -> None:
    headers = [("Host", "api.test"), ("X-Dup", "1"), ("X-Dup", "2"), ("User-Agent", "ua")]
    event = _event(HttpRequest("GET", "/v2/items/a%20b", headers, b"", "10.0.0.1"), "a=1&a=2&b=x+y")
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/a%20b"
    assert event["pathParameters"] == {"item_id": "a%20b"}
    assert event["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    single, multi = event["headers"], event["multiValueHeaders"]
    assert isinstance(single, dict)
    assert isinstance(multi, dict)
    assert single["X-Dup"] == "2"
    assert multi["X-Dup"] == ["1", "2"]
    assert single["X-Forwarded-For"] == "10.0.0.1"
    assert single["X-Amzn-Trace-Id"].startswith("Root=1-")
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["requestId"] == "req-1"
    assert context["requestTimeEpoch"] == 1767225600000
    assert context["domainName"] == "api.test"
    assert context["authorizer"] == {"principalId": "p", "n": "5"}
    assert context["identity"]["apiKey"] == "key-value"
    assert context["identity"]["apiKeyId"] == "key-id"
    assert context["identity"]["userAgent"] == "ua"


@pytest.mark.parametrize(
    ("content_type", "body", "as_text"),
    [
        ("application/json", b'{"a": 1}', True),
        ("text/plain; charset=utf-8", "é".encode(), True),
        ("application/json", b"\xff\xfe", False),  # not UTF-8: passed intact, base64
        ("application/octet-stream", b"\x00\x01", False),
        ("image/png", b"png", False),  # a declared binary media type
    ],
)
def test_event_body_is_text_or_base64(content_type: str, body: bytes, as_text: bool) -> None:
    request = HttpRequest("POST", "/v2/items/x", [("Content-Type", content_type)], body, "::1")
    event = _event(request)
    assert event["isBase64Encoded"] is not as_text
    sent = event["body"]
    assert isinstance(sent, str)
    assert (sent.encode() if as_text else base64.b64decode(sent)) == body


def test_response_merges_headers_and_decodes_base64() -> None:
    payload = {
        "statusCode": "201",
        "headers": {"X-One": "1", "X-Many": "ignored"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "body": base64.b64encode(b"\x00bytes").decode(),
        "isBase64Encoded": True,
    }
    answer = proxy_response(Invocation(payload=payload))
    assert not isinstance(answer, Refusal)
    status, headers, body = answer
    assert status == 201
    assert headers == [
        ("X-Many", "a"),
        ("X-Many", "b"),
        ("X-One", "1"),
        ("Content-Type", "application/json"),
    ]
    assert body == b"\x00bytes"


@pytest.mark.parametrize(
    ("result", "note"),
    [
        (Invocation(error={"errorType": "ValueError", "errorMessage": "bug"}), "ValueError: bug"),
        (Invocation(payload={"statusCode": "two hundred", "body": "{}"}), "Malformed"),
        (Invocation(payload={"statusCode": 200, "body": {"not": "text"}}), "Malformed"),
        (Invocation(payload=None), "Malformed"),
        (
            Invocation(payload={"statusCode": 200, "body": "!", "isBase64Encoded": True}),
            "(base64 body)",
        ),
    ],
    ids=["error", "status", "object-body", "none", "bad-base64"],
)
def test_a_function_error_or_malformed_result_is_a_502(result: Invocation, note: str) -> None:
    answer = proxy_response(result)
    assert isinstance(answer, Refusal)
    assert (answer.response_type, answer.status) == ("DEFAULT_5XX", 502)
    assert note in (answer.note or "")  # the console says why
