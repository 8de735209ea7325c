"""The error hierarchy maps every row of docs/api.md §6 to its status, type and code."""

from __future__ import annotations

import pytest

from learnflow import errors

INVALID = "invalid_request_error"
IDEM = "idempotency_error"


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (errors.parameter_missing("title"), 400, INVALID, "parameter_missing"),
        (
            errors.parameter_invalid("limit", "bad"),
            400,
            INVALID,
            "parameter_invalid",
        ),
        (errors.parameter_unknown("x"), 400, INVALID, "parameter_unknown"),
        (
            errors.resource_missing("instructor_id", "ins_1"),
            400,
            INVALID,
            "resource_missing",
        ),
        (errors.IdempotencyKeyReusedError("m"), 400, IDEM, "idempotency_key_reused"),
        (errors.AuthenticationError("m"), 401, "authentication_error", "api_key_invalid"),
        (errors.CardError("m"), 402, "card_error", "card_declined"),
        (errors.PermissionDeniedError("m"), 403, "permission_error", "insufficient_permissions"),
        (errors.not_found("course", "crs_1"), 404, INVALID, "resource_missing"),
        (errors.RouteNotFoundError("m"), 404, INVALID, "route_not_found"),
        (
            errors.ConflictError("m", code="email_taken"),
            409,
            INVALID,
            "email_taken",
        ),
        (
            errors.IdempotencyInProgressError("m"),
            409,
            IDEM,
            "idempotency_request_in_progress",
        ),
        (errors.RateLimitError("m"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (errors.ApiError("m"), 500, "api_error", None),
        (errors.NotImplementedYetError("m"), 501, "api_error", "not_implemented"),
        (
            errors.PaymentProviderUnavailableError("m"),
            502,
            "api_error",
            "payment_provider_unavailable",
        ),
        (errors.ServiceUnavailableError("m"), 503, "api_error", "service_unavailable"),
    ],
)
def test_error_maps_to_contract_row(
    error: errors.AppError, status: int, type_: str, code: str | None
) -> None:
    body = error.body("req-1")["error"]
    assert error.status == status
    assert body["type"] == type_
    assert body.get("code") == code
    assert body["request_id"] == "req-1"
    assert body["message"]


def test_param_is_present_only_when_a_field_is_to_blame() -> None:
    assert errors.parameter_missing("title").body("r")["error"]["param"] == "title"
    assert "param" not in errors.AuthenticationError("m").body("r")["error"]


def test_extra_fields_join_the_envelope_before_the_message() -> None:
    error = errors.CardError("Declined.", extra={"decline_code": "insufficient_funds"})
    body = error.body("r")["error"]
    assert body["decline_code"] == "insufficient_funds"
    assert list(body)[-2:] == ["message", "request_id"]


def test_headers_travel_with_the_error() -> None:
    error = errors.RateLimitError("slow down", headers={"Retry-After": "7"})
    assert error.headers == {"Retry-After": "7"}
