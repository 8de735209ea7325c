"""The OpenAPI document: generated from the handlers, up to date, one operation per route."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from functions.openapi import get_openapi
from learnflow_cli import openapi
from learnflow_cli.template import load_template, routes


class Context:
    function_name = "GetOpenApiFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:openapi"
    aws_request_id = "ctx-1"


def test_committed_document_is_up_to_date() -> None:
    # Regenerate with: .venv/bin/python -m learnflow_cli.openapi
    assert openapi.OUTPUT.read_text() == openapi.render()


def test_every_route_has_exactly_one_operation_and_vice_versa() -> None:
    document = json.loads(openapi.OUTPUT.read_text())
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    declared = {(route.method, route.path) for route in routes(load_template())}
    assert documented == declared


def test_only_the_reference_is_public() -> None:
    document = json.loads(openapi.OUTPUT.read_text())
    public = [
        path
        for path, item in document["paths"].items()
        for operation in item.values()
        if operation.get("security") == []
    ]
    assert sorted(public) == ["/docs", "/openapi.json"]


def test_served_without_a_key(load_event: Callable[..., dict[str, Any]]) -> None:
    event = load_event("get_openapi")
    event["requestContext"].pop("authorizer", None)
    result = get_openapi.lambda_handler(event, Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["openapi"] == "3.1.0"


def test_every_reference_resolves() -> None:
    text = openapi.OUTPUT.read_text()
    schemas = json.loads(text)["components"]["schemas"]
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert referenced <= set(schemas)


def test_built_routes_describe_their_success_and_every_route_its_errors() -> None:
    document = json.loads(openapi.OUTPUT.read_text())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "Request-Id" in responses["default"]["headers"], (method, path)
            if path.startswith(("/courses", "/instructors")):
                (success,) = [code for code in responses if code.startswith("2")]
                assert success == ("201" if method == "post" else "200"), (method, path)
                assert "X-RateLimit-Remaining" in responses[success]["headers"]


def test_limit_bounds_use_openapi_keywords() -> None:
    document = json.loads(openapi.OUTPUT.read_text())
    parameters = document["paths"]["/courses"]["get"]["parameters"]
    (limit,) = [parameter for parameter in parameters if parameter["name"] == "limit"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
