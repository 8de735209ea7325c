"""Idempotency-Key parsing, the request fingerprint and what is saved (no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from learnflow import errors, idempotency
from learnflow.idempotency import fingerprint, key_from_event, lease_ms, saves
from tests.support.handlers import Context

BODY = '{"title": "Intro", "price": 49.99, "tags": ["a", "b"], "metadata": {"k": "v", "z": 1}}'


def _event(headers: dict[str, str], multi: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"headers": headers, "multiValueHeaders": multi}


@pytest.mark.parametrize(
    "key",
    ["a", "x" * 255, "order-7f3c:retry#1", "with space", "~!@#$%^&*()_+{}|:<>?`-=[]\\;',./"],
)
def test_valid_keys_are_accepted_as_given(key: str) -> None:
    assert key_from_event(_event({"Idempotency-Key": key})) == key


def test_header_name_is_case_insensitive() -> None:
    assert key_from_event(_event({"idempotency-key": "k1"})) == "k1"
    assert key_from_event(_event({}, {"IDEMPOTENCY-KEY": ["k2"]})) == "k2"


def test_absent_header_means_no_key() -> None:
    assert key_from_event(_event({"Accept": "application/json"})) is None
    assert key_from_event({}) is None


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "caf\u00e9", "tab\there", "new\nline", "\x7f", "emoji\U0001f600"]
)
def test_invalid_keys_are_400_parameter_invalid(key: str) -> None:
    with pytest.raises(errors.InvalidRequestError) as raised:
        key_from_event(_event({"Idempotency-Key": key}))
    assert (raised.value.status, raised.value.code, raised.value.param) == (
        400,
        "parameter_invalid",
        "Idempotency-Key",
    )


def test_two_different_keys_in_one_request_are_400() -> None:
    with pytest.raises(errors.InvalidRequestError) as raised:
        key_from_event(_event({"Idempotency-Key": "b"}, {"Idempotency-Key": ["a", "b"]}))
    assert raised.value.param == "Idempotency-Key"


def test_the_same_key_sent_twice_is_that_key() -> None:
    assert key_from_event(_event({"Idempotency-Key": "a"}, {"Idempotency-Key": ["a", "a"]})) == "a"


def test_bodies_equal_as_parsed_json_have_one_fingerprint() -> None:
    reordered = (
        '{ "metadata" : {"z": 1.0, "k": "v"},\n\t"tags": ["a","b"], "price": 49.990,'
        ' "title": "Intr\\u006f" }'
    )
    assert fingerprint("POST", "/courses", {}, BODY) == fingerprint(
        "POST", "/courses", {}, reordered
    )


@pytest.mark.parametrize(
    "other",
    [
        '{"title": "Intro", "price": 49.98, "tags": ["a", "b"], "metadata": {"k": "v", "z": 1}}',
        '{"title": "Intro", "price": 49.99, "tags": ["b", "a"], "metadata": {"k": "v", "z": 1}}',
        '{"title": "Intro", "price": "49.99", "tags": ["a", "b"], "metadata": {"k": "v", "z": 1}}',
        '{"title": "Intro", "price": 49.99, "tags": ["a", "b"], "metadata": {"k": "v"}}',
        '{"title": "Intro", "price": 49.99, "tags": ["a", "b"], "metadata": {"k": "v", "z": 1},'
        ' "extra": null}',
    ],
)
def test_bodies_that_differ_as_json_have_different_fingerprints(other: str) -> None:
    assert fingerprint("POST", "/courses", {}, BODY) != fingerprint("POST", "/courses", {}, other)


def test_numbers_compare_exactly_beyond_decimal_precision() -> None:
    first = '{"n": 1.00000000000000000000000000000001}'
    second = '{"n": 1.00000000000000000000000000000002}'
    assert fingerprint("POST", "/x", {}, first) != fingerprint("POST", "/x", {}, second)
    assert fingerprint("POST", "/x", {}, '{"n": 100}') == fingerprint(
        "POST", "/x", {}, '{"n": 1E2}'
    )
    assert fingerprint("POST", "/x", {}, '{"n": 0}') == fingerprint("POST", "/x", {}, '{"n": -0.0}')


def test_method_path_and_query_are_part_of_the_fingerprint() -> None:
    base = fingerprint("POST", "/courses", {}, BODY)
    assert base != fingerprint("PATCH", "/courses", {}, BODY)
    assert base != fingerprint("POST", "/instructors", {}, BODY)
    assert fingerprint("POST", "/courses/crs_1", {}, BODY) != fingerprint(
        "POST", "/courses/crs_2", {}, BODY
    )
    assert base != fingerprint("POST", "/courses", {"expand": ["all"]}, BODY)


def test_unparsable_bodies_compare_as_text() -> None:
    broken = '{"title": "x",'
    assert fingerprint("POST", "/x", {}, broken) == fingerprint("POST", "/x", {}, broken)
    assert fingerprint("POST", "/x", {}, broken) != fingerprint("POST", "/x", {}, broken + " ")
    # a body that is the JSON text of a string is not the same request as that text unparsed
    assert fingerprint("POST", "/x", {}, '"{}"') != fingerprint("POST", "/x", {}, "{}")


def test_nesting_too_deep_to_parse_still_fingerprints() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert fingerprint("POST", "/x", {}, deep) != fingerprint("POST", "/x", {}, "[]")


def test_lease_is_the_invocations_remaining_time() -> None:
    assert lease_ms(Context(7_250)) == 7_250


@pytest.mark.parametrize("context", [object(), None, Context(0), Context(-5)])
def test_lease_falls_back_to_thirty_seconds(context: object) -> None:
    assert lease_ms(context) == idempotency.DEFAULT_LEASE_MS == 30_000


@pytest.mark.parametrize(
    ("status", "saved"),
    [
        *((status, True) for status in (200, 201, 400, 402, 404, 409)),
        *((status, False) for status in (429, 500, 502, 503)),
    ],
)
def test_2xx_and_4xx_are_saved_5xx_and_429_are_not(status: int, saved: bool) -> None:
    assert saves(status) is saved
