"""Unit tests for learnflow.money: currencies, price checks and exact minor-unit conversion."""

import dataclasses
import json
import re
from decimal import Decimal, localcontext

import pytest

from learnflow import money
from learnflow.money import (
    SUPPORTED_CODES,
    PriceError,
    UnknownCurrencyError,
    check_price,
    currency,
    decimals,
    from_minor_units,
    is_supported,
    normalize,
    stripe_currency,
    to_minor_units,
)

ZERO_DECIMAL = ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                "VND", "VUV", "XAF", "XOF", "XPF"]  # fmt: skip
THREE_DECIMAL = ["BHD", "JOD", "KWD", "OMR", "TND"]
WHOLE_UNITS_SENT_AS_TWO_DECIMALS = ["ISK", "UGX"]

# Stripe's "Minimum and maximum charge amounts" table (docs.stripe.com/currencies).
STRIPE_MINIMUMS = {
    "USD": "0.50",
    "AED": "2.00",
    "AUD": "0.50",
    "BGN": "1.00",
    "BRL": "0.50",
    "CAD": "0.50",
    "CHF": "0.50",
    "CZK": "15.00",
    "DKK": "2.50",
    "EUR": "0.50",
    "GBP": "0.30",
    "HKD": "4.00",
    "HUF": "175.00",
    "INR": "0.50",
    "JPY": "50",
    "MXN": "10",
    "MYR": "2",
    "NOK": "3.00",
    "NZD": "0.50",
    "PLN": "2.00",
    "RON": "2.00",
    "SEK": "3.00",
    "SGD": "0.50",
    "THB": "10",
}

# What a float gives: Decimal(1.13) is 1.1299999999999998934…
FLOAT_1_13 = Decimal(float("1.13"))

JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def unit(code: str) -> Decimal:
    """The smallest price step of a currency (0.01 USD, 1 JPY, 0.001 KWD)."""
    return Decimal(1).scaleb(-currency(code).exponent)


# --- the currency table -------------------------------------------------------------------------


def test_supported_codes_are_sorted_unique_upper_case_iso_shaped() -> None:
    assert list(SUPPORTED_CODES) == sorted(set(SUPPORTED_CODES))
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in SUPPORTED_CODES)
    assert len(SUPPORTED_CODES) == 140


@pytest.mark.parametrize(
    "code",
    [
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "KRW",
        "CAD",
        "AUD",
        "INR",
        "BRL",
        "MXN",
        "CHF",
        "SEK",
        "XCG",
        *THREE_DECIMAL,
        *ZERO_DECIMAL,
        *STRIPE_MINIMUMS,
    ],
)
def test_stripe_currency_is_supported(code: str) -> None:
    assert is_supported(code)
    assert currency(code).code == code


@pytest.mark.parametrize(
    # Not Stripe presentment currencies: funds codes, retired codes, sanctioned/unsupported ones.
    "code",
    ["XXX", "XTS", "XAU", "BTC", "EEK", "LTL", "HRK", "VEF", "VES", "IRR", "KPW", "CUP", "SYP",
     "IQD", "LYD", "CLF", "UYI", "BOV", "MRO", "ZWL"],
)  # fmt: skip
def test_non_stripe_currency_is_unknown(code: str) -> None:
    assert not is_supported(code)
    with pytest.raises(UnknownCurrencyError):
        currency(code)


@pytest.mark.parametrize("code", sorted(set(ZERO_DECIMAL) - {"UGX"}))
def test_zero_decimal_currency_has_no_decimals_for_prices_or_stripe(code: str) -> None:
    cur = currency(code)
    assert (cur.exponent, cur.stripe_exponent) == (0, 0)


@pytest.mark.parametrize("code", THREE_DECIMAL)
def test_three_decimal_currency_has_three_decimals(code: str) -> None:
    cur = currency(code)
    assert (cur.exponent, cur.stripe_exponent) == (3, 3)


@pytest.mark.parametrize("code", WHOLE_UNITS_SENT_AS_TWO_DECIMALS)
def test_isk_and_ugx_prices_are_whole_but_stripe_amounts_have_two_decimals(code: str) -> None:
    cur = currency(code)
    assert (cur.exponent, cur.stripe_exponent) == (0, 2)


@pytest.mark.parametrize("code", ["HUF", "TWD"])
def test_huf_and_twd_charge_with_two_decimals(code: str) -> None:
    cur = currency(code)
    assert (cur.exponent, cur.stripe_exponent) == (2, 2)


def test_every_other_currency_has_two_decimals() -> None:
    special = set(ZERO_DECIMAL) | set(THREE_DECIMAL) | {"ISK"}
    others = [code for code in SUPPORTED_CODES if code not in special]
    assert len(others) == len(SUPPORTED_CODES) - len(special)
    assert {(currency(c).exponent, currency(c).stripe_exponent) for c in others} == {(2, 2)}


@pytest.mark.parametrize(("code", "minimum"), sorted(STRIPE_MINIMUMS.items()))
def test_minimum_charge_mirrors_stripe_table(code: str, minimum: str) -> None:
    assert currency(code).minimum_charge == Decimal(minimum)


@pytest.mark.parametrize(
    ("code", "minimum"),
    [("AFN", "0.01"), ("ZAR", "0.01"), ("KWD", "0.001"), ("BHD", "0.001"), ("CLP", "1"),
     ("KRW", "1"), ("ISK", "1"), ("UGX", "1"), ("XCG", "0.01")],
)  # fmt: skip
def test_currency_without_stripe_minimum_needs_one_price_unit(code: str, minimum: str) -> None:
    assert currency(code).minimum_charge == Decimal(minimum)


@pytest.mark.parametrize("code", SUPPORTED_CODES)
def test_minimum_charge_is_a_valid_price_and_one_unit_less_is_not(code: str) -> None:
    cur = currency(code)
    assert cur.minimum_charge > 0
    check_price(cur.minimum_charge, code)
    below = cur.minimum_charge - unit(code)
    if below > 0:
        with pytest.raises(PriceError) as caught:
            check_price(below, code)
        assert caught.value.reason == "below_minimum"


@pytest.mark.parametrize(
    ("code", "maximum", "stripe_amount"),
    [
        ("USD", "999999.99", 99999999),
        ("EUR", "999999.99", 99999999),
        ("INR", "9999999.99", 999999999),
        ("IDR", "9999999999.99", 999999999999),
        ("JPY", "99999999", 99999999),
        ("KWD", "99999.999", 99999999),
        ("ISK", "999999", 99999900),
        ("UGX", "999999", 99999900),
    ],
)
def test_maximum_charge_is_stripe_digit_limit(code: str, maximum: str, stripe_amount: int) -> None:
    cur = currency(code)
    assert cur.maximum_charge == Decimal(maximum)
    check_price(cur.maximum_charge, code)
    assert to_minor_units(cur.maximum_charge, code) == stripe_amount
    with pytest.raises(PriceError) as caught:
        check_price(cur.maximum_charge + unit(code), code)
    assert caught.value.reason == "above_maximum"


def test_currency_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        currency("USD").exponent = 3  # type: ignore[misc]


# --- looking currencies up ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["usd", "USD", "Usd", "uSD"])
def test_currency_lookup_ignores_case(code: str) -> None:
    assert currency(code) is currency("USD")
    assert currency(code).code == "USD"
    assert is_supported(code)


@pytest.mark.parametrize(
    "code",
    ["", "US", "USDD", "xyz", " usd", "usd ", "u sd", "\uff35\uff33\uff24", "us\u0131", "usd\n"],
)
def test_unknown_currency_raises_value_error(code: str) -> None:
    assert not is_supported(code)
    with pytest.raises(UnknownCurrencyError) as caught:
        currency(code)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == code


@pytest.mark.parametrize("code", [None, 840, b"usd", ["usd"]])
def test_non_string_currency_is_unknown(code: object) -> None:
    assert not is_supported(code)  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrencyError):
        currency(code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "expected"), [("USD", "usd"), ("usd", "usd"), ("JpY", "jpy"), ("KWD", "kwd")]
)
def test_stripe_currency_is_lower_case(code: str, expected: str) -> None:
    assert stripe_currency(code) == expected
    assert currency(code).stripe_code == expected


def test_stripe_currency_rejects_unknown_code() -> None:
    with pytest.raises(UnknownCurrencyError):
        stripe_currency("abc")


# --- decimals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "places"),
    [
        ("49.99", 2),
        ("49.90", 1),
        ("49.900000", 1),
        ("10.0", 0),
        ("10", 0),
        ("100", 0),
        ("5E+3", 0),
        ("0.29", 2),
        ("1.230", 2),
        ("1.234", 3),
        ("1E-2", 2),
        ("0", 0),
        ("0.000", 0),
        ("0E-9", 0),
        ("-0.0", 0),
        ("-1.5", 1),
        ("0.000000000000000000000000000000001", 33),
    ],
)
def test_decimals_counts_places_of_the_value(amount: str, places: int) -> None:
    assert decimals(Decimal(amount)) == places


def test_decimals_is_exact_whatever_the_decimal_context() -> None:
    amount = Decimal("12345678901234567890.1234567891")
    with localcontext() as ctx:
        ctx.prec = 5
        assert decimals(amount) == 10


@pytest.mark.parametrize("amount", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_decimals_rejects_non_finite(amount: str) -> None:
    with pytest.raises(PriceError) as caught:
        decimals(Decimal(amount))
    assert caught.value.reason == "not_finite"


@pytest.mark.parametrize("amount", [1.13, 113, "1.13", None])
def test_decimals_accepts_only_decimal(amount: object) -> None:
    with pytest.raises(TypeError):
        decimals(amount)  # type: ignore[arg-type]


# --- check_price --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("49.99", "USD"),
        ("49.90", "USD"),
        ("0.50", "usd"),
        ("0.5", "USD"),
        ("1.13", "USD"),
        ("999999.99", "USD"),
        ("0.50", "EUR"),
        ("0.30", "GBP"),
        ("2.50", "DKK"),
        ("175", "HUF"),
        ("50", "JPY"),
        ("50.00", "jpy"),
        ("5000", "JPY"),
        ("5E+3", "JPY"),
        ("100.0", "JPY"),
        ("1000", "KRW"),
        ("1.234", "KWD"),
        ("0.001", "BHD"),
        ("5", "ISK"),
        ("5.00", "ISK"),
        ("3000", "UGX"),
        ("10", "THB"),
        ("0.01", "AFN"),
    ],
)
def test_valid_price_passes(amount: str, code: str) -> None:
    check_price(Decimal(amount), code)


@pytest.mark.parametrize("code", SUPPORTED_CODES)
@pytest.mark.parametrize("amount", ["0", "0.00", "-0", "0E+5"])
def test_zero_is_free_in_every_currency(amount: str, code: str) -> None:
    check_price(Decimal(amount), code)


@pytest.mark.parametrize(
    ("amount", "code", "reason"),
    [
        ("NaN", "USD", "not_finite"),
        ("sNaN", "USD", "not_finite"),
        ("Infinity", "USD", "not_finite"),
        ("-Infinity", "USD", "not_finite"),
        ("-1", "USD", "negative"),
        ("-0.01", "USD", "negative"),
        ("-49.999", "USD", "negative"),
        ("-100", "JPY", "negative"),
        ("49.999", "USD", "too_many_decimals"),
        ("0.001", "USD", "too_many_decimals"),
        ("10.5", "JPY", "too_many_decimals"),
        ("50.1", "JPY", "too_many_decimals"),
        ("0.5", "JPY", "too_many_decimals"),
        ("1000.5", "KRW", "too_many_decimals"),
        ("1.2345", "KWD", "too_many_decimals"),
        ("5.5", "ISK", "too_many_decimals"),
        ("3000.01", "UGX", "too_many_decimals"),
        ("10.5", "MGA", "too_many_decimals"),
        ("0.49", "USD", "below_minimum"),
        ("0.01", "USD", "below_minimum"),
        ("0.49", "EUR", "below_minimum"),
        ("0.29", "GBP", "below_minimum"),
        ("49", "JPY", "below_minimum"),
        ("1", "JPY", "below_minimum"),
        ("2.49", "DKK", "below_minimum"),
        ("174.99", "HUF", "below_minimum"),
        ("9.99", "MXN", "below_minimum"),
        ("9", "THB", "below_minimum"),
        ("1000000", "USD", "above_maximum"),
        ("1E+999999999", "USD", "above_maximum"),
        ("100000000", "JPY", "above_maximum"),
    ],
)
def test_invalid_price_raises_with_reason(amount: str, code: str, reason: str) -> None:
    with pytest.raises(PriceError) as caught:
        check_price(Decimal(amount), code)
    assert caught.value.reason == reason
    assert caught.value.currency == code.upper()
    assert isinstance(caught.value, ValueError)


def test_float_artefact_decimal_is_rejected_not_rounded() -> None:
    # It must never become a price silently, rounded or otherwise.
    with pytest.raises(PriceError) as caught:
        check_price(FLOAT_1_13, "USD")
    assert caught.value.reason == "too_many_decimals"


@pytest.mark.parametrize("amount", [49.99, 0.5, 50, True, "49.99"])
def test_check_price_accepts_only_decimal(amount: object) -> None:
    with pytest.raises(TypeError):
        check_price(amount, "USD")  # type: ignore[arg-type]


def test_check_price_rejects_unknown_currency_before_the_amount() -> None:
    with pytest.raises(UnknownCurrencyError):
        check_price(Decimal("NaN"), "ABC")


# --- to_minor_units / from_minor_units ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code", "expected"),
    [
        # The float artefact cases: int(float(x) * 100) gets several of these wrong.
        ("1.13", "USD", 113),
        ("0.29", "USD", 29),
        ("19.99", "USD", 1999),
        ("4.35", "USD", 435),
        ("1.15", "USD", 115),
        ("0.57", "USD", 57),
        ("8.20", "USD", 820),
        ("9.95", "EUR", 995),
        ("1.005", "KWD", 1005),
        ("49.99", "usd", 4999),
        ("49.90", "USD", 4990),
        ("1.130", "USD", 113),
        ("5E+3", "USD", 500000),
        ("999999.99", "USD", 99999999),
        ("0", "USD", 0),
        ("0.00", "USD", 0),
        ("5000", "JPY", 5000),
        ("50", "jpy", 50),
        ("10.0", "JPY", 10),
        ("5E+3", "JPY", 5000),
        ("1000", "KRW", 1000),
        ("1.234", "KWD", 1234),
        ("1.23", "KWD", 1230),
        ("12.345", "BHD", 12345),
        ("5", "ISK", 500),
        ("5", "UGX", 500),
        ("3000", "UGX", 300000),
        ("175.00", "HUF", 17500),
        ("800.45", "TWD", 80045),
    ],
)
def test_to_minor_units_is_exact(amount: str, code: str, expected: int) -> None:
    result = to_minor_units(Decimal(amount), code)
    assert result == expected
    assert type(result) is int


def test_every_cent_from_zero_to_one_hundred_round_trips() -> None:
    naive_misses = 0
    for cents in range(10_001):
        text = f"{cents // 100}.{cents % 100:02d}"
        amount = Decimal(text)
        assert to_minor_units(amount, "USD") == cents, text
        assert from_minor_units(cents, "USD") == amount, text
        assert str(from_minor_units(cents, "USD")) == str(normalize(amount)), text
        naive_misses += int(float(text) * 100) != cents
    # The float route really is wrong on this range, so the loop above proves something.
    assert naive_misses > 0


@pytest.mark.parametrize("code", ["JPY", "KRW"])
def test_zero_decimal_whole_amounts_round_trip(code: str) -> None:
    for value in range(0, 20_000, 7):
        assert to_minor_units(Decimal(value), code) == value
        assert from_minor_units(value, code) == Decimal(value)


@pytest.mark.parametrize("code", ["BHD", "KWD"])
def test_three_decimal_amounts_round_trip(code: str) -> None:
    for units in range(5_001):
        amount = Decimal(f"{units // 1000}.{units % 1000:03d}")
        assert to_minor_units(amount, code) == units
        assert from_minor_units(units, code) == amount


@pytest.mark.parametrize("code", SUPPORTED_CODES)
def test_minimum_and_maximum_round_trip_in_every_currency(code: str) -> None:
    cur = currency(code)
    for amount in (cur.minimum_charge, cur.maximum_charge):
        assert from_minor_units(to_minor_units(amount, code), code) == amount


@pytest.mark.parametrize(
    ("amount", "code", "reason"),
    [
        ("1.131", "USD", "too_many_decimals"),
        ("0.001", "USD", "too_many_decimals"),
        ("10.5", "JPY", "too_many_decimals"),
        ("1.2345", "KWD", "too_many_decimals"),
        ("5.5", "ISK", "too_many_decimals"),
        ("5.01", "UGX", "too_many_decimals"),
        ("-1.13", "USD", "negative"),
        ("NaN", "USD", "not_finite"),
        ("Infinity", "JPY", "not_finite"),
        ("1000000", "USD", "above_maximum"),
        ("1E+999999999", "USD", "above_maximum"),
    ],
)
def test_to_minor_units_refuses_what_is_not_exact(amount: str, code: str, reason: str) -> None:
    with pytest.raises(PriceError) as caught:
        to_minor_units(Decimal(amount), code)
    assert caught.value.reason == reason


def test_to_minor_units_does_not_apply_the_minimum() -> None:
    # A partial refund can be smaller than the minimum charge.
    assert to_minor_units(Decimal("0.01"), "USD") == 1


def test_to_minor_units_rejects_float_artefact_and_floats() -> None:
    with pytest.raises(PriceError) as caught:
        to_minor_units(FLOAT_1_13, "USD")
    assert caught.value.reason == "too_many_decimals"
    with pytest.raises(TypeError):
        to_minor_units(1.13, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "code", "expected"),
    [
        (113, "USD", "1.13"),
        (113, "usd", "1.13"),
        (4990, "USD", "49.9"),
        (1000, "USD", "10"),
        (1, "USD", "0.01"),
        (0, "USD", "0"),
        (99999999, "USD", "999999.99"),
        (5000, "JPY", "5000"),
        (50, "JPY", "50"),
        (1000, "KRW", "1000"),
        (1234, "KWD", "1.234"),
        (1230, "KWD", "1.23"),
        (500, "ISK", "5"),
        (300000, "UGX", "3000"),
        (999999999999, "IDR", "9999999999.99"),
    ],
)
def test_from_minor_units_is_exact_and_canonical(amount: int, code: str, expected: str) -> None:
    result = from_minor_units(amount, code)
    assert result == Decimal(expected)
    assert str(result) == expected


@pytest.mark.parametrize(
    ("amount", "code", "reason"),
    [(550, "ISK", "too_many_decimals"), (501, "UGX", "too_many_decimals"), (-1, "USD", "negative")],
)
def test_from_minor_units_refuses_impossible_amounts(amount: int, code: str, reason: str) -> None:
    with pytest.raises(PriceError) as caught:
        from_minor_units(amount, code)
    assert caught.value.reason == reason


@pytest.mark.parametrize("amount", [113.0, True, Decimal("113"), "113"])
def test_from_minor_units_accepts_only_int(amount: object) -> None:
    with pytest.raises(TypeError):
        from_minor_units(amount, "USD")  # type: ignore[arg-type]


def test_from_minor_units_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrencyError):
        from_minor_units(100, "zzz")


# --- normalize ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("5E+3", "5000"),
        ("5.0E+3", "5000"),
        ("49.990", "49.99"),
        ("49.99", "49.99"),
        ("0.29", "0.29"),
        ("1.13", "1.13"),
        ("10.0", "10"),
        ("100", "100"),
        ("1E+2", "100"),
        ("0", "0"),
        ("0.00", "0"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0E+7", "0"),
        ("0E-30", "0"),
        ("-1.50", "-1.5"),
        ("1.234", "1.234"),
        ("0.000001", "0.000001"),
        ("1E-6", "0.000001"),
        ("1E+30", "1" + "0" * 30),
        ("12345678901234567890.123456789012345", "12345678901234567890.123456789012345"),
    ],
)
def test_normalize_gives_canonical_plain_value(amount: str, expected: str) -> None:
    result = normalize(Decimal(amount))
    assert str(result) == expected
    assert result == Decimal(amount)


def test_normalize_never_writes_an_exponent() -> None:
    checked = 0
    for mantissa in ("1", "7", "12", "120", "1000", "987654321", "-45"):
        for exponent in range(-12, 35):
            amount = Decimal(f"{mantissa}E{exponent}")
            adjusted = amount.adjusted()
            if -6 <= adjusted <= 30:
                text = str(normalize(amount))
                assert JSON_NUMBER.fullmatch(text), text
                assert json.loads(text, parse_float=Decimal, parse_int=Decimal) == amount
                checked += 1
            else:
                with pytest.raises(PriceError):
                    normalize(amount)
    assert checked > 200


@pytest.mark.parametrize("amount", ["49.990", "5E+3", "0.29", "-0.0", "1.000"])
def test_normalize_is_idempotent(amount: str) -> None:
    once = normalize(Decimal(amount))
    twice = normalize(once)
    assert str(once) == str(twice)
    assert once.as_tuple() == twice.as_tuple()


def test_normalize_is_exact_whatever_the_decimal_context() -> None:
    amount = Decimal("1234567890123456789012345678.90")
    with localcontext() as ctx:
        ctx.prec = 3
        assert str(normalize(amount)) == "1234567890123456789012345678.9"


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("NaN", "not_finite"),
        ("sNaN", "not_finite"),
        ("Infinity", "not_finite"),
        ("-Infinity", "not_finite"),
        ("1E-7", "too_many_decimals"),
        ("0.00000012", "too_many_decimals"),
        ("1E+31", "above_maximum"),
        ("1E+999999999", "above_maximum"),
    ],
)
def test_normalize_refuses_values_without_a_plain_form(amount: str, reason: str) -> None:
    with pytest.raises(PriceError) as caught:
        normalize(Decimal(amount))
    assert caught.value.reason == reason


def test_normalize_accepts_only_decimal() -> None:
    with pytest.raises(TypeError):
        normalize(49.99)  # type: ignore[arg-type]


def test_price_error_reasons_are_the_documented_set() -> None:
    assert set(money.PriceReason.__args__) == {  # type: ignore[attr-defined]
        "negative",
        "not_finite",
        "too_many_decimals",
        "below_minimum",
        "above_maximum",
    }
