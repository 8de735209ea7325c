"""The one place that turns an exception into an answer in the error envelope (docs/api.md §6):
our own errors as they are, validation failures as 400 with `param`, AWS's "try again" as 503,
and anything else as a logged, generic 500."""

from __future__ import annotations

from typing import Any, Final

from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from learnflow import errors
from learnflow.http.events import JSON
from learnflow.jsonio import dumps
from learnflow.observability import logger

# AWS's own "try again" answers, by error code (never by message text): the request did no
# harm and may be retried as it is, so they are 503 service_unavailable rather than a 500.
_UNAVAILABLE_CODES: Final = frozenset(
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
_UNAVAILABLE_ERRORS: Final = (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError)


def envelope(error: Exception, request_id: str) -> dict[str, Any]:
    """The REST proxy response for `error`: its status, headers and the envelope."""
    answer = as_app_error(error)
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": JSON, **answer.headers},
        "body": dumps(answer.body(request_id)),
        "isBase64Encoded": False,
    }


def as_app_error(error: Exception) -> errors.AppError:
    """What a client is told of `error`."""
    if isinstance(error, errors.AppError):
        return error
    if isinstance(error, RequestValidationError):
        return validation_error(list(error.errors()))
    if isinstance(error, PowertoolsNotFound):
        return errors.RouteNotFoundError(
            "Unrecognized request URL or method.", code="route_not_found"
        )
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
    if code in _UNAVAILABLE_CODES or isinstance(error, _UNAVAILABLE_ERRORS):
        logger.warning("a transient AWS fault answered 503", extra={"code": code})
        return errors.service_unavailable()
    logger.exception("unexpected error")  # the log has the traceback; the client never does
    return errors.ApiError("An unexpected error occurred. Please retry later.", code="api_error")


def error_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """`("body", "metadata", "k")` → `metadata`; `("query", "limit")` → `limit`."""
    names = [str(part) for part in loc[1:] if not isinstance(part, int)]
    return names[0] if names else None


def validation_error(details: list[dict[str, Any]] | Any) -> errors.AppError:
    """The first pydantic/Powertools validation error as a 400 naming its field, never a 422."""
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
