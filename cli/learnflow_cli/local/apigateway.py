"""API Gateway (REST) emulated from template.yaml: one stage's routing, the order in which a
request meets the TOKEN authorizer, the API key check and the Lambda proxy integration, and
the template's gateway responses for every answer the gateway makes by itself."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from learnflow_cli import template as tpl
from learnflow_cli.local.functions import LOCAL_ACCOUNT_ID
from learnflow_cli.local.http_messages import JSON_TYPE, HttpResponse, Refusal
from learnflow_cli.local.lambda_proxy import ProxyIntegration, proxy_response
from learnflow_cli.local.token_authorizer import TokenAuthorizer

if TYPE_CHECKING:
    from learnflow_cli.local.http_messages import HttpRequest
    from learnflow_cli.local.lambda_runtime import Invocation, Invoker

_log = logging.getLogger(__name__)
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# A REST API's integration timeout: API Gateway answers 504 (INTEGRATION_TIMEOUT) when the
# function has not answered by then, and the invocation goes on without anyone waiting for it.
INTEGRATION_TIMEOUT_SECONDS = 29.0

_GATEWAY_MESSAGES = {
    "UNAUTHORIZED": "Unauthorized",
    "ACCESS_DENIED": "User is not authorized to access this resource",
    "MISSING_AUTHENTICATION_TOKEN": "Missing Authentication Token",
    "INVALID_API_KEY": "Forbidden",
    "REQUEST_TOO_LARGE": "Request Too Long",
    "AUTHORIZER_CONFIGURATION_ERROR": "Internal server error",
    "AUTHORIZER_FAILURE": "Internal server error",
    "DEFAULT_4XX": "Bad Request",
    "DEFAULT_5XX": "Internal server error",
    "INTEGRATION_TIMEOUT": "Endpoint request timed out",
}


@dataclass(frozen=True, slots=True)
class _Resource:
    path: str
    segments: tuple[str, ...]
    methods: dict[str, tpl.Route]
    resource_id: str

    def match(self, parts: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
        """(specificity, path parameters) when `parts` falls under this resource; a literal
        segment beats a {parameter}, which beats a greedy {proxy+}, as in API Gateway."""
        params: dict[str, str] = {}
        rank: list[int] = []
        for index, segment in enumerate(self.segments):
            greedy = segment.startswith("{") and segment.endswith("+}")
            if index >= len(parts) or not parts[index]:
                return None
            if greedy:
                params[segment[1:-2]] = "/".join(parts[index:])
                return (*rank, 0), params
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
                rank.append(1)
            elif segment == parts[index]:
                rank.append(2)
            else:
                return None
        return (tuple(rank), params) if len(parts) == len(self.segments) else None


class Gateway:
    """One REST API stage: routing, the TOKEN authorizer, API key checks, Lambda proxy events
    and responses, and the template's gateway responses."""

    def __init__(
        self,
        template: Mapping[str, Any],
        runtime: Invoker,
        *,
        api_id: str,
        region: str,
        authorizer_cache: bool = False,
        api_key_lookup: Callable[[str], str | None] | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        self.stage = tpl.stage_name(template)
        self._integration_timeout = integration_timeout
        self.api_id = api_id
        self.region = region
        self._runtime = runtime
        self._responses = tpl.gateway_responses(template)
        self._authorizer = TokenAuthorizer(
            tpl.authorizer(template), runtime, cache=authorizer_cache
        )
        self._api_key_lookup = api_key_lookup
        self._proxy = ProxyIntegration(
            stage=self.stage,
            api_id=api_id,
            binary_media_types=tpl.binary_media_types(template),
        )
        grouped: dict[str, dict[str, tpl.Route]] = {}
        for route in tpl.routes(template):
            grouped.setdefault(route.path, {})[route.method] = route
        self._resources = [
            _Resource(
                path=path,
                segments=tuple(path.strip("/").split("/")) if path.strip("/") else (),
                methods=methods,
                resource_id=_resource_id(path),
            )
            for path, methods in grouped.items()
        ]

    @property
    def authorizer_function(self) -> str:
        return self._authorizer.function_id

    def function_for(self, method: str, resource_path: str) -> str | None:
        """The function a request would reach (`GET`, `/courses`), None for no route."""
        matched = self._match(resource_path)
        if matched is None:
            return None
        route = matched[0].methods.get(method) or matched[0].methods.get("ANY")
        return route.function_id if route else None

    def handle(self, request: HttpRequest) -> HttpResponse:
        context = self._context(request)
        path, _, query = request.target.partition("?")
        if len(request.body) > MAX_BODY_BYTES:
            return self._gateway_response("REQUEST_TOO_LARGE", 413, context)
        prefix = f"/{self.stage}"
        if path != prefix and not path.startswith(prefix + "/"):
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, context)
        resource_path = path[len(prefix) :] or "/"
        matched = self._match(resource_path)
        if matched is None or (
            request.method not in matched[0].methods and "ANY" not in matched[0].methods
        ):
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, context)
        resource, path_params = matched
        route = resource.methods.get(request.method) or resource.methods["ANY"]
        context["resourcePath"] = resource.path
        context["resourceId"] = resource.resource_id
        method_arn = (
            f"arn:aws:execute-api:{self.region}:{LOCAL_ACCOUNT_ID}:{self.api_id}/{self.stage}/"
            f"{request.method}/{resource_path.lstrip('/')}"
        )
        authorizer_context: dict[str, Any] | None = None
        api_key: tuple[str, str] | None = None
        authorizer_ms: float | None = None
        if route.auth_required:
            outcome = self._authorizer.authorize(request, method_arn)
            authorizer_ms = outcome.invoked_ms
            if outcome.principal_id is not None:
                context["authorizer.principalId"] = outcome.principal_id
            if outcome.refusal is not None:
                refusal = self._refusal(outcome.refusal, context)
                refusal.authorizer_ms = authorizer_ms
                return refusal
            authorizer_context, usage_key = outcome.context, outcome.usage_key
            if route.api_key_required and self._api_key_lookup is not None:
                key_id = self._api_key_lookup(usage_key) if usage_key else None
                if key_id is None or usage_key is None:
                    refusal = self._gateway_response("INVALID_API_KEY", 403, context)
                    refusal.authorizer_ms = authorizer_ms
                    return refusal
                api_key = (usage_key, key_id)
        event = self._proxy.event(
            request,
            resource=resource.path,
            resource_id=resource.resource_id,
            path=resource_path,
            path_params=path_params,
            query=query,
            context=context,
            authorizer=authorizer_context,
            api_key=api_key,
        )
        trace_id = (event["headers"] or {}).get("X-Amzn-Trace-Id")
        result = self._invoke_within(route.function_id, event, trace_id)
        if result is None:
            response = self._gateway_response("INTEGRATION_TIMEOUT", 504, context)
            response.notes.append(f"no answer within {self._integration_timeout:g} s")
        else:
            response = self._integration_response(result, context)
        response.function = route.function_id
        response.authorizer_ms = authorizer_ms
        return response

    def _integration_response(self, result: Invocation, context: dict[str, str]) -> HttpResponse:
        answer = proxy_response(result)
        if isinstance(answer, Refusal):
            response = self._refusal(answer, context)
        else:
            status, headers, body = answer
            headers.extend(self._gateway_headers(context))
            response = HttpResponse(status, headers, body, request_id=context["requestId"])
        if result.init_ms is not None:
            response.notes.append(f"cold start {result.init_ms:.0f} ms")
        return response

    def _invoke_within(self, name: str, event: Any, trace_id: str | None) -> Invocation | None:
        """The function's invocation, or None when it has not ended within the integration
        timeout. One that has started then goes on in its own thread, as in AWS; one still
        waiting for a free worker gives up at that moment and never runs."""
        start_by = time.monotonic() + self._integration_timeout
        done: Future[Invocation] = Future()

        def invoke() -> None:
            try:
                done.set_result(self._runtime.invoke(name, event, trace_id, start_by=start_by))
            except BaseException as error:  # raised in the waiting request, or logged if gone
                done.set_exception(error)
                if waiting_ended.is_set():
                    _log.exception("%s failed after the gateway answered 504", name)

        waiting_ended = threading.Event()
        threading.Thread(target=invoke, name=f"invoke-{name}", daemon=True).start()
        try:
            result = done.result(timeout=self._integration_timeout)
        except TimeoutError:
            waiting_ended.set()
            return None
        return result if result.started else None

    def refuse(
        self, request: HttpRequest, response_type: str, status: int, note: str | None = None
    ) -> HttpResponse:
        """The gateway's own answer to a request that goes no further (malformed HTTP, the
        emulator's own failure): a fresh request id and the template's gateway response for
        `response_type`, else DEFAULT_4XX/5XX, rendered like every other gateway response."""
        refusal = Refusal(response_type, status, note)
        return self._refusal(refusal, self._context(request))

    def _context(self, request: HttpRequest) -> dict[str, str]:
        """The `$context` of one request: what gateway responses and proxy events are built on."""
        now = time.time()
        return {
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": _extended_id(),
            "apiId": self.api_id,
            "stage": self.stage,
            "httpMethod": request.method,
            "path": request.target.partition("?")[0],
            "identity.sourceIp": request.source_ip,
            "requestTime": _request_time(now),
            "requestTimeEpoch": str(int(now * 1000)),
        }

    def _match(self, resource_path: str) -> tuple[_Resource, dict[str, str]] | None:
        parts = resource_path.strip("/").split("/") if resource_path.strip("/") else []
        best: tuple[tuple[int, ...], _Resource, dict[str, str]] | None = None
        for resource in self._resources:
            found = resource.match(parts)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], resource, found[1])
        return None if best is None else (best[1], best[2])

    def _gateway_headers(self, context: Mapping[str, str]) -> list[tuple[str, str]]:
        return [
            ("x-amzn-RequestId", context["requestId"]),
            ("x-amz-apigw-id", context["extendedRequestId"]),
        ]

    def _refusal(self, refusal: Refusal, context: dict[str, str]) -> HttpResponse:
        response = self._gateway_response(refusal.response_type, refusal.status, context)
        if refusal.note:
            response.notes.append(refusal.note)
        return response

    def _gateway_response(
        self, response_type: str, default_status: int, context: dict[str, str]
    ) -> HttpResponse:
        """A response API Gateway makes by itself, from the template's GatewayResponses."""
        context = {**context, "error.responseType": response_type}
        message = _GATEWAY_MESSAGES.get(response_type, "Internal server error")
        context.setdefault("error.message", message)
        context.setdefault("error.messageString", json.dumps(message))
        declared = tpl.gateway_response_for(self._responses, response_type, default_status)
        headers: dict[str, str] = {}
        if declared is None:
            status, body = default_status, json.dumps({"message": message})
        else:
            status, headers, body = declared.render(context, default_status)
        pairs = list(headers.items())
        if not any(name.lower() == "content-type" for name, _ in pairs):
            pairs.append(("Content-Type", JSON_TYPE))
        pairs.extend(self._gateway_headers(context))
        return HttpResponse(status, pairs, body.encode("utf-8"), request_id=context["requestId"])


def _resource_id(path: str) -> str:
    """Stable per resource, shaped like API Gateway's (six lower-case letters and digits)."""
    digest = hashlib.sha256(path.encode()).digest()
    alphabet = string.ascii_lowercase + string.digits
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:6])


def _extended_id() -> str:
    return secrets.token_urlsafe(11)[:15] + "="


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
