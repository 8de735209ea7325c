"""The proxy event as the pipeline reads it: JSON bodies, an empty write as `{}`, query lists."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

JSON: Final = "application/json"


def normalise(event: Mapping[str, Any]) -> dict[str, Any]:
    """Bodies are JSON whatever Content-Type says (curl -d sends form encoding); an empty body on
    a POST or PATCH reads as `{}` (docs/api.md §2); a base64 body is decoded when it is UTF-8,
    and left encoded otherwise (the body check then answers 400 invalid_json, after the guards)."""
    event = dict(event)
    method = str(event.get("httpMethod", "")).upper()
    body = event.get("body")
    if method in ("POST", "PATCH", "PUT") and body in (None, ""):
        event["body"] = "{}"
        event["isBase64Encoded"] = False
    elif event.get("isBase64Encoded") and body:
        try:
            event["body"] = base64.b64decode(str(body), validate=True).decode("utf-8")
            event["isBase64Encoded"] = False
        except (binascii.Error, UnicodeDecodeError):
            pass
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON
    event["headers"] = headers
    multi = event.get("multiValueHeaders")
    if multi:
        multi = {k: v for k, v in multi.items() if k.lower() != "content-type"}
        multi["Content-Type"] = [JSON]
        event["multiValueHeaders"] = multi
    return event


def query_lists(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every query parameter with all its values (the multi-value map when there is one)."""
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return {str(name): [str(value) for value in values] for name, values in multi.items()}
    single = event.get("queryStringParameters") or {}
    return {str(name): [str(value)] for name, value in single.items()}


def request_id(event: Mapping[str, Any]) -> str:
    """API Gateway's request id (the `Request-Id` header and an error's `request_id`)."""
    return str((event.get("requestContext") or {}).get("requestId", ""))
