"""Success answers and the headers every answer carries: JSON with exact decimals, replays of
saved answers, `Request-Id` and the rate-limit headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel

from learnflow import idempotency
from learnflow.http.events import JSON
from learnflow.jsonio import dumps


def ok(status: int, description: str, model: type[BaseModel]) -> dict[int, Any]:
    """A route's success response for its OpenAPI description: `@app.get(…, responses=ok(…))`."""
    return {status: {"description": description, "content": {JSON: {"model": model}}}}


def respond(value: BaseModel | Mapping[str, Any], status: int = 200) -> Response[str]:
    """A JSON response with exact decimals (handlers return this, not a bare model)."""
    body = value.model_dump(mode="python") if isinstance(value, BaseModel) else value
    return Response(status_code=status, content_type=JSON, body=dumps(body))


def replay(saved: idempotency.Saved) -> dict[str, Any]:
    """The first response to an idempotent request again, marked as a replay (its body keeps the
    first request's `request_id`; the headers are this request's)."""
    return {
        "statusCode": saved.status,
        "headers": {"Content-Type": JSON, idempotency.REPLAYED_HEADER: "true"},
        "body": saved.body,
        "isBase64Encoded": False,
    }


def with_headers(result: dict[str, Any], extra: dict[str, str], request_id: str) -> dict[str, Any]:
    """Add the rate-limit headers and `Request-Id` to a proxy response, whichever header map
    (single or multi-value) Powertools filled."""
    extra = {**extra, "Request-Id": request_id}
    multi = result.get("multiValueHeaders")
    if multi:
        for name, value in extra.items():
            multi[name] = [value]
    else:
        result["headers"] = {**(result.get("headers") or {}), **extra}
    return result
