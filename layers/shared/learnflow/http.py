"""The HTTP layer every route handler shares: one resolver factory over Powertools' REST resolver.

`make_app(permission=…)` gives a resolver that, for every request, in the contract's order
(docs/api.md §5: route → key → rate limit → permission → input → the work):
reads the caller from the authorizer's context, counts the request against the account's
per-minute limit, checks the route's permission, claims a POST's or PATCH's `Idempotency-Key`
(docs/api.md §8: a repeat replays the first response, a retry after a fault resumes the first run
from its recovery point), rejects unknown query parameters and bad JSON,
validates input with pydantic (errors → 400 with `param`), runs the handler, and answers every
error in the envelope of docs/api.md §6 with `Request-Id` and the rate-limit headers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pydantic import BaseModel, ValidationError

from learnflow import errors, idempotency, ids, permissions
from learnflow.jsonio import dumps, loads_object
from learnflow.observability import instrument, logger, metrics, status_class
from learnflow.ratelimit import Allowance, Limiter
from learnflow.tenancy import Mode, Tenant

JSON = "application/json"
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, exactly as the authorizer established it; never from the request itself."""

    tenant: Tenant
    plan: str
    rate_limit: int
    key_id: str
    key_kind: str
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permissions.allows(self.permissions, permission)


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    """The caller from `requestContext.authorizer` (API Gateway passes the context as strings)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    mode = context.get("mode")
    account_id = context.get("account_id")
    try:
        rate_limit = int(context.get("rate_limit", ""))
    except ValueError:
        rate_limit = 0
    if not account_id or mode not in ("live", "test") or rate_limit <= 0:
        # Only a misconfigured route (no authorizer in front) gets here: refuse, never guess.
        raise errors.AuthenticationError("Invalid API key provided.", code="api_key_invalid")
    return Caller(
        tenant=Tenant(account_id=str(account_id), mode=cast("Mode", mode)),
        plan=str(context.get("plan", "")),
        rate_limit=rate_limit,
        key_id=str(context.get("key_id", "")),
        key_kind=str(context.get("key_kind", "")),
        permissions=permissions.parse(str(context.get("permissions", ""))),
    )


def error_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """`("body", "metadata", "k")` → `metadata`; `("query", "limit")` → `limit`."""
    names = [str(part) for part in loc[1:] if not isinstance(part, int)]
    return names[0] if names else None


def validation_error(details: list[dict[str, Any]] | Any) -> errors.AppError:
    """The first pydantic/Powertools validation error as the contract's 400."""
    first = next(iter(details), None) if isinstance(details, list) else None
    if not first:
        return errors.InvalidRequestError("Invalid request.", code="parameter_invalid")
    kind = first.get("type", "")
    loc = tuple(first.get("loc", ()))
    param = error_param(loc)
    if kind == "json_invalid" or (param is None and loc[:1] == ("body",)):
        return errors.InvalidRequestError(
            "The request body is not a JSON object.", code="invalid_json"
        )
    if param is None:
        return errors.InvalidRequestError("Invalid request.", code="parameter_invalid")
    if kind == "missing":
        return errors.parameter_missing(param)
    if kind == "extra_forbidden":
        return errors.parameter_unknown(param)
    # pydantic's messages describe the rule ("String should have at most 200 characters"),
    # never the input, so they are safe to pass on.
    message = str(first.get("msg", "Invalid value"))
    message = message.removeprefix("Value error, ").rstrip(".")
    return errors.parameter_invalid(param, f"Invalid {param}: {message}.")


def error_response(error: errors.AppError, request_id: str) -> Response[str]:
    return Response(
        status_code=error.status,
        content_type=JSON,
        body=dumps(error.body(request_id)),
        headers=dict(error.headers),
    )


def ok(status: int, description: str, model: type[BaseModel]) -> dict[int, Any]:
    """A route's success response for its OpenAPI description: `@app.get(…, responses=ok(…))`."""
    return {status: {"description": description, "content": {JSON: {"model": model}}}}


def respond(value: BaseModel | Mapping[str, Any], status: int = 200) -> Response[str]:
    """A JSON response with exact decimals (handlers return this, not a bare model)."""
    body = value.model_dump(mode="python") if isinstance(value, BaseModel) else value
    return Response(status_code=status, content_type=JSON, body=dumps(body))


class App(APIGatewayRestResolver):
    """Powertools' REST resolver with LearnFlow's guards, envelope and headers."""

    def __init__(
        self,
        *,
        permission: str | None,
        query: type[BaseModel] | None,
        authenticated: bool,
        limiter: Callable[[], Limiter] | None,
        idempotency_store: Callable[[], idempotency.IdempotencyStore] | None = None,
        creates: str | None = None,
        answers: tuple[errors.Documented, ...] = (),
    ) -> None:
        super().__init__(
            enable_validation=True, serializer=dumps, json_body_deserializer=self._body
        )
        self.permission = permission
        self.query_model = query
        self.authenticated = authenticated
        self._limiter = limiter
        self._idempotency = idempotency_store
        self.creates = creates
        self.answers = answers
        self._parsed: tuple[str, dict[str, Any]] | None = None
        # Every route's Lambda enters here: its trace subsegment and metrics come with it, so no
        # handler file has to carry them.
        self._observed = instrument()(self._answer)
        self.exception_handler(errors.AppError)(self._app_error)
        self.exception_handler(RequestValidationError)(self._validation_error)
        self.exception_handler(PowertoolsNotFound)(self._route_not_found)
        self.exception_handler(Exception)(self._unexpected)

    # --- the request's pipeline ---

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        result: dict[str, Any] = self._observed(event, context)
        return result

    def _answer(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        """The answer, counted by route and status class (`Requests`)."""
        result = self._pipeline(event, context)
        route = f"{str(event.get('httpMethod', '')).upper()} {event.get('resource', '')}"
        try:
            status = int(result.get("statusCode", 500))
        except (TypeError, ValueError):
            status = 500
        metrics.add("Requests", route=route, status_class=status_class(status))
        return result

    def _pipeline(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        request_id = str((event.get("requestContext") or {}).get("requestId", ""))
        event = _normalise(event)
        extra_headers: dict[str, str] = {}
        try:
            claim = self._guard(event, context, extra_headers)
            if isinstance(claim, idempotency.Saved):
                return _with_headers(_replay(claim), extra_headers, request_id)
            result = self._run(event, context, request_id)
            if claim is not None:
                self._settle(claim, result)
            return _with_headers(result, extra_headers, request_id)
        except errors.AppError as error:
            return _with_headers(_proxy_response(error, request_id), extra_headers, request_id)
        except Exception as error:
            logger.exception("request pipeline failed")
            failure = _proxy_response(_fault(error), request_id)
            return _with_headers(failure, extra_headers, request_id)
        finally:
            self._parsed = None
            self.context.clear()

    def _guard(
        self, event: Mapping[str, Any], context: LambdaContext, extra_headers: dict[str, str]
    ) -> idempotency.Claim | idempotency.Saved | None:
        """Caller → rate limit → permission → idempotency claim; raises the first AppError."""
        if not self.authenticated:
            return None
        caller = caller_from_event(event)
        if _given_twice(event, "Authorization"):
            # API Gateway hands the authorizer one of them; which one the client meant is
            # anyone's guess, so neither is trusted (docs/api.md §4).
            raise errors.AuthenticationError(
                "Give one Authorization header, not several.", code="api_key_invalid"
            )
        if self._limiter is not None:
            try:
                allowance: Allowance = self._limiter().hit(caller.tenant, caller.rate_limit)
            except errors.RateLimitError:
                metrics.add("RateLimitRefusals", plan=caller.plan or "unknown")
                raise
            extra_headers.update(allowance.headers())
        if self.permission and not caller.can(self.permission):
            raise errors.PermissionDeniedError(
                f"This API key does not have the {self.permission} permission.",
                code="insufficient_permissions",
            )
        self.context["caller"] = caller
        return self._claim(event, context, caller)

    def _claim(
        self, event: Mapping[str, Any], context: LambdaContext, caller: Caller
    ) -> idempotency.Claim | idempotency.Saved | None:
        """A POST or PATCH with an Idempotency-Key claims it before its input is read, so input
        errors are saved and replayed like any other 4xx (docs/api.md §8); GET ignores the key.

        The claim fixes the request's recovery point: the id of what a create makes (`creates`),
        the same in every run of the request, which the handler reads through `new_id`."""
        method = str(event.get("httpMethod", "")).upper()
        if self._idempotency is None or method not in idempotency.METHODS:
            return None
        key = idempotency.key_from_event(event)
        if key is None:
            return None
        path = str(event.get("path") or "")
        request = idempotency.fingerprint(method, path, _query_lists(event), event.get("body"))
        creates = self.creates
        claim = self._idempotency().claim(
            caller.tenant,
            key,
            request,
            method=method,
            path=path,
            recovery_id=lambda: ids.new_id(creates) if creates else uuid.uuid4().hex,
            lease=idempotency.lease_ms(context),
        )
        if isinstance(claim, idempotency.Claim):
            self.context["claim"] = claim
        return claim

    def _run(
        self, event: Mapping[str, Any], context: LambdaContext, request_id: str
    ) -> dict[str, Any]:
        """Input → the work, as a proxy response whatever happens (a claim is settled on it)."""
        try:
            self.context["query"] = self._parse_query(event)
            self._parse_body(event)
            return super().resolve(event, context)
        except errors.AppError as error:
            return _proxy_response(error, request_id)
        except Exception as error:
            logger.exception("request pipeline failed")
            return _proxy_response(_fault(error), request_id)

    def _settle(self, claim: idempotency.Claim, result: Mapping[str, Any]) -> None:
        """Save a 2xx/4xx for replays; release the claim after a 5xx so a retry runs again.

        A failure here never changes the answer: the work is done (or failed) already, and an
        unsettled claim ends with its lease."""
        if self._idempotency is None:  # only a request with a store claims
            return
        status = int(result.get("statusCode", 500))
        store = self._idempotency()
        try:
            if idempotency.saves(status):
                settled = store.complete(claim, status, str(result.get("body") or ""))
            else:
                settled = store.release(claim)
        except (ClientError, BotoCoreError):
            logger.exception("could not settle the idempotency claim", extra={"status": status})
            return
        if not settled:
            logger.warning("idempotency claim was taken over before it settled")

    def _parse_query(self, event: Mapping[str, Any]) -> BaseModel | None:
        multi = event.get("multiValueQueryStringParameters") or {}
        single = event.get("queryStringParameters") or {}
        for name, values in multi.items():
            if isinstance(values, list) and len(values) > 1:
                raise errors.parameter_invalid(name, f"Invalid {name}: give it once.")
        if self.query_model is None:
            for name in single:
                raise errors.parameter_unknown(name)
            return None
        try:
            return self.query_model.model_validate(dict(single))
        except ValidationError as error:
            details = [{**detail, "loc": ("query", *detail["loc"])} for detail in error.errors()]
            raise validation_error(details) from None

    def _parse_body(self, event: Mapping[str, Any]) -> None:
        body = event.get("body")
        if body is None:
            return
        if event.get("isBase64Encoded"):  # left encoded by _normalise: not UTF-8 text
            raise errors.InvalidRequestError(
                "The request body is not valid UTF-8.", code="invalid_json"
            )
        try:
            self._parsed = (body, loads_object(body))
        except ValueError:
            raise errors.InvalidRequestError(
                "The request body is not a JSON object.", code="invalid_json"
            ) from None

    def _body(self, text: str) -> dict[str, Any]:
        # Powertools asks for the parsed body during validation: hand over the one parsed above.
        if self._parsed is not None and self._parsed[0] is text:
            return self._parsed[1]
        return loads_object(text)

    # --- exception handlers (Powertools calls these for errors raised inside routing) ---

    def _app_error(self, error: errors.AppError) -> Response[str]:
        return error_response(error, self._request_id())

    def _validation_error(self, error: RequestValidationError) -> Response[str]:
        return error_response(validation_error(list(error.errors())), self._request_id())

    def _route_not_found(self, _: PowertoolsNotFound) -> Response[str]:
        error = errors.RouteNotFoundError(
            "Unrecognized request URL or method.", code="route_not_found"
        )
        return error_response(error, self._request_id())

    def _unexpected(self, error: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return error_response(_fault(error), self._request_id())

    def _request_id(self) -> str:
        return str(self.current_event.request_context.request_id or "")


def _replay(saved: idempotency.Saved) -> dict[str, Any]:
    """The first response to an idempotent request again, marked as a replay (its body keeps the
    first request's `request_id`; the headers are this request's)."""
    return {
        "statusCode": saved.status,
        "headers": {"Content-Type": JSON, idempotency.REPLAYED_HEADER: "true"},
        "body": saved.body,
        "isBase64Encoded": False,
    }


def _given_twice(event: Mapping[str, Any], header: str) -> bool:
    """Whether the request carries `header` more than once (names are case-insensitive)."""
    multi = event.get("multiValueHeaders") or {}
    values = [
        value
        for name, given in multi.items()
        if name.lower() == header.lower() and isinstance(given, list)
        for value in given
    ]
    return len(values) > 1


def _query_lists(event: Mapping[str, Any]) -> dict[str, list[str]]:
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return {str(name): [str(value) for value in values] for name, values in multi.items()}
    single = event.get("queryStringParameters") or {}
    return {str(name): [str(value)] for name, value in single.items()}


def _proxy_response(error: errors.AppError, request_id: str) -> dict[str, Any]:
    """A REST proxy response for an error raised before routing (guards, query, body)."""
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": JSON, **error.headers},
        "body": dumps(error.body(request_id)),
        "isBase64Encoded": False,
    }


def _with_headers(result: dict[str, Any], extra: dict[str, str], request_id: str) -> dict[str, Any]:
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


# AWS's own "try again" answers, by error code (never by message text): the request did no
# harm and may be retried as it is, so they are 503 service_unavailable rather than a 500.
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        # an item is in a transaction in flight, or a resent transaction is still running
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
_UNAVAILABLE_ERRORS = (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError)


def _fault(error: Exception) -> errors.AppError:
    """The envelope for an error no handler expected: 503 when AWS says try again, else 500."""
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
    if code in _UNAVAILABLE_CODES or isinstance(error, _UNAVAILABLE_ERRORS):
        return errors.service_unavailable()
    return _internal_error()


def _internal_error() -> errors.ApiError:
    return errors.ApiError("An unexpected error occurred. Please retry later.", code="api_error")


def _normalise(event: Mapping[str, Any]) -> dict[str, Any]:
    """Bodies are JSON whatever Content-Type says (curl -d sends form encoding); an empty body on
    a POST or PATCH reads as `{}` (docs/api.md §2); base64 bodies are decoded by Powertools."""
    event = dict(event)
    method = str(event.get("httpMethod", "")).upper()
    body = event.get("body")
    if method in ("POST", "PATCH", "PUT") and (body is None or not str(body).strip()):
        event["body"] = "{}"
        event["isBase64Encoded"] = False
    elif event.get("isBase64Encoded") and body:
        import base64  # noqa: PLC0415 - rare path
        import binascii  # noqa: PLC0415

        try:
            event["body"] = base64.b64decode(str(body), validate=True).decode("utf-8")
            event["isBase64Encoded"] = False
        except (binascii.Error, UnicodeDecodeError):
            pass  # left encoded: the body check answers 400 invalid_json after the guards
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON
    event["headers"] = headers
    multi = event.get("multiValueHeaders")
    if multi:
        multi = {k: v for k, v in multi.items() if k.lower() != "content-type"}
        multi["Content-Type"] = [JSON]
        event["multiValueHeaders"] = multi
    return event


def make_app(
    *,
    permission: str | None = None,
    query: type[BaseModel] | None = None,
    authenticated: bool = True,
    limiter: Callable[[], Limiter] | None = None,
    idempotency_store: Callable[[], idempotency.IdempotencyStore] | None = None,
    creates: str | None = None,
    answers: Iterable[tuple[int, str]] = (),
) -> App:
    """The resolver for one route's Lambda.

    permission: what the route needs (`courses:read`), None for none; query: the pydantic model of
    its query string (extra="forbid"), None when it takes none; limiter: the rate limiter factory,
    by default the DynamoDB one over the function's table (built at the first request);
    idempotency_store: where Idempotency-Keys are claimed, by default the function's table
    (only touched by a POST or PATCH that carries the header); creates: the id prefix of what the
    route creates (`crs`), so an Idempotency-Key claim fixes the new object's id (`new_id`);
    answers: the (status, code) answers of the route's own work, from `errors.CATALOGUE`, for its
    reference (what every route of its kind can answer is added by the OpenAPI generator).
    """
    if authenticated:
        from learnflow import deps  # noqa: PLC0415 - deps builds clients; only at first request

        limiter = limiter or deps.limiter
        idempotency_store = idempotency_store or deps.idempotency_store
    return App(
        permission=permission,
        query=query,
        authenticated=authenticated,
        limiter=limiter,
        idempotency_store=idempotency_store,
        creates=creates,
        answers=tuple(errors.documented(status, code) for status, code in answers),
    )


def caller(app: APIGatewayRestResolver) -> Caller:
    """The authenticated caller of the request being handled."""
    return cast("Caller", app.context["caller"])


def new_id(app: App) -> str:
    """The id of the object this request creates (the app's `creates` kind): the recovery point
    its Idempotency-Key claim fixed (the same in every retry, so a retry finds what an earlier
    run made), else a new one."""
    if app.creates is None:
        raise TypeError("this app was not made with creates=<id prefix>")
    claim = app.context.get("claim")
    if isinstance(claim, idempotency.Claim) and ids.is_valid(claim.recovery_id, app.creates):
        return claim.recovery_id
    return ids.new_id(app.creates)


def recovery_token(app: APIGatewayRestResolver) -> str | None:
    """A token that is the same in every run of this request (its Idempotency-Key claim's
    recovery id), None without a key: a write marks itself with it, so a retry can tell its own
    earlier work from another request's."""
    claim = app.context.get("claim")
    return claim.recovery_id if isinstance(claim, idempotency.Claim) else None


def remaining_ms(app: APIGatewayRestResolver) -> int:
    """How long the invocation may still run, in milliseconds (Lambda ends it then)."""
    return idempotency.lease_ms(app.lambda_context)


def query(app: APIGatewayRestResolver, model: type[ModelT]) -> ModelT:
    """The request's validated query string, as the model the app was made with."""
    value = app.context.get("query")
    if not isinstance(value, model):
        raise TypeError(f"this app's query model is not {model.__name__}")
    return value
