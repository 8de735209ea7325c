"""Payments through Stripe: a PaymentIntent per paid enrollment, a refund per cancellation.

Only the two functions that pay or refund import this module, and it imports the `stripe` SDK
only when it first builds a client: every other function's cold start stays without it.

Only Stripe's documented API is used (PaymentIntents create with `confirm` and `off_session`,
Refunds create), at a pinned API version, so the same code runs against Stripe itself, the
local Stripe-compatible server and any faithful fake. Every call carries an idempotency key
derived from the enrollment id, so a retry of any kind (the SDK's own, a resumed request, a
recovered claim) gets Stripe's first answer back instead of a second charge or refund.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from learnflow import errors
from learnflow.config import get_settings
from learnflow.observability import trace_requests
from learnflow.tenancy import Mode

if TYPE_CHECKING:
    import stripe

# The Stripe API version every request asks for (what stripe 16.1 was built against); a new
# version is adopted deliberately, with the tests, never by a dashboard setting.
STRIPE_API_VERSION: Final = "2026-10-28.endive"
# Stripe answers in well under a second; these keep a charge with one retry (the SDK resends
# with the same idempotency key) inside the paying functions' 28 s timeout.
CONNECT_TIMEOUT_SECONDS: Final = 2.0
READ_TIMEOUT_SECONDS: Final = 8.0
NETWORK_RETRIES: Final = 1

PaymentIntentStatus = Literal["succeeded", "processing", "requires_action", "other"]


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One enrollment's charge: everything needed to make it, or replay it, exactly."""

    enrollment_id: str
    account_id: str
    student_id: str
    course_id: str
    amount: int  # minor units
    currency: str  # lower-case
    payment_method: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.enrollment_id}-charge"


@dataclass(frozen=True, slots=True)
class Charged:
    payment_intent_id: str
    status: PaymentIntentStatus
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Refunded:
    refund_id: str
    amount: int


class PaymentDeclinedError(Exception):
    """The provider refused the card (402): nothing was charged."""

    def __init__(self, message: str, *, code: str, decline_code: str | None) -> None:
        super().__init__(message)
        self.message, self.code, self.decline_code = message, code, decline_code


class PaymentUnavailableError(Exception):
    """No answer from the provider (a timeout, the network, its own 5xx or rate limit): the
    charge may or may not have been made; replaying it with its idempotency key tells which.
    `status` is the answer LearnFlow gives: 503 for no answer at all, 502 for a provider fault."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class PaymentRejectedError(Exception):
    """The provider refused the request itself (a 4xx other than a decline): nothing was
    charged. `param` names the request field to blame, when the client's input is at fault."""

    def __init__(self, message: str, *, param: str | None) -> None:
        super().__init__(message)
        self.param = param


class PaymentGateway(Protocol):
    def charge(self, request: ChargeRequest) -> Charged:
        """Charge at once, off-session; raises the three errors above."""
        ...

    def refund(self, payment_intent_id: str, *, idempotency_key: str) -> Refunded:
        """Refund the whole payment; raises PaymentUnavailableError or PaymentRejectedError."""
        ...


class StripeGateway:
    """PaymentGateway over an injected `stripe.StripeClient` (never the global `stripe.api_key`)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def charge(self, request: ChargeRequest) -> Charged:
        import stripe  # noqa: PLC0415 - loaded with the client, see the module's docstring

        try:
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": request.amount,
                    "currency": request.currency,
                    "payment_method": request.payment_method,
                    "confirm": True,
                    # No customer is present to authenticate: a card that needs it is declined.
                    "off_session": True,
                    # No page to redirect a customer to: only methods that need no redirect.
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "metadata": {
                        "account_id": request.account_id,
                        "enrollment_id": request.enrollment_id,
                        "course_id": request.course_id,
                        "student_id": request.student_id,
                    },
                },
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as error:
            raise _declined(error) from None
        except stripe.StripeError as error:
            raise _failure(error, param_names={"payment_method": "payment_method_id"}) from None
        status = str(intent.status)
        return Charged(
            payment_intent_id=str(intent.id),
            status=status if status in ("succeeded", "processing", "requires_action") else "other",  # type: ignore[arg-type]
            amount=int(intent.amount),
            currency=str(intent.currency),
        )

    def refund(self, payment_intent_id: str, *, idempotency_key: str) -> Refunded:
        import stripe  # noqa: PLC0415

        try:
            refund = self._client.v1.refunds.create(
                params={"payment_intent": payment_intent_id},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise _failure(error, param_names={}) from None
        return Refunded(refund_id=str(refund.id), amount=int(refund.amount))


def _declined(error: Any) -> PaymentDeclinedError:
    detail = getattr(error, "error", None)
    code = str(getattr(error, "code", None) or "card_declined")
    decline_code = getattr(detail, "decline_code", None)
    message = str(getattr(error, "user_message", None) or "The card was declined.")
    return PaymentDeclinedError(message, code=code, decline_code=decline_code)


def _failure(error: Any, *, param_names: dict[str, str]) -> Exception:
    """Stripe's other errors as ours: no answer or a fault of Stripe's → unavailable (the charge
    may exist); a refusal of the request → rejected (it does not)."""
    import stripe  # noqa: PLC0415

    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return PaymentUnavailableError("The payment provider did not answer.", status=503)
    if isinstance(error, stripe.APIError | stripe.IdempotencyError):
        return PaymentUnavailableError("The payment provider failed.", status=502)
    status = getattr(error, "http_status", None)
    if isinstance(status, int) and status >= 500:
        return PaymentUnavailableError("The payment provider failed.", status=502)
    param = getattr(error, "param", None)
    return PaymentRejectedError(
        str(getattr(error, "user_message", None) or "The payment provider refused the request."),
        param=param_names.get(str(param)) if param else None,
    )


# --- errors as the API reports them ---


def declined(error: PaymentDeclinedError) -> errors.CardError:
    """402 `card_error` with Stripe's `code` and `decline_code`, as Stripe reports them."""
    extra = {"decline_code": error.decline_code} if error.decline_code else {}
    return errors.CardError(error.message, code=error.code, extra=extra)


def unavailable(error: PaymentUnavailableError) -> errors.AppError:
    """502/503 `payment_provider_unavailable`: safe to retry with the same Idempotency-Key."""
    kind = (
        errors.ServiceUnavailableError
        if error.status == 503
        else errors.PaymentProviderUnavailableError
    )
    return kind(
        "The payment provider could not be reached. It is safe to retry.",
        code="payment_provider_unavailable",
        headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
    )


def rejected(error: PaymentRejectedError) -> errors.AppError:
    """The provider refused the request: the client's input (400, naming it) or a fault of
    ours (502)."""
    if error.param:
        return errors.parameter_invalid(error.param, f"Invalid {error.param}: {error}")
    return errors.PaymentProviderUnavailableError(
        "The payment provider refused the request.", code="payment_provider_unavailable"
    )


# --- clients: one per mode and container ---

_lock = threading.Lock()


@lru_cache(maxsize=2)
def gateway(mode: Mode) -> PaymentGateway:
    """The gateway for requests made with `mode`'s API keys (Stripe's test or live secret),
    built once per container at first use."""
    import stripe  # noqa: PLC0415

    settings = get_settings()
    secret = _secret(mode)
    trace_requests()  # every Stripe call an X-Ray subsegment (a no-op where tracing is off)
    with _lock:  # the SDK's client construction is not documented as thread-safe
        client = stripe.StripeClient(
            secret,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else {},
            max_network_retries=NETWORK_RETRIES,
            http_client=stripe.RequestsClient(
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
            ),
        )
    return StripeGateway(client)


def _secret(mode: Mode) -> str:
    """The Stripe secret for `mode`: given directly (local stack, tests), or read once from SSM
    (a SecureString) through Powertools parameters."""
    settings = get_settings()
    direct = settings.stripe_secret_keys.get(mode)
    if direct:
        return direct
    name = settings.stripe_secret_parameters.get(mode)
    if not name:
        raise errors.ApiError("Payments are not configured.", code="api_error")
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    return str(parameters.get_parameter(name, decrypt=True, max_age=24 * 3600))


def reset() -> None:
    """Forget the clients (tests, after changing settings)."""
    gateway.cache_clear()
