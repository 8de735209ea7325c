"""The local gateway with a stand-in runtime, no server and no worker: what template.yaml's own
gateway responses make of an authorizer that cannot read the key store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from learnflow_cli import template as tpl
from learnflow_cli.local.apigateway import Gateway
from learnflow_cli.local.http_messages import HttpRequest
from learnflow_cli.local.lambda_runtime import Invocation


class _AuthorizerDown:
    """The runtime as it answers when the authorizer cannot read the key store: the function
    raises (not "Unauthorized"). No handler must run after it."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.invoked: list[str] = []

    def invoke(
        self, name: str, event: Any, trace_id: str | None = None, *, start_by: float | None = None
    ) -> Invocation:
        self.invoked.append(name)
        return Invocation(error=self.error)


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
    gateway = Gateway(template, runtime, api_id="api123", region="us-east-1")
    headers = [("Authorization", "Bearer sk_test_" + "a" * 32)]
    response = gateway.handle(
        HttpRequest("GET", "/v2/courses", headers, b"", source_ip="127.0.0.1")
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
