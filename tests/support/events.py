"""API Gateway events from events/, with the fields a test needs replaced."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"

LoadEvent = Callable[..., dict[str, Any]]


@cache
def _stored(name: str) -> str:
    return (EVENTS / f"{name}.json").read_text()


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of `events/<name>.json` with top-level fields replaced.

    Conveniences: `body` may be a dict (it is JSON-encoded), `query` sets both query-string maps,
    `authorizer` updates `requestContext.authorizer`, `path_params` sets `pathParameters`.
    """
    event: dict[str, Any] = json.loads(_stored(name))  # a fresh copy each time
    if "body" in overrides and isinstance(overrides["body"], dict):
        overrides["body"] = json.dumps(overrides["body"])
    if "query" in overrides:
        query = overrides.pop("query")
        event["queryStringParameters"] = dict(query) or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    if "authorizer" in overrides:
        event["requestContext"]["authorizer"].update(overrides.pop("authorizer"))
    if "path_params" in overrides:
        event["pathParameters"] = overrides.pop("path_params")
    event.update(overrides)
    return event
