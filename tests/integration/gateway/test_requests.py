"""The emulator's requests through HTTP: routing (literal, parameter and greedy resources, unknown
routes), the proxy event's shape, and how a function's result becomes the response (headers,
binary bodies, status codes, a function error or a malformed result as API Gateway's 502)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from typing import TYPE_CHECKING

import pytest
import requests

from tests.integration.gateway.app import ALLOW, echo
from tests.support.gateway import UUID, assert_error

if TYPE_CHECKING:
    from tests.integration.gateway.conftest import Emulator


def test_proxy_event_has_api_gateway_shape(emulator: Emulator) -> None:
    response = requests.get(
        emulator.url + "/items/abc%20d?a=1&a=2&b=x+y&empty=",
        headers={**ALLOW, "X-Custom": "value"},
        timeout=10,
    )
    body = echo(response)
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
    event = echo(requests.post(emulator.url + "/items", headers=ALLOW, json={"a": 1}, timeout=10))[
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
    event = echo(
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


def test_literal_resource_wins_over_a_path_parameter(emulator: Emulator) -> None:
    event = echo(requests.get(emulator.url + "/items/special", headers=ALLOW, timeout=10))["event"]
    assert event["resource"] == "/items/special"
    assert event["pathParameters"] is None


def test_greedy_route_without_authorizer_takes_any_method(emulator: Emulator) -> None:
    response = requests.delete(emulator.url + "/open/a/b/c", timeout=10)
    event = echo(response)["event"]
    assert event["pathParameters"] == {"proxy": "a/b/c"}
    assert event["resource"] == "/open/{proxy+}"
    assert "authorizer" not in event["requestContext"]


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
    assert_error(response, 404, "invalid_request_error", "route_not_found")
    assert emulator.authorizer_calls() == before


@pytest.mark.parametrize("mode", ["raise", "status", "object", "none", "exit"])
def test_function_errors_and_malformed_responses_are_502(emulator: Emulator, mode: str) -> None:
    response = requests.get(emulator.url + f"/broken?mode={mode}", headers=ALLOW, timeout=10)
    assert_error(response, 502, "api_error", "gateway")
    # The next request is served (a crashed worker is replaced).
    assert requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10).ok


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
    assert_error(response, 502, "api_error", "gateway")
