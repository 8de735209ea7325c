"""The resolver of every route's Lambda: Powertools' REST resolver with LearnFlow's pipeline in
the contract's order (docs/api.md §5), and what handlers read from it while they run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from learnflow import errors, idempotency, ids
from learnflow.http.answers import as_app_error, envelope, validation_error
from learnflow.http.caller import Caller, caller_from_event
from learnflow.http.events import normalise, query_lists, request_id
from learnflow.http.responses import replay, with_headers
from learnflow.jsonio import MAX_DEPTH, TooDeepError, dumps, loads_object
from learnflow.observability import instrument, logger, metrics, status_class
from learnflow.ratelimit import Allowance, Limiter

ModelT = TypeVar("ModelT", bound=BaseModel)


class App(APIGatewayRestResolver):
    """Powertools' REST resolver with LearnFlow's guards, envelope and headers.

    Why `resolve` is overridden rather than the pipeline added as middleware: Powertools runs its
    own validation middleware (the body against the route's pydantic model) before any user
    middleware (`app.use`), so a middleware could neither count the request nor check its key
    and permission before input errors (docs/api.md §5), nor claim the Idempotency-Key before
    the body is read (input 400s are saved and replayed like any other 4xx). The guards and the
    claim therefore run here, before Powertools' own `resolve` routes and validates.
    """

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
        # Errors raised while Powertools routes and validates are raised on, out of its
        # `resolve`, as what the client is told (http.answers.as_app_error), so that one place
        # answers every error; left to Powertools they would become its 422 and
        # `{"message": …}` bodies, or be logged as crashes although they are answers. (Its own
        # ServiceErrors, such as the 404 of an unknown route, must leave a handler as another
        # type: Powertools catches a ServiceError a handler raises and answers it itself.)
        for raised in (errors.AppError, RequestValidationError, PowertoolsNotFound, Exception):
            self.exception_handler(raised)(_raise_as_answer)

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
        answer_id = request_id(event)
        event = normalise(event)
        headers: dict[str, str] = {}
        try:
            claim = self._guard(event, context, headers)
            if isinstance(claim, idempotency.Saved):
                return with_headers(replay(claim), headers, answer_id)
            result = self._run(event, context, answer_id)
            if claim is not None:
                self._settle(claim, result)
            return with_headers(result, headers, answer_id)
        except Exception as error:
            return with_headers(envelope(error, answer_id), headers, answer_id)
        finally:
            self._parsed = None
            self.context.clear()

    def _guard(
        self, event: Mapping[str, Any], context: LambdaContext, headers: dict[str, str]
    ) -> idempotency.Claim | idempotency.Saved | None:
        """Caller → rate limit → permission → idempotency claim; raises the first AppError."""
        if not self.authenticated:
            return None
        caller = caller_from_event(event)
        if self._limiter is not None:
            try:
                allowance: Allowance = self._limiter().hit(caller.tenant, caller.rate_limit)
            except errors.RateLimitError:
                metrics.add("RateLimitRefusals", plan=caller.plan or "unknown")
                raise
            headers.update(allowance.headers())
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
        request = idempotency.fingerprint(method, path, query_lists(event), event.get("body"))
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
        self, event: Mapping[str, Any], context: LambdaContext, answer_id: str
    ) -> dict[str, Any]:
        """Input → the work, as a proxy response whatever happens (a claim is settled on it)."""
        try:
            self.context["query"] = self._parse_query(event)
            self._parse_body(event)
            return super().resolve(event, context)
        except Exception as error:
            return envelope(error, answer_id)

    def _settle(self, claim: idempotency.Claim, result: Mapping[str, Any]) -> None:
        """Save a 2xx/4xx for replays; release the claim after a 5xx so a retry resumes it.

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
        if event.get("isBase64Encoded"):  # left encoded by `normalise`: not UTF-8 text
            raise errors.InvalidRequestError(
                "The request body is not valid UTF-8.", code="invalid_json"
            )
        try:
            self._parsed = (body, loads_object(body))
        except TooDeepError:
            raise errors.InvalidRequestError(
                f"The request body nests objects and arrays more than {MAX_DEPTH} levels deep.",
                code="invalid_json",
            ) from None
        except ValueError:
            raise errors.InvalidRequestError(
                "The request body is not a JSON object.", code="invalid_json"
            ) from None

    def _body(self, text: str) -> dict[str, Any]:
        # Powertools asks for the parsed body during validation: hand over the one parsed above.
        if self._parsed is not None and self._parsed[0] is text:
            return self._parsed[1]
        return loads_object(text)


def _raise_as_answer(error: Exception) -> NoReturn:
    raise as_app_error(error) from error


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


# --- what a handler reads of the request it is handling ---


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
