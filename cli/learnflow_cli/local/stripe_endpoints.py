"""The Stripe API's objects and endpoints as the local Stripe-compatible server serves them:
PaymentIntents (create, retrieve, list, confirm, cancel) with the test cards' outcomes, charges,
Refunds and PaymentMethods, each in test or live mode. Called with the server's lock held."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from learnflow_cli.local.stripe_lists import list_objects
from learnflow_cli.local.stripe_params import (
    JSON,
    TEST_CARDS,
    Card,
    StripeError,
    amount_param,
    boolean_param,
    choice_param,
    currency_param,
    format_amount,
    integer_param,
    list_param,
    metadata_param,
    new_id,
    param_error,
    random_string,
    reject_unknown,
    string_param,
)

_PI_CONFIRM_PARAMS = frozenset(
    {"payment_method", "off_session", "return_url", "expand", "mandate_data", "use_stripe_sdk",
     "error_on_requires_action", "payment_method_options", "receipt_email", "setup_future_usage",
     "shipping", "capture_method", "payment_method_types"}
)  # fmt: skip
_PI_CREATE_PARAMS = _PI_CONFIRM_PARAMS | {
    "amount", "currency", "confirm", "metadata", "description", "automatic_payment_methods",
    "confirmation_method", "customer", "statement_descriptor", "statement_descriptor_suffix",
    "transfer_group",
}  # fmt: skip
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")  # fmt: skip


@dataclass
class Ctx:
    """One authenticated API request."""

    api_key: str
    livemode: bool
    params: JSON
    expand: list[str]


@dataclass
class Ledger:
    """Every object the server has made, by id."""

    payment_intents: dict[str, JSON] = field(default_factory=dict)
    charges: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    payment_methods: dict[str, JSON] = field(default_factory=dict)
    cards: dict[str, Card] = field(default_factory=dict)  # payment method id → its test card


Handler = Callable[[Ctx, str], tuple[int, JSON]]


class StripeEndpoints:
    """The v1 endpoints over one `Ledger`; `route` finds the one a request is for."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.ledger = Ledger()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/payment_intents"), self._create_payment_intent),
            ("GET", re.compile(r"/v1/payment_intents"), self._list_payment_intents),
            ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), self._retrieve_payment_intent),
            ("POST", re.compile(r"/v1/payment_intents/([^/]+)/confirm"), self._confirm_endpoint),
            ("POST", re.compile(r"/v1/payment_intents/([^/]+)/cancel"), self._cancel_endpoint),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds/([^/]+)"), self._retrieve("refunds", "refund")),
            ("GET", re.compile(r"/v1/charges/([^/]+)"), self._retrieve("charges", "charge")),
            (
                "GET",
                re.compile(r"/v1/payment_methods/([^/]+)"),
                self._retrieve("payment_methods", "payment_method"),
            ),
        ]

    def reset(self) -> None:
        self.ledger = Ledger()

    def route(self, method: str, path: str) -> tuple[Handler, str]:
        """The endpoint for `method` and `path`, and the object id the path names ("" if none)."""
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return handler, match.group(1) if match.groups() else ""
        raise StripeError(
            404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})."
        )

    def _create_payment_intent(self, ctx: Ctx, _: str) -> tuple[int, JSON]:
        params = ctx.params
        reject_unknown(params, _PI_CREATE_PARAMS)
        string_param(params, "amount", required=True)  # Stripe names a missing amount first
        currency = currency_param(params)
        amount = amount_param(params, currency)
        metadata = metadata_param(params)
        description = string_param(params, "description")
        capture_method = choice_param(
            params, "capture_method", ("automatic", "automatic_async"), "automatic_async"
        )
        confirmation_method = choice_param(
            params, "confirmation_method", ("automatic", "manual"), "automatic"
        )
        confirm = boolean_param(params, "confirm")
        automatic = params.get("automatic_payment_methods")
        automatic = automatic if isinstance(automatic, dict) else None
        types = [str(t) for t in list_param(params, "payment_method_types")] or ["card"]
        off_session = _boolean_or_kind(params)
        if confirm:
            _check_confirm_params(params, automatic)
        pm_id = string_param(params, "payment_method")
        # Parameters are valid: from here on the endpoint runs and its outcome is saved.
        payment_method = self._payment_method(ctx, pm_id) if pm_id else None
        pi: JSON = {
            "id": (pi_id := new_id("pi")),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": (
                {"allow_redirects": automatic.get("allow_redirects", "always"), "enabled": True}
                if automatic and automatic.get("enabled") == "true"
                else None
            ),
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{random_string(25)}",
            "confirmation_method": confirmation_method,
            "created": int(self._clock()),
            "currency": currency,
            "customer": string_param(params, "customer"),
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": ctx.livemode,
            "metadata": metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": payment_method["id"] if payment_method else None,
            "payment_method_options": {},
            "payment_method_types": types,
            "processing": None,
            "receipt_email": string_param(params, "receipt_email"),
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": string_param(params, "statement_descriptor"),
            "statement_descriptor_suffix": string_param(params, "statement_descriptor_suffix"),
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "transfer_data": None,
            "transfer_group": string_param(params, "transfer_group"),
        }
        self.ledger.payment_intents[pi_id] = pi
        if confirm:
            return self._confirm(ctx, pi, payment_method, off_session)
        return 200, pi

    def _list_payment_intents(self, ctx: Ctx, _: str) -> tuple[int, JSON]:
        mine = [pi for pi in self.ledger.payment_intents.values() if pi["livemode"] == ctx.livemode]
        url = "/v1/payment_intents"
        return 200, list_objects(mine, ctx.params, url=url, kind="payment_intent")

    def _retrieve_payment_intent(self, ctx: Ctx, pi_id: str) -> tuple[int, JSON]:
        reject_unknown(ctx.params, frozenset({"expand", "client_secret"}))
        return 200, self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")

    def _confirm_endpoint(self, ctx: Ctx, pi_id: str) -> tuple[int, JSON]:
        reject_unknown(ctx.params, _PI_CONFIRM_PARAMS)
        off_session = _boolean_or_kind(ctx.params)
        pm_id = string_param(ctx.params, "payment_method")
        pi = self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")
        if automatic := pi["automatic_payment_methods"]:
            _check_confirm_params(
                ctx.params, {"enabled": "true", "allow_redirects": automatic["allow_redirects"]}
            )
        payment_method = self._payment_method(ctx, pm_id) if pm_id else None
        return self._confirm(ctx, pi, payment_method, off_session)

    def _cancel_endpoint(self, ctx: Ctx, pi_id: str) -> tuple[int, JSON]:
        reject_unknown(ctx.params, frozenset({"cancellation_reason", "expand"}))
        reasons = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
        reason = choice_param(ctx.params, "cancellation_reason", reasons, None)
        pi = self._find(ctx, "payment_intents", pi_id, "payment_intent", param="intent")
        if pi["status"] not in _CANCELABLE:
            raise _unexpected_state(
                pi,
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
                f" Only a PaymentIntent with one of the following statuses may be canceled:"
                f" {', '.join(_CANCELABLE)}.",
            )
        pi.update(
            status="canceled",
            canceled_at=int(self._clock()),
            cancellation_reason=reason,
            next_action=None,
        )
        return 200, pi

    def _create_refund(self, ctx: Ctx, _: str) -> tuple[int, JSON]:
        params = ctx.params
        reject_unknown(
            params,
            frozenset({"payment_intent", "charge", "amount", "reason", "metadata", "expand",
                       "instructions_email", "refund_application_fee", "reverse_transfer"}),
        )  # fmt: skip
        amount = integer_param(params, "amount")
        if amount is not None and amount < 1:
            raise param_error("Invalid positive integer", "amount", "parameter_invalid_integer")
        reasons = ("duplicate", "fraudulent", "requested_by_customer")
        reason = choice_param(params, "reason", reasons, None)
        metadata = metadata_param(params)
        pi_id, charge_id = string_param(params, "payment_intent"), string_param(params, "charge")
        if not pi_id and not charge_id:
            raise param_error(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                "payment_intent",
                "parameter_missing",
            )
        if charge_id:
            charge = self._find(ctx, "charges", charge_id, "charge", status=400)
            pi = self.ledger.payment_intents[charge["payment_intent"]]
        else:
            pi = self._find(ctx, "payment_intents", pi_id or "", "payment_intent", status=400)
            charge = self.ledger.charges.get(pi["latest_charge"] or "", {})
        if pi["status"] != "succeeded" or charge.get("status") != "succeeded":
            raise _unexpected_state(
                pi, f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
                param="charge",
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Refund amount ({format_amount(amount, charge['currency'])}) is greater than "
                f"unrefunded amount on charge ({format_amount(remaining, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund: JSON = {
            "id": (refund_id := new_id("re")),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "created": int(self._clock()),
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "livemode": ctx.livemode,
            "metadata": metadata,
            "payment_intent": pi["id"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.ledger.refunds[refund_id] = refund
        return 200, refund

    def _retrieve(self, table: str, kind: str) -> Handler:
        def retrieve(ctx: Ctx, object_id: str) -> tuple[int, JSON]:
            reject_unknown(ctx.params, frozenset({"expand"}))
            return 200, self._find(ctx, table, object_id, kind, param="id")

        return retrieve

    # -- the payment itself ------------------------------------------------------------------

    def _confirm(
        self, ctx: Ctx, pi: JSON, payment_method: JSON | None, off_session: bool
    ) -> tuple[int, JSON]:
        if pi["status"] not in ("requires_payment_method", "requires_confirmation",
                                "requires_action"):  # fmt: skip
            raise _unexpected_state(
                pi,
                f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
            )
        if payment_method is None and pi["payment_method"]:
            payment_method = self.ledger.payment_methods[pi["payment_method"]]
        if payment_method is None:
            raise _unexpected_state(
                pi,
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "To confirm the PaymentIntent with a payment method, pass `payment_method`.",
            )
        card = self.ledger.cards[payment_method["id"]]
        pi.update(payment_method=payment_method["id"], last_payment_error=None, next_action=None)
        if card.needs_authentication and not off_session:
            pi.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                },
            )
            return 200, pi
        code = "authentication_required" if card.needs_authentication else "card_declined"
        charge = self._charge(ctx, pi, payment_method, card, code)
        pi["latest_charge"] = charge["id"]
        if card.decline_code is None:
            pi.update(status="succeeded", amount_received=pi["amount"])
            return 200, pi
        failure: JSON = {
            "charge": charge["id"],
            "code": code,
            "decline_code": card.decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "message": card.message,
            "payment_method": copy.deepcopy(payment_method),
            "type": "card_error",
        }
        # A failed attempt detaches the payment method, as Stripe's does.
        pi.update(status="requires_payment_method", payment_method=None, last_payment_error=failure)
        extra = {name: failure[name] for name in ("charge", "decline_code", "payment_method")}
        extra["payment_intent"] = copy.deepcopy(pi)
        raise StripeError(402, "card_error", card.message, code=code, extra=extra)

    def _charge(
        self, ctx: Ctx, pi: JSON, payment_method: JSON, card: Card, failure_code: str
    ) -> JSON:
        failed = card.decline_code is not None
        charge: JSON = {
            "id": (charge_id := new_id("ch")),
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": 0 if failed else pi["amount"],
            "amount_refunded": 0,
            "captured": not failed,
            "created": int(self._clock()),
            "currency": pi["currency"],
            "description": pi["description"],
            "failure_code": failure_code if failed else None,
            "failure_message": card.message or None,
            "livemode": ctx.livemode,
            "metadata": dict(pi["metadata"]),
            "outcome": {
                "network_status": "declined_by_network" if failed else "approved_by_network",
                "reason": card.decline_code,
                "risk_level": "normal",
                "seller_message": "The bank declined." if failed else "Payment complete.",
                "type": "issuer_declined" if failed else "authorized",
            },
            "paid": not failed,
            "payment_intent": pi["id"],
            "payment_method": payment_method["id"],
            "payment_method_details": {"card": dict(payment_method["card"]), "type": "card"},
            "refunded": False,
            "status": "failed" if failed else "succeeded",
        }  # fmt: skip
        self.ledger.charges[charge_id] = charge
        return charge

    def _payment_method(self, ctx: Ctx, pm_id: str) -> JSON:
        card = TEST_CARDS.get(pm_id)
        if card is None:
            return self._find(
                ctx, "payment_methods", pm_id, "PaymentMethod", status=400, param="payment_method"
            )
        # Like Stripe, each use of a `pm_card_*` shortcut makes a new PaymentMethod.
        payment_method: JSON = {
            "id": (created_id := new_id("pm")),
            "object": "payment_method",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {"brand": card.brand, "country": "US", "exp_month": 12,
                     "exp_year": time.gmtime(self._clock()).tm_year + 3, "funding": "credit",
                     "last4": card.last4},
            "created": int(self._clock()),
            "customer": None,
            "livemode": ctx.livemode,
            "metadata": {},
            "type": "card",
        }  # fmt: skip
        self.ledger.payment_methods[created_id] = payment_method
        self.ledger.cards[created_id] = card
        return payment_method

    def _find(
        self,
        ctx: Ctx,
        table: str,
        object_id: str,
        kind: str,
        *,
        status: int = 404,
        param: str = "",
    ) -> JSON:
        found: JSON | None = getattr(self.ledger, table).get(object_id)
        if found is None or found["livemode"] != ctx.livemode:  # other mode: not there
            raise StripeError(
                status,
                "invalid_request_error",
                f"No such {kind}: '{object_id}'",
                code="resource_missing",
                param=param or kind,
            )
        return found

    def expand(self, body: JSON, expand: list[str]) -> JSON:
        """A copy of `body` with the ids named in `expand` replaced by their objects."""
        body = copy.deepcopy(body)
        tables = {"latest_charge": "charges", "charge": "charges", "payment_intent":
                  "payment_intents", "payment_method": "payment_methods"}  # fmt: skip
        for name in expand:
            value = body.get(name)
            if name in tables and isinstance(value, str):
                body[name] = copy.deepcopy(getattr(self.ledger, tables[name]).get(value, value))
        return body


def _check_confirm_params(params: JSON, automatic: JSON | None) -> None:
    # Stripe refuses to confirm an intent that allows redirect-based methods without a return_url.
    if (
        automatic
        and automatic.get("enabled") == "true"
        and automatic.get("allow_redirects", "always") != "never"
        and not params.get("return_url")
    ):
        raise param_error(
            "A `return_url` must be specified because this Payment Intent is configured to "
            "automatically accept the payment methods enabled in the Dashboard, some of which may "
            "require a full page redirect to succeed. If you do not want to accept redirect-based "
            "payment methods, set `automatic_payment_methods[enabled]` to `true` and "
            "`automatic_payment_methods[allow_redirects]` to `never`.",
            "return_url",
        )


def _boolean_or_kind(params: JSON) -> bool:
    # `off_session` is a boolean or, in older integrations, "one_off" / "recurring".
    if params.get("off_session") in ("one_off", "recurring"):
        return True
    return boolean_param(params, "off_session")


def _unexpected_state(pi: JSON, message: str) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        message,
        code="payment_intent_unexpected_state",
        extra={"payment_intent": copy.deepcopy(pi)},
    )
