"""The emulator's TOKEN authorizer through HTTP: the identity header checks made before the
function runs, the event it gets, each of its outcomes as the template's gateway response,
policies evaluated against each request's method ARN, and the optional cache."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import requests

from tests.integration.gateway.app import ALLOW, echo
from tests.support.gateway import assert_error, raw_request

if TYPE_CHECKING:
    from tests.integration.gateway.conftest import Emulator


@pytest.mark.parametrize("authorization", [None, "Bearer UPPER", "Token allow", "Bearer a b"])
def test_header_failing_the_validation_expression_never_invokes_the_authorizer(
    emulator: Emulator, authorization: str | None
) -> None:
    before = emulator.authorizer_calls()
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(emulator.url + "/items/x", headers=headers, timeout=10)
    assert_error(response, 401, "authentication_error", "unauthorized")
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
    assert_error(response, status, kind, code)
    if status == 503:
        assert response.headers["Retry-After"] == "1"  # the template's header mapping
    # The authorizer recovers: a crashed or timed-out worker is replaced.
    assert requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10).ok


def test_two_authorization_headers_are_401_without_invoking_the_authorizer(
    emulator: Emulator,
) -> None:
    before = emulator.authorizer_calls()
    request = (
        b"GET /v2/items/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer allow\r\n"
        b"Authorization: Bearer allow\r\nConnection: close\r\n\r\n"
    )
    response, raw = raw_request(emulator.url, request)
    body = json.loads(raw)
    assert response.status == 401
    assert body["error"]["code"] == "unauthorized"
    assert emulator.authorizer_calls() == before


def test_policy_is_evaluated_against_each_method_arn_with_deny_winning(
    emulator: Emulator,
) -> None:
    getonly = {"Authorization": "Bearer getonly"}
    assert requests.get(emulator.url + "/items/x", headers=getonly, timeout=10).status_code == 200
    response = requests.post(emulator.url + "/items", headers=getonly, json={}, timeout=10)
    assert_error(response, 403, "permission_error", "denied")
    deny = {"Authorization": "Bearer deny"}
    assert requests.get(emulator.url + "/items/public", headers=deny, timeout=10).status_code == 200
    assert_error(
        requests.get(emulator.url + "/items/secret", headers=deny, timeout=10),
        403,
        "permission_error",
        "denied",
    )


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
    cached_event = echo(requests.get(emulator.cached_url + "/items/y", headers=token, timeout=10))
    assert cached_event["event"]["requestContext"]["authorizer"]["integrationLatency"] == 0
