"""The error hierarchy: every failure a client can see, mapped to the envelope of docs/api.md §6."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final


class AppError(Exception):
    """An error the API reports to its caller: a status, a type, a stable code and maybe a param."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body: `{"error": {type, code, param?, message, request_id, …extra}}`."""
        error: dict[str, Any] = {"type": self.type}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        error["message"] = self.message
        error["request_id"] = request_id
        return {"error": error}


class InvalidRequestError(AppError):
    status = 400
    type = "invalid_request_error"
    default_code = "parameter_invalid"


class IdempotencyKeyReusedError(AppError):
    status = 400
    type = "idempotency_error"
    default_code = "idempotency_key_reused"


class AuthenticationError(AppError):
    status = 401
    type = "authentication_error"
    default_code = "api_key_invalid"


class CardError(AppError):
    status = 402
    type = "card_error"
    default_code = "card_declined"


class PermissionDeniedError(AppError):
    status = 403
    type = "permission_error"
    default_code = "insufficient_permissions"


class NotFoundError(AppError):
    status = 404
    type = "invalid_request_error"
    default_code = "resource_missing"


class RouteNotFoundError(AppError):
    status = 404
    type = "invalid_request_error"
    default_code = "route_not_found"


class ConflictError(AppError):
    status = 409
    type = "invalid_request_error"


class IdempotencyInProgressError(AppError):
    status = 409
    type = "idempotency_error"
    default_code = "idempotency_request_in_progress"


class RateLimitError(AppError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ApiError(AppError):
    """A fault of ours: the message is generic and never carries internals."""

    status = 500
    type = "api_error"


class NotImplementedYetError(AppError):
    """A route the template declares whose behaviour has not been built yet."""

    status = 501
    type = "api_error"
    default_code = "not_implemented"


class PaymentProviderUnavailableError(AppError):
    status = 502
    type = "api_error"
    default_code = "payment_provider_unavailable"


class ServiceUnavailableError(AppError):
    status = 503
    type = "api_error"
    default_code = "service_unavailable"


# Seconds a client is asked to wait before retrying a 503 (the conditions behind one pass in
# milliseconds to seconds; a client may retry sooner with the same Idempotency-Key).
RETRY_AFTER_SECONDS = 1


def service_unavailable(
    message: str = "The service is briefly unavailable. It is safe to retry.",
) -> ServiceUnavailableError:
    """A transient fault of ours (throttling, a conflict that outlasted its retries, a slow
    dependency): nothing is saved, and the same request may be retried as it is."""
    return ServiceUnavailableError(
        message, code="service_unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def parameter_missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required parameter: {param}.", code="parameter_missing", param=param
    )


def parameter_invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="parameter_invalid", param=param)


def parameter_unknown(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Received unknown parameter: {param}.", code="parameter_unknown", param=param
    )


def resource_missing(param: str, object_id: str) -> InvalidRequestError:
    """An id named in the body or a cursor that does not exist for this tenant (400, not 404)."""
    return InvalidRequestError(
        f"No such object: '{object_id}'.", code="resource_missing", param=param
    )


def not_found(kind: str, object_id: str) -> NotFoundError:
    return NotFoundError(f"No such {kind}: '{object_id}'.", param="id")


# --- the catalogue: every (status, code) the API answers, once, for its reference ---


@dataclass(frozen=True, slots=True)
class Documented:
    """One answer a client can get: its status, type and code, and when it happens."""

    status: int
    type: str
    code: str
    when: str


CATALOGUE: Final[tuple[Documented, ...]] = (
    Documented(400, "invalid_request_error", "parameter_missing", "A required field is absent."),
    Documented(400, "invalid_request_error", "parameter_invalid", "A field has a wrong value."),
    Documented(
        400,
        "invalid_request_error",
        "parameter_unknown",
        "A field or query parameter the route does not take.",
    ),
    Documented(
        400,
        "invalid_request_error",
        "invalid_json",
        "The body is not a JSON object (or not UTF-8, or names a key twice).",
    ),
    Documented(
        400,
        "invalid_request_error",
        "resource_missing",
        "An id in the body or a cursor names nothing of this account and mode.",
    ),
    Documented(
        400, "invalid_request_error", "course_not_published", "The course is a draft or archived."
    ),
    Documented(
        400,
        "invalid_request_error",
        "invalid_status_transition",
        "The status cannot change that way.",
    ),
    Documented(
        400,
        "idempotency_error",
        "idempotency_key_reused",
        "The Idempotency-Key was first used with another request.",
    ),
    Documented(
        401,
        "authentication_error",
        "api_key_invalid",
        "The key is missing, malformed, unknown, revoked or expired.",
    ),
    Documented(
        402, "card_error", "card_declined", "The card was declined; `decline_code` says why."
    ),
    Documented(
        402,
        "card_error",
        "authentication_required",
        "The card needs its holder to authenticate, and no one is present.",
    ),
    Documented(
        403,
        "permission_error",
        "insufficient_permissions",
        "The restricted key lacks the route's permission.",
    ),
    Documented(
        403,
        "permission_error",
        "request_blocked",
        "The firewall in front of the deployed API blocked the request (its rules or rate).",
    ),
    Documented(
        404,
        "invalid_request_error",
        "resource_missing",
        "No such object for this account and mode.",
    ),
    Documented(404, "invalid_request_error", "route_not_found", "No such route or method."),
    Documented(
        409,
        "invalid_request_error",
        "already_enrolled",
        "The student has an active enrollment in the course.",
    ),
    Documented(
        409,
        "invalid_request_error",
        "email_taken",
        "Another student of this account and mode has the address.",
    ),
    Documented(
        409,
        "idempotency_error",
        "idempotency_request_in_progress",
        "A request with the Idempotency-Key is still running.",
    ),
    Documented(
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        "Over the plan's requests this minute; wait for Retry-After.",
    ),
    Documented(
        500,
        "api_error",
        "api_error",
        "A fault of ours; safe to retry with the same Idempotency-Key.",
    ),
    Documented(
        502,
        "api_error",
        "payment_provider_unavailable",
        "The payment provider failed; safe to retry with the same Idempotency-Key.",
    ),
    Documented(
        503,
        "api_error",
        "payment_provider_unavailable",
        "The payment provider did not answer; safe to retry with the same Idempotency-Key.",
    ),
    Documented(
        503,
        "api_error",
        "service_unavailable",
        "A transient fault; safe to retry with the same Idempotency-Key after Retry-After.",
    ),
)


def documented(status: int, code: str) -> Documented:
    """The catalogue's entry for `code` answered with `status` (KeyError if there is none)."""
    for entry in CATALOGUE:
        if (entry.status, entry.code) == (status, code):
            return entry
    raise KeyError((status, code))
