"""JSON with exact decimals: numbers in, numbers out, never floats or strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from learnflow.jsonio import MAX_DEPTH, NotAnObjectError, dumps, iso, loads_object


@pytest.mark.parametrize("text", ["0.29", "49.99", "1.13", "5000", "0", "999999.99", "0.001"])
def test_decimal_round_trips_exactly(text: str) -> None:
    parsed = loads_object(f'{{"price": {text}}}')
    assert parsed["price"] == Decimal(text)
    assert not isinstance(parsed["price"], float)
    assert dumps(parsed) == f'{{"price":{text}}}'


def test_integers_stay_integers() -> None:
    assert loads_object('{"n": 5}') == {"n": 5}
    assert type(loads_object('{"n": 5}')["n"]) is int


@pytest.mark.parametrize("text", ["[1]", '"x"', "1", "null", "true"])
def test_non_objects_are_refused(text: str) -> None:
    with pytest.raises(NotAnObjectError):
        loads_object(text)


@pytest.mark.parametrize("text", ["{", "{'a': 1}", "", '{"a": }'])
def test_invalid_json_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the caller maps them all
        loads_object(text)


def test_iso_is_utc_with_seconds_and_z() -> None:
    moment = datetime(2023, 10, 15, 16, 32, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert iso(moment) == "2023-10-15T14:32:00Z"
    assert iso(datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2023-01-02T03:04:05Z"


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_deep_nesting_is_refused_as_not_an_object() -> None:
    with pytest.raises(NotAnObjectError):
        loads_object('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")


def nested(levels: int) -> str:
    """A body whose objects and arrays nest `levels` deep (the body itself is the first), with a
    number in the deepest one."""
    inner = levels - 1
    return '{"a": ' + "[" * inner + "1" + "]" * inner + "}" if inner else '{"a": 1}'


def test_nesting_up_to_the_limit_parses_and_one_more_is_refused() -> None:
    assert MAX_DEPTH == 32
    assert loads_object(nested(MAX_DEPTH))["a"]
    assert loads_object('{"a": ' + '{"b": ' * 30 + '{"x": 1}' + "}" * 30 + "}")  # 32 objects
    with pytest.raises(NotAnObjectError, match="too deeply"):
        loads_object(nested(MAX_DEPTH + 1))
    with pytest.raises(NotAnObjectError, match="too deeply"):  # inside objects, too
        loads_object('{"a": ' + '{"b": ' * 31 + '{"x": 1}' + "}" * 31 + "}")


def test_a_wide_body_is_not_deep() -> None:
    """Depth counts nesting, not size: a million values side by side are one level."""
    parsed = loads_object('{"a": [' + ",".join(["0"] * 1_000_000) + "]}")
    assert len(parsed["a"]) == 1_000_000


def test_a_huge_integer_stays_a_number() -> None:
    digits = "9" * 5000
    assert loads_object(f'{{"price": {digits}}}')["price"] == Decimal(digits)
