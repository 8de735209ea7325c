"""Build the API's OpenAPI document from the route handlers themselves.

Each Lambda holds one route's Powertools resolver; Powertools writes each one's OpenAPI piece
(request bodies from the pydantic models). This merges them, adds each route's query model
(validated by `learnflow.http`, not by Powertools), the bearer-key security scheme, the
Idempotency-Key header of every POST and PATCH, every status each route can answer (what every
route of its kind answers, plus what its handler declares with `make_app(answers=…)`, all from
`learnflow.errors.CATALOGUE`) with the error envelope, its codes and examples, and the response
headers; and writes `functions/openapi/openapi.json`, which GET /openapi.json serves and GET
/docs renders. `python -m learnflow_cli.openapi` regenerates it; a test fails when it is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path
from typing import Any

from learnflow.errors import CATALOGUE, Documented, documented
from learnflow.http import App
from learnflow_cli.template import Route, load_template, routes

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "functions" / "openapi" / "openapi.json"

_ERROR = {
    "type": "object",
    "description": "Every error, whatever its status, in one envelope.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "request_id"],
            "properties": {
                "type": {
                    "type": "string",
                    "description": "The kind of error",
                    "examples": sorted({entry.type for entry in CATALOGUE}),
                },
                "code": {
                    "type": "string",
                    "description": "A stable, snake_case reason (new codes may be added)",
                    "examples": sorted({entry.code for entry in CATALOGUE}),
                },
                "param": {"type": "string", "description": "The request field to blame"},
                "message": {"type": "string", "description": "For people, not for parsing"},
                "request_id": {"type": "string", "description": "The same as Request-Id"},
                "decline_code": {
                    "type": "string",
                    "description": "Why a card was declined, as the payment provider said",
                },
            },
        }
    },
}


_HEADERS = {
    "Request-Id": {
        "description": "API Gateway's request id; the same as `request_id` in an error body",
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "The plan's requests a minute",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in this minute, after this one",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "Unix epoch seconds at which the window resets",
        "schema": {"type": "integer"},
    },
}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Retries with the same key and request within 24 h replay the first response; a retry"
        " after a 5xx, a timeout or a reset connection finishes the first attempt's work"
        " instead of doing it twice"
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
_REPLAYED = {
    "description": "`true` when this is the saved response of an earlier request with the key",
    "schema": {"type": "string", "enum": ["true"]},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 1},
}
_RETRY_AFTER_STATUSES = frozenset({429, 502, 503})
_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})


def _headers(authenticated: bool) -> dict[str, Any]:
    """Every response has Request-Id; authenticated routes add the rate-limit headers."""
    names = list(_HEADERS) if authenticated else ["Request-Id"]
    return {name: dict(_HEADERS[name]) for name in names}


def _answers(
    route: Route, app: App, operation: dict[str, Any], body_required: bool
) -> list[Documented]:
    """Every answer the route can give besides its success: what every route of its kind
    answers, then what its own work declares."""
    found: list[tuple[int, str]] = []
    if route.auth_required:
        found += [(401, "api_key_invalid"), (403, "insufficient_permissions")]
        found += [(429, "rate_limit_exceeded"), (503, "service_unavailable")]
        found.append((400, "parameter_unknown"))  # an unknown query parameter, on any route
        if app.query_model is not None:  # lists: limit, filters, cursors
            found += [(400, "parameter_invalid"), (400, "resource_missing")]
        if route.method in _IDEMPOTENT_METHODS:
            found += [(400, "invalid_json"), (400, "parameter_invalid")]
            if body_required:
                found.append((400, "parameter_missing"))
            found += [(400, "idempotency_key_reused"), (409, "idempotency_request_in_progress")]
        if "{" in route.path:
            found.append((404, "resource_missing"))
    found.append((403, "request_blocked"))  # the deployed stage's WAF, before any route
    found.append((500, "api_error"))
    answers = [documented(status, code) for status, code in found] + list(app.answers)
    return [entry for entry in CATALOGUE if entry in answers]  # catalogue order, no repeats


def _error_responses(
    answers: list[Documented], *, authenticated: bool, idempotent: bool
) -> dict[str, Any]:
    """One response per status: the envelope, each code with when it happens and an example."""
    responses: dict[str, Any] = {}
    for status in sorted({entry.status for entry in answers}):
        entries = [entry for entry in answers if entry.status == status]
        # A 401 is answered before the rate limit: it has no rate-limit headers.
        headers = _headers(authenticated and status != 401)
        if status in _RETRY_AFTER_STATUSES:
            headers["Retry-After"] = dict(_RETRY_AFTER)
        if idempotent and status < 500 and status != 429:
            headers["Idempotent-Replayed"] = dict(_REPLAYED)
        lines = "\n".join(f"- `{e.type}` / `{e.code}`: {e.when}" for e in entries)
        responses[str(status)] = {
            "description": f"An error in the envelope:\n{lines}",
            "headers": headers,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"},
                    "examples": {entry.code: _example(entry) for entry in entries},
                }
            },
        }
    return responses


def _example(entry: Documented) -> dict[str, Any]:
    error: dict[str, Any] = {"type": entry.type, "code": entry.code}
    if entry.type == "card_error":
        error["decline_code"] = "generic_decline" if entry.code == "card_declined" else entry.code
    error.update({"message": entry.when, "request_id": "c0ffee00-0000-4000-8000-000000000000"})
    return {"summary": entry.when, "value": {"error": error}}


def _standard_bounds(schema: Any) -> Any:
    """pydantic writes `Field(ge=…, le=…)` behind a BeforeValidator as `ge`/`le`; OpenAPI says
    `minimum`/`maximum`."""
    if isinstance(schema, dict):
        renamed = {
            "ge": "minimum",
            "le": "maximum",
            "gt": "exclusiveMinimum",
            "lt": "exclusiveMaximum",
        }
        return {renamed.get(key, key): _standard_bounds(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_standard_bounds(item) for item in schema]
    return schema


def _query_parameters(app: App) -> list[dict[str, Any]]:
    if app.query_model is None:
        return []
    schema = app.query_model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _standard_bounds(prop),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def build() -> dict[str, Any]:
    """The whole API's document, in template order."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "LearnFlow API",
            "version": "v2",
            "description": (
                "Courses, instructors, students and paid enrollments, reached with Stripe-style"
                " API keys. The browsable reference is at /v2/docs."
            ),
        },
        "servers": [
            {"url": "https://api.learnflow.com/v2"},
            {"url": "http://127.0.0.1:3000/v2", "description": "learnflow serve"},
        ],
        "security": [{"bearerKey": []}],
        "paths": {},
        "components": {
            "securitySchemes": {
                "bearerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sk_live_… | sk_test_… | rk_live_… | rk_test_…",
                }
            },
            "schemas": {"Error": _ERROR},
        },
    }
    for route in routes(load_template()):
        module = importlib.import_module(route.dotted_module)
        app: App = module.app
        piece = app.get_openapi_schema().model_dump(mode="json", by_alias=True, exclude_none=True)
        operation = piece["paths"][route.path][route.method.lower()]
        operation["operationId"] = route.module
        resource = route.path.strip("/").split("/")[0]
        operation["tags"] = [resource if route.auth_required else "reference"]
        operation["summary"] = route.module.replace("_", " ").capitalize()
        operation["description"] = " ".join((module.__doc__ or "").split())
        components = piece.get("components", {}).get("schemas", {})
        body_required = bool(components.get(_body_model(operation), {}).get("required"))
        if "requestBody" in operation and not body_required:
            operation["requestBody"]["required"] = False  # an empty body reads as {}
        idempotent = route.method in _IDEMPOTENT_METHODS and route.auth_required
        # Keep the success response the route declares (`responses=ok(…)`); Powertools' own 422
        # never happens here (learnflow.http answers 400 in the envelope instead).
        declared = {
            str(code): {**response, "headers": _headers(route.auth_required)}
            for code, response in operation.pop("responses", {}).items()
            if str(code).startswith("2") and "content" in response
        }
        if idempotent:
            for response in declared.values():
                response["headers"]["Idempotent-Replayed"] = dict(_REPLAYED)
        answers = _answers(route, app, operation, body_required)
        operation["responses"] = {
            **declared,
            **_error_responses(answers, authenticated=route.auth_required, idempotent=idempotent),
        }
        parameters = operation.get("parameters", []) + _query_parameters(app)
        if idempotent:
            parameters.append(_IDEMPOTENCY_KEY)
        if parameters:
            operation["parameters"] = parameters
        if not route.auth_required:
            operation["security"] = []
        document["paths"].setdefault(route.path, {})[route.method.lower()] = operation
        for name, schema in components.items():
            if name not in {"HTTPValidationError", "ValidationError", "ResponseValidationError"}:
                document["components"]["schemas"][name] = schema
    _link_created_objects(document)
    return document


def _link_created_objects(document: dict[str, Any]) -> None:
    """OpenAPI links from each create (201) to the operations on the object it made: the new
    object's `id` is their path parameter (clients and stateful testers follow them)."""
    paths: dict[str, dict[str, Any]] = document["paths"]
    for path, item in paths.items():
        for operation in item.values():
            created = operation["responses"].get("201")
            if created is None:
                continue
            links: dict[str, Any] = {}
            for other_path, other_item in paths.items():
                found = re.fullmatch(re.escape(path) + r"/\{(\w+)\}(/.*)?", other_path)
                if found is None:
                    continue
                for other in other_item.values():
                    name = "".join(part.capitalize() for part in other["operationId"].split("_"))
                    links[name] = {
                        "operationId": other["operationId"],
                        "parameters": {found.group(1): "$response.body#/id"},
                    }
            if links:
                created["links"] = links


def _body_model(operation: dict[str, Any]) -> str:
    """The component name of the operation's JSON body, or "" when it takes none."""
    schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    return str(schema.get("$ref", "")).rpartition("/")[2]


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            raise SystemExit(f"{OUTPUT} is stale: run python -m learnflow_cli.openapi")
        return
    OUTPUT.write_text(text)


if __name__ == "__main__":
    main()
