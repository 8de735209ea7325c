"""The OpenAPI document: generated from the handlers, up to date, one operation per route."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from functions.openapi import get_openapi
from learnflow.errors import CATALOGUE
from learnflow_cli import openapi
from learnflow_cli.template import load_template, routes
from tests.support.handlers import BareContext

ROOT = Path(__file__).resolve().parents[2]


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
    result = get_openapi.lambda_handler(event, BareContext())  # type: ignore[arg-type]
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["openapi"] == "3.1.0"


def test_every_reference_resolves() -> None:
    text = openapi.OUTPUT.read_text()
    schemas = json.loads(text)["components"]["schemas"]
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert referenced <= set(schemas)


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(openapi.OUTPUT.read_text())
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def examples(response: dict[str, Any]) -> dict[str, Any]:
    return dict(response["content"]["application/json"]["examples"])


def test_the_document_is_valid_openapi_31() -> None:
    validate(json.loads(openapi.OUTPUT.read_text()))


def test_every_route_describes_its_success_and_every_error_status_it_can_answer() -> None:
    for method, path, operation in operations():
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success == ["201" if method == "POST" and "cancel" not in path else "200"], path
        for code, response in responses.items():
            assert "Request-Id" in response["headers"], (method, path, code)
        if operation.get("security") == []:  # the reference: no key, no work
            assert sorted(responses) == ["200", "403", "500"], path  # 403: the firewall
            assert set(examples(responses["403"])) == {"request_blocked"}, path
            continue
        assert "request_blocked" in examples(responses["403"]), (method, path)
        expected = {"400", "401", "403", "429", "500", "503"}
        if "{" in path:
            expected.add("404")
        if method in ("POST", "PATCH"):
            expected.add("409")  # an Idempotency-Key still in progress, at the least
        if path == "/enrollments" and method == "POST":
            expected |= {"402", "502"}
        if path.endswith("/cancel"):
            expected.add("502")
        assert set(responses) - set(success) == expected, (method, path)


def test_error_responses_list_their_codes_with_examples_in_the_envelope() -> None:
    by_route = {(method, path): operation for method, path, operation in operations()}
    declined = by_route[("POST", "/enrollments")]["responses"]["402"]
    examples = declined["content"]["application/json"]["examples"]
    assert set(examples) == {"card_declined", "authentication_required"}
    assert examples["card_declined"]["value"]["error"]["decline_code"] == "generic_decline"
    assert declined["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    conflicts = by_route[("POST", "/students")]["responses"]["409"]["content"]["application/json"]
    assert set(conflicts["examples"]) == {"email_taken", "idempotency_request_in_progress"}
    throttled = by_route[("GET", "/courses")]["responses"]["429"]["headers"]
    assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= (
        set(throttled)
    )
    refused = by_route[("GET", "/courses")]["responses"]["401"]["headers"]
    assert "X-RateLimit-Remaining" not in refused  # answered before the rate limit
    every_code = {
        (int(status), example["value"]["error"]["code"])
        for _, _, operation in operations()
        for status, response in operation["responses"].items()
        for example in response.get("content", {})
        .get("application/json", {})
        .get("examples", {})
        .values()
    }
    # every answer of the catalogue is some route's, but for the one no route can give: an
    # unknown route's 404 (the Error schema lists its code)
    assert every_code == {(e.status, e.code) for e in CATALOGUE} - {(404, "route_not_found")}


def test_every_post_and_patch_takes_an_idempotency_key_and_says_when_it_replays() -> None:
    for method, path, operation in operations():
        names = {parameter["name"] for parameter in operation.get("parameters", [])}
        keyed = method in ("POST", "PATCH")
        assert ("Idempotency-Key" in names) is keyed, (method, path)
        if keyed:
            success = next(code for code in operation["responses"] if code.startswith("2"))
            assert "Idempotent-Replayed" in operation["responses"][success]["headers"]


def test_operation_ids_are_unique_method_names_grouped_by_resource() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in ids)
    for _method, path, operation in operations():
        (tag,) = operation["tags"]
        assert tag == "reference" or path.startswith(f"/{tag}"), path


# The team's own notes live beside the repository, not in it: a clone has none of them.
OUTSIDE = re.compile(r"\.\./shared|CONTRACT\.md")


def test_the_document_points_nowhere_outside_the_api() -> None:
    text = openapi.OUTPUT.read_text()
    assert "CONTRACT" not in text
    assert not OUTSIDE.search(text)


def test_no_file_of_the_repository_points_outside_it() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"],  # noqa: S607 - git on PATH, as make test's checkout has it
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    pointing = [
        name
        for name in filter(None, listed.split("\0"))
        if (ROOT / name).is_file()
        and OUTSIDE.search((ROOT / name).read_bytes().decode("utf-8", "replace"))
    ]
    assert pointing == []


def test_limit_bounds_use_openapi_keywords() -> None:
    document = json.loads(openapi.OUTPUT.read_text())
    parameters = document["paths"]["/courses"]["get"]["parameters"]
    (limit,) = [parameter for parameter in parameters if parameter["name"] == "limit"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
