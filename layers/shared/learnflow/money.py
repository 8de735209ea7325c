"""Exact money: the currencies Stripe accepts, their decimals, minimums, and minor-unit maths."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "SUPPORTED_CODES",
    "Currency",
    "PriceError",
    "PriceReason",
    "UnknownCurrencyError",
    "check_price",
    "currency",
    "decimals",
    "from_minor_units",
    "is_supported",
    "normalize",
    "stripe_currency",
    "to_minor_units",
]

# Source for everything below: https://docs.stripe.com/currencies ("Supported presentment
# currencies", "Minor units in API amounts", "Special cases", "Minimum and maximum charge
# amounts"), checked against ISO 4217's minor-unit column.
#
# What the table mirrors, and where it differs:
# - The presentment list is the one Stripe shows a US account (which includes XCG, the Caribbean
#   guilder that replaces ANG; both are listed while the two circulate), plus the three-decimal
#   currencies Stripe documents separately (BHD, JOD, KWD, OMR, TND). Some of these are not
#   available to every account country or with American Express; Stripe rejects those at charge
#   time, which no offline table can know.
# - A price's allowed decimals (`exponent`) is the smaller of ISO 4217's minor unit and what
#   Stripe can charge. Stripe's `amount` exponent (`stripe_exponent`) is what its API expects.
#   They differ only for:
#     ISK  ISO 0. Stripe: "transitioned to zero-decimal, but backwards compatibility requires you
#          to represent it as a two-decimal value, where the decimal amount is always 00"
#          (5 ISK -> amount 500). Price exponent 0, Stripe exponent 2.
#     UGX  Stripe lists it among the zero-decimal currencies AND, under special cases, with the
#          same rule as ISK (5 UGX -> amount 500; Stripe rejects amounts not divisible by 100).
#          The special case is what its API enforces: price exponent 0, Stripe exponent 2.
#     MGA  ISO 4217 says 2; Stripe treats it as zero-decimal, so 0 decimals is all it can charge.
# - HUF and TWD are zero-decimal at Stripe for payouts only; charges take two decimals, as here.
# - Three-decimal currencies: Stripe asks that the last digit of `amount` be 0 ("5.124 KWD must be
#   rounded to 5120 or 5130"). The API contract gives them 3 decimals (ISO 4217), so 1.234 KWD is
#   a valid price and converts to 1234 exactly; a charge of it may be refused by Stripe.

# fmt: off
_ZERO_DECIMAL: Final = frozenset((
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
))
_THREE_DECIMAL: Final = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))
# Whole units only, but Stripe's `amount` still carries two (always zero) decimals.
_WHOLE_UNITS_SENT_AS_TWO_DECIMALS: Final = frozenset(("ISK", "UGX"))

_PRESENTMENT: Final = frozenset((
    "USD", "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
    "HTG", "HUF", "IDR", "ILS", "INR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "STD", "SZL",
    "THB", "TJS", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "UYU", "UZS", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
))
# fmt: on

# Stripe's "Minimum and maximum charge amounts" table, verbatim, in major units. Stripe states it
# per settlement currency; the contract applies it to the price's own currency. (BGN is still
# listed although Bulgaria moved to the euro in 2026.)
_STRIPE_MINIMUMS: Final[dict[str, Decimal]] = {
    "USD": Decimal("0.50"),
    "AED": Decimal("2.00"),
    "AUD": Decimal("0.50"),
    "BGN": Decimal("1.00"),
    "BRL": Decimal("0.50"),
    "CAD": Decimal("0.50"),
    "CHF": Decimal("0.50"),
    "CZK": Decimal("15.00"),
    "DKK": Decimal("2.50"),
    "EUR": Decimal("0.50"),
    "GBP": Decimal("0.30"),
    "HKD": Decimal("4.00"),
    "HUF": Decimal("175.00"),
    "INR": Decimal("0.50"),
    "JPY": Decimal("50"),
    "MXN": Decimal("10"),
    "MYR": Decimal("2"),
    "NOK": Decimal("3.00"),
    "NZD": Decimal("0.50"),
    "PLN": Decimal("2.00"),
    "RON": Decimal("2.00"),
    "SEK": Decimal("3.00"),
    "SGD": Decimal("0.50"),
    "THB": Decimal("10"),
}
# For every other currency Stripe's minimum is "the settlement currency's minimum after
# conversion", which needs an exchange rate and the account's settlement currency: not computable
# offline. The floor used instead is the smallest price the currency can express (one unit of its
# last allowed decimal): it rejects nothing Stripe could accept, and Stripe still applies its
# converted minimum when the charge is made.

# Stripe's maximum: `amount` has at most 8 digits, 9 for INR and 12 for IDR. Card payments allow
# more for LBP, COP, HUF and JPY, but not every card brand does (JCB/Diners/Discover in Japan stay
# at 8), so the general limit is used for all.
_DEFAULT_MAX_DIGITS: Final = 8
_MAX_DIGITS: Final[dict[str, int]] = {"INR": 9, "IDR": 12}

# normalize() writes plain digits; beyond these bounds that would be absurdly long (a huge
# exponent could ask for billions of zeros) or, below 1e-6, Decimal's str() switches to E-notation.
_NORMALIZE_MAX_ADJUSTED: Final = 30
_PLAIN_MIN_ADJUSTED: Final = -6

PriceReason = Literal[
    "negative", "not_finite", "too_many_decimals", "below_minimum", "above_maximum"
]


class UnknownCurrencyError(ValueError):
    """A currency code that is not one Stripe accepts."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"Unsupported currency: {str(code)[:16]!r}.")


class PriceError(ValueError):
    """An amount that cannot be a price (or a Stripe amount) in its currency; see `reason`."""

    def __init__(self, reason: PriceReason, message: str, *, currency: str | None = None) -> None:
        self.reason: PriceReason = reason
        self.currency = currency
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Currency:
    """A currency Stripe accepts.

    `exponent` is how many decimals a price may have; `stripe_exponent` is the power of ten
    between a price and Stripe's integer `amount` (they differ for ISK and UGX only).
    """

    code: str
    exponent: int
    minimum_charge: Decimal
    maximum_charge: Decimal
    stripe_exponent: int

    @property
    def stripe_code(self) -> str:
        """The code as Stripe's API wants it: lower-case."""
        return self.code.lower()


def _from_units(units: int, exponent: int) -> Decimal:
    # Built from digits, not by division, so no context precision or rounding is involved.
    sign = 1 if units < 0 else 0
    return Decimal((sign, tuple(int(d) for d in str(abs(units))), -exponent))


def _build(code: str) -> Currency:
    if code in _WHOLE_UNITS_SENT_AS_TWO_DECIMALS:
        exponent, stripe_exponent = 0, 2
    elif code in _ZERO_DECIMAL:
        exponent, stripe_exponent = 0, 0
    elif code in _THREE_DECIMAL:
        exponent, stripe_exponent = 3, 3
    else:
        exponent, stripe_exponent = 2, 2
    minimum = _STRIPE_MINIMUMS.get(code, _from_units(1, exponent))
    # The largest price whose `amount` fits Stripe's digits (ISK/UGX: whole units, so 999999).
    max_amount = 10 ** _MAX_DIGITS.get(code, _DEFAULT_MAX_DIGITS) - 1
    return Currency(
        code=code,
        exponent=exponent,
        minimum_charge=minimum,
        maximum_charge=_from_units(max_amount // 10 ** (stripe_exponent - exponent), exponent),
        stripe_exponent=stripe_exponent,
    )


_CURRENCIES: Final[dict[str, Currency]] = {code: _build(code) for code in sorted(_PRESENTMENT)}

SUPPORTED_CODES: Final[tuple[str, ...]] = tuple(_CURRENCIES)
"""Every supported code, upper-case, sorted."""


def currency(code: str) -> Currency:
    """The currency for `code`, in any letter case; raises `UnknownCurrencyError` otherwise."""
    found = _CURRENCIES.get(code.upper()) if isinstance(code, str) and code.isascii() else None
    if found is None:
        raise UnknownCurrencyError(code)
    return found


def is_supported(code: str) -> bool:
    """Whether Stripe accepts `code` (any letter case)."""
    return isinstance(code, str) and code.isascii() and code.upper() in _CURRENCIES


def stripe_currency(code: str) -> str:
    """`code` as Stripe's API wants it (lower-case); raises `UnknownCurrencyError` if unknown."""
    return currency(code).stripe_code


def _require_decimal(amount: object) -> Decimal:
    # Money never arrives as a float (or an int standing in for one): refuse rather than convert.
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    return amount


def _require_finite(amount: Decimal, code: str | None = None) -> None:
    if not amount.is_finite():
        raise PriceError("not_finite", "Amount must be a finite number.", currency=code)


def _chargeable(amount: Decimal, code: str, noun: str) -> Currency:
    """The currency of `amount` (the `noun` its messages name), once `amount` is a finite,
    non-negative Decimal with at most the currency's decimals and at most Stripe's maximum."""
    _require_decimal(amount)
    cur = currency(code)
    _require_finite(amount, cur.code)
    if amount < 0:
        raise PriceError(
            "negative", f"{noun.capitalize()} must not be negative.", currency=cur.code
        )
    if decimals(amount) > cur.exponent:
        raise PriceError(
            "too_many_decimals",
            f"{cur.code} {noun}s have at most {cur.exponent} decimal places.",
            currency=cur.code,
        )
    if amount > cur.maximum_charge:
        raise PriceError(
            "above_maximum",
            f"A {cur.code} {noun} must be at most {cur.maximum_charge}.",
            currency=cur.code,
        )
    return cur


def _stripped(amount: Decimal) -> tuple[int, tuple[int, ...], int]:
    """Sign, digits and exponent of a finite `amount` with trailing zeros moved into the exponent.

    Works on the digit tuple, never through a decimal context, so it is exact at any precision.
    """
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # 'n', 'N' or 'F': callers check finiteness first
        raise PriceError("not_finite", "Amount must be a finite number.")
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    exponent += len(digits) - end
    digits = digits[:end]
    if digits == (0,):
        return 0, (0,), 0
    return sign, digits, exponent


def decimals(amount: Decimal) -> int:
    """How many decimal places the VALUE of `amount` needs.

    Trailing zeros do not count, because they do not change the value: `Decimal("49.90")` needs 1
    (it is 49.9), `Decimal("10.0")` needs 0 (it is 10, so a valid JPY price), `Decimal("5E+3")`
    needs 0 and `Decimal("0.29")` needs 2. A NaN or an infinity raises `PriceError("not_finite")`.
    """
    _require_decimal(amount)
    _require_finite(amount)
    _, _, exponent = _stripped(amount)
    return max(0, -exponent)


def check_price(amount: Decimal, code: str) -> None:
    """Check that `amount` can be a course price in `code`; raise `PriceError` if not.

    In order: finite (`not_finite`), not negative (`negative`), at most the currency's decimals by
    value (`too_many_decimals`), at most Stripe's maximum charge (`above_maximum`), then either 0
    (free) or at least Stripe's minimum charge (`below_minimum`). An unknown currency raises
    `UnknownCurrencyError`.
    """
    cur = _chargeable(amount, code, "price")
    if amount != 0 and amount < cur.minimum_charge:
        raise PriceError(
            "below_minimum",
            f"A paid {cur.code} price must be at least {cur.minimum_charge}.",
            currency=cur.code,
        )


def to_minor_units(amount: Decimal, code: str) -> int:
    """Stripe's integer `amount` for `amount` in `code`, computed exactly.

    `1.13 USD -> 113`, `5000 JPY -> 5000`, `1.234 KWD -> 1234`, `5 ISK -> 500`. Raises `PriceError`
    when it cannot be exact or chargeable: not finite, negative, more decimals than the currency
    allows, or above Stripe's maximum. (It does not apply the minimum: a partial refund may be
    smaller.)
    """
    cur = _chargeable(amount, code, "amount")
    _, digits, exponent = _stripped(amount)
    # Integer arithmetic on the digits: the decimals check makes the shift non-negative.
    shift: int = exponent + cur.stripe_exponent
    return int("".join(map(str, digits))) * int(10**shift)


def from_minor_units(amount: int, code: str) -> Decimal:
    """The price for Stripe's integer `amount` in `code`, exactly and in canonical form.

    `113 USD -> Decimal("1.13")`, `5000 JPY -> Decimal("5000")`, `500 ISK -> Decimal("5")`.
    Raises `PriceError` for a negative amount, or one that is a fraction of a currency that only
    has whole units (`550 ISK`).
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int, not {type(amount).__name__}")
    cur = currency(code)
    if amount < 0:
        raise PriceError("negative", "Amount must not be negative.", currency=cur.code)
    value = normalize(_from_units(amount, cur.stripe_exponent))
    if decimals(value) > cur.exponent:
        raise PriceError(
            "too_many_decimals",
            f"{cur.code} amounts have at most {cur.exponent} decimal places.",
            currency=cur.code,
        )
    return value


def normalize(amount: Decimal) -> Decimal:
    """The canonical form of `amount` to store and serialise: same value, plain digits.

    Trailing fractional zeros go, a positive exponent is written out, and zero has no sign:
    `Decimal("5E+3") -> Decimal("5000")`, `Decimal("49.990") -> Decimal("49.99")`,
    `Decimal("0.29")` stays, `Decimal("-0.0") -> Decimal("0")`. `str()` of the result never uses
    exponent notation, so it is a JSON number literal that reads back as the same value.

    Raises `PriceError`: `not_finite` for NaN/Infinity; `too_many_decimals` for a non-zero value
    under 10**-6 in size and `above_maximum` for one of 10**31 or more, the two places where plain
    digits are impossible (Decimal's `str()` switches to E-notation) or absurdly long. No currency
    allows either as a price.
    """
    _require_decimal(amount)
    _require_finite(amount)
    sign, digits, exponent = _stripped(amount)
    adjusted = exponent + len(digits) - 1
    if adjusted > _NORMALIZE_MAX_ADJUSTED:
        raise PriceError("above_maximum", "Amount is too large.")
    if digits != (0,) and adjusted < _PLAIN_MIN_ADJUSTED:
        raise PriceError("too_many_decimals", "Amount has too many decimal places.")
    if exponent > 0:
        digits, exponent = digits + (0,) * exponent, 0
    return Decimal((sign, digits, exponent))
