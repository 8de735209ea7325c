"""What a client sends the local Stripe-compatible server, read as Stripe reads it: form-encoded
parameters (`metadata[k]=v`), their types, amounts and currencies with Stripe's limits, the error
shape of every refusal (`StripeError`), and the test cards behind the `pm_card_*` shortcuts."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

MAX_AMOUNT = 99_999_999  # Stripe's ceiling: 999,999.99 in a two-decimal currency
_ALPHABET = string.ascii_letters + string.digits
_FORM_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def _codes(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Stripe's presentment currencies, its minimum charge amounts (minor units) and the currencies
# without minor units, as its documentation lists them (used for messages and minimums only).
CURRENCIES = _codes(
    "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp "
    "byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip "
    "gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt "
    "lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr "
    "nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd "
    "std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar "
    "zmw"
)
MINIMUM_AMOUNTS = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
ZERO_DECIMAL = _codes("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf")
THREE_DECIMAL = _codes("bhd jod kwd omr tnd")


@dataclass(frozen=True)
class Card:
    """A Stripe test card behind a `pm_card_*` shortcut, and how its charges end."""

    brand: str
    last4: str
    decline_code: str | None = None
    message: str = ""
    needs_authentication: bool = False


TEST_CARDS = {
    "pm_card_visa": Card("visa", "4242"),
    "pm_card_mastercard": Card("mastercard", "4444"),
    "pm_card_chargeDeclined": Card("visa", "0002", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": Card(
        "visa", "9995", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_authenticationRequired": Card(
        "visa",
        "3184",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        needs_authentication=True,
    ),
}


class StripeError(Exception):
    """An answer in Stripe's error shape; `saved` is False when no endpoint began its work."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.saved = status, saved
        self.error: JSON = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
            self.error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.error["param"] = param
        self.error.update(extra or {})


def param_error(message: str, param: str, code: str | None = None) -> StripeError:
    # Parameter validation runs before any endpoint, so Stripe saves no idempotent result for it.
    return StripeError(400, "invalid_request_error", message, code=code, param=param, saved=False)


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_string(length)}"


def format_amount(amount: int, currency: str) -> str:
    decimals = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{amount / 10**decimals:,.{decimals}f} {currency}"


def parse_form(pairs: list[tuple[str, str]]) -> JSON:
    """`metadata[k]=v&expand[0]=x` → `{"metadata": {"k": "v"}, "expand": {"0": "x"}}`."""
    result: JSON = {}
    for raw_key, value in pairs:
        match = _FORM_KEY_RE.fullmatch(raw_key)
        if match is None:
            raise param_error(f"Invalid parameter name: {raw_key}", raw_key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = result
        for depth, part in enumerate(path):
            name = str(len(node)) if part == "" else part  # `expand[]=x` appends
            if depth == len(path) - 1:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise param_error(f"Invalid hash: {raw_key}", path[0])
                node = child
    return result


def reject_unknown(params: JSON, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise param_error(f"Received unknown parameter: {name}", name, "parameter_unknown")


def string_param(params: JSON, name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise param_error(f"Missing required param: {name}.", name, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise param_error(f"Invalid string: {value!r}", name, "parameter_invalid_string")
    return value


def boolean_param(params: JSON, name: str) -> bool:
    value = string_param(params, name)
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise param_error(f"Invalid boolean: {value}", name, "parameter_invalid_boolean")


def integer_param(params: JSON, name: str) -> int | None:
    value = string_param(params, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?[0-9]+", value):
        raise param_error(f"Invalid integer: {value}", name, "parameter_invalid_integer")
    return int(value)


def choice_param(
    params: JSON, name: str, allowed: tuple[str, ...], default: str | None
) -> str | None:
    value = string_param(params, name)
    if value is None:
        return default
    if value not in allowed:
        raise param_error(
            f"Invalid {name}: must be one of {', '.join(allowed)}", name, "parameter_invalid_string"
        )
    return value


def list_param(params: JSON, name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    raise param_error(f"Invalid array: {name}", name, "parameter_invalid_array")


def metadata_param(params: JSON) -> dict[str, str]:
    value = params.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise param_error("Invalid hash: metadata", "metadata")
    # Stripe's limits; an empty value unsets the key.
    cleaned = {str(k): v for k, v in value.items() if v != ""}
    if len(cleaned) > 50:
        raise param_error("Metadata can have at most 50 keys.", "metadata")
    for key, item in cleaned.items():
        if not isinstance(item, str):
            raise param_error(f"Invalid string: {item!r}", f"metadata[{key}]")
        if len(key) > 40 or len(item) > 500:
            raise param_error(
                "Metadata keys are at most 40 characters and values at most 500.",
                f"metadata[{key}]",
            )
    return cleaned


def amount_param(params: JSON, currency: str) -> int:
    string_param(params, "amount", required=True)
    amount = integer_param(params, "amount") or 0
    if amount < 0:
        raise param_error("Invalid positive integer", "amount", "parameter_invalid_integer")
    minimum = MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        raise param_error(
            f"Amount must be at least {format_amount(minimum, currency)}",
            "amount",
            "amount_too_small",
        )
    if amount > MAX_AMOUNT:
        raise param_error(
            f"Amount must be no more than {format_amount(MAX_AMOUNT, currency)}",
            "amount",
            "amount_too_large",
        )
    return amount


def currency_param(params: JSON) -> str:
    raw = string_param(params, "currency", required=True)
    currency = (raw or "").lower()
    if currency not in CURRENCIES:
        raise param_error(f"Invalid currency: {raw}.", "currency")
    return currency
