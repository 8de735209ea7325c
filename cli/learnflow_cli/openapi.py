"""Build the API's OpenAPI document from the route handlers themselves.

Each Lambda holds one route's Powertools resolver; Powertools writes each one's OpenAPI piece
(request bodies from the pydantic models). This merges them, adds each route's query model
(validated by `learnflow.http`, not by Powertools), the bearer-key security scheme and the
error envelope, and writes `functions/openapi/openapi.json`, which GET /openapi.json serves.
`python -m learnflow_cli.openapi` regenerates it; a test fails when it is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from learnflow.http import App
from learnflow_cli.template import load_template, routes

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "functions" / "openapi" / "openapi.json"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "request_id"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "decline_code": {"type": "string"},
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
    "description": "Retries with the same key and request within 24 h replay the first response",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_REPLAYED = {
    "description": "`true` when this is the saved response of an earlier request with the key",
    "schema": {"type": "string", "enum": ["true"]},
}


def _headers(authenticated: bool) -> dict[str, Any]:
    """Every response has Request-Id; authenticated routes add the rate-limit headers."""
    names = list(_HEADERS) if authenticated else ["Request-Id"]
    return {name: dict(_HEADERS[name]) for name in names}


def _error_response(authenticated: bool) -> dict[str, Any]:
    return {
        "description": "An error in the envelope of CONTRACT §3 (429 adds Retry-After)",
        "headers": _headers(authenticated),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


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
            "description": "Courses, instructors, students and paid enrollments. See CONTRACT.md.",
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
        # Keep the success response the route declares (`responses=ok(…)`); Powertools' own 422
        # never happens here (learnflow.http answers 400 in the envelope instead).
        declared = {
            code: {**response, "headers": _headers(route.auth_required)}
            for code, response in operation.pop("responses", {}).items()
            if str(code).startswith("2") and "content" in response
        }
        operation["responses"] = {**declared, "default": _error_response(route.auth_required)}
        parameters = operation.get("parameters", []) + _query_parameters(app)
        if route.method == "POST" and route.auth_required:
            parameters.append(_IDEMPOTENCY_KEY)
            for response in operation["responses"].values():
                response["headers"]["Idempotent-Replayed"] = dict(_REPLAYED)
        if parameters:
            operation["parameters"] = parameters
        if not route.auth_required:
            operation["security"] = []
        document["paths"].setdefault(route.path, {})[route.method.lower()] = operation
        for name, schema in piece.get("components", {}).get("schemas", {}).items():
            if name not in {"HTTPValidationError", "ValidationError", "ResponseValidationError"}:
                document["components"]["schemas"][name] = schema
    return document


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
