"""The REST API's Lambda proxy integration (payload format 1.0): an HTTP request as the event a
function receives, field for field, and the function's result as the HTTP response API Gateway
makes of it (a function error or a malformed result is a `Refusal`: API Gateway's 502)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from learnflow_cli.local.functions import LOCAL_ACCOUNT_ID
from learnflow_cli.local.http_messages import JSON_TYPE, Refusal
from learnflow_cli.local.iam import as_list, wildcard
from learnflow_cli.local.lambda_runtime import describe_error

if TYPE_CHECKING:
    from learnflow_cli.local.http_messages import HttpRequest
    from learnflow_cli.local.lambda_runtime import Invocation

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|[\w.+-]+\+json|xml|[\w.+-]+\+xml|javascript|"
    r"x-www-form-urlencoded|graphql)|)$",
    re.IGNORECASE,
)

ProxyResult = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


class ProxyIntegration:
    """Events and responses of one stage of one API (`binary_media_types` as the template
    declares them, `/` spelled out)."""

    def __init__(self, *, stage: str, api_id: str, binary_media_types: Sequence[str]) -> None:
        self.stage = stage
        self.api_id = api_id
        self._binary_types = [wildcard(kind, ignore_case=True) for kind in binary_media_types]

    def event(
        self,
        request: HttpRequest,
        *,
        resource: str,
        resource_id: str,
        path: str,
        path_params: dict[str, str],
        query: str,
        context: Mapping[str, str],
        authorizer: dict[str, Any] | None,
        api_key: tuple[str, str] | None,
    ) -> dict[str, Any]:
        """The event for `request` to the method of `resource` (e.g. /items/{item_id}), at
        `path` within the stage, given the request's `$context` and the authorizer's context."""
        headers, multi_headers = _event_headers(request, context)
        pairs = parse_qsl(query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_query.setdefault(name, []).append(value)
        body, is_base64 = self._event_body(request)
        user_agent = headers.get("User-Agent") or request.header("User-Agent")
        request_context: dict[str, Any] = {
            "resourceId": resource_id,
            "resourcePath": resource,
            "httpMethod": request.method,
            "extendedRequestId": context["extendedRequestId"],
            "requestTime": context["requestTime"],
            "path": context["path"],
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": self.stage,
            "domainPrefix": self.api_id,
            "requestTimeEpoch": int(context["requestTimeEpoch"]),
            "requestId": context["requestId"],
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
                "apiKey": api_key[0] if api_key else None,
                "apiKeyId": api_key[1] if api_key else None,
            },
            "domainName": request.header("Host") or "127.0.0.1",
            "deploymentId": "local",
            "apiId": self.api_id,
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        return {
            "resource": resource,
            "path": path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()}
            or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": request_context,
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def _event_body(self, request: HttpRequest) -> tuple[str | None, bool]:
        """Text bodies as text; the API's binary media types, other non-text types and bytes
        that are not UTF-8 as base64 with isBase64Encoded (where API Gateway without binary
        media types would mangle them, the handler gets them intact)."""
        if not request.body:
            return None, False
        content_type = (request.header("Content-Type") or "").split(";")[0].strip()
        binary = any(kind.fullmatch(content_type) for kind in self._binary_types)
        if not binary and _TEXT_TYPES.match(content_type):
            with contextlib.suppress(UnicodeDecodeError):
                return request.body.decode("utf-8"), False
        return base64.b64encode(request.body).decode("ascii"), True


def proxy_response(result: Invocation) -> ProxyResult | Refusal:
    """The function's proxy response as API Gateway turns it into HTTP; a function error or a
    malformed response is a 502, as API Gateway answers it."""
    if result.error is not None:
        return Refusal("DEFAULT_5XX", 502, describe_error(None, result.error))
    payload = result.payload
    status = _status_code(payload.get("statusCode") if isinstance(payload, dict) else None)
    body = payload.get("body") if isinstance(payload, dict) else None
    if status is None or not isinstance(payload, dict) or not isinstance(body, str | None):
        return Refusal("DEFAULT_5XX", 502, "Malformed Lambda proxy response")
    merged: dict[str, list[str]] = {}
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        merged[str(name)] = [str(value) for value in as_list(values)]
    for name, value in (payload.get("headers") or {}).items():
        if str(name) not in merged:
            merged[str(name)] = [str(value)]
    if not any(name.lower() == "content-type" for name in merged):
        merged["Content-Type"] = [JSON_TYPE]
    content = (body or "").encode("utf-8")
    if payload.get("isBase64Encoded") and body:
        try:
            content = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return Refusal("DEFAULT_5XX", 502, "Malformed Lambda proxy response (base64 body)")
    headers = [(name, value) for name, values in merged.items() for value in values]
    return status, headers, content


def _event_headers(
    request: HttpRequest, context: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value  # the last one wins, as in API Gateway's single-value map
        multi.setdefault(name, []).append(value)
    # What API Gateway adds in front of the integration.
    added = {
        "X-Forwarded-For": request.source_ip,
        "X-Forwarded-Port": "80",
        "X-Forwarded-Proto": "http",
    }
    if request.header("X-Amzn-Trace-Id") is None:
        added["X-Amzn-Trace-Id"] = _trace_id(context["requestTimeEpoch"])
    for name, value in added.items():
        if not any(existing.lower() == name.lower() for existing in headers):
            headers[name] = value
            multi[name] = [value]
    return headers, multi


def _status_code(value: Any) -> int | None:
    """A proxy response's statusCode: an integer, or a string of digits (AWS's own blueprints
    return "200"), from 100 to 599."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        return None
    return value


def _trace_id(epoch_ms: str) -> str:
    return f"Root=1-{int(epoch_ms) // 1000:08x}-{secrets.token_hex(12)}"
