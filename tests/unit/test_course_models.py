"""Catalogue models: course and instructor bodies, money, metadata, slugs, list queries, updates."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from learnflow import errors
from learnflow.jsonio import dumps, loads_object
from learnflow.models.common import ListQuery, merge_metadata
from learnflow.models.courses import (
    TRANSITIONS,
    Course,
    CourseCreate,
    CourseListQuery,
    CourseOut,
    CourseUpdate,
)
from learnflow.models.instructors import InstructorCreate

VALID: dict[str, Any] = {
    "title": "Distributed Systems",
    "description": "Consensus and replication.",
    "price": Decimal("49.99"),
    "currency": "USD",
}


def _errors(model: type[BaseModel], data: dict[str, Any]) -> list[tuple[str, str]]:
    """(first location, pydantic error type) of every error, or [] when `data` is valid."""
    try:
        model.model_validate(data)
    except ValidationError as error:
        return [(str(e["loc"][0]) if e["loc"] else "", e["type"]) for e in error.errors()]
    except errors.InvalidRequestError as error:  # refused before field validation, naming it
        return [(str(error.param), str(error.code))]
    return []


def _first_param(model: type[BaseModel], data: dict[str, Any]) -> str:
    found = _errors(model, data)
    assert found, f"expected {data} to be refused"
    return found[0][0]


def _body(text: str) -> dict[str, Any]:
    """A body exactly as the HTTP layer parses it (fractions as Decimal, integers as int)."""
    return {**VALID, **loads_object(text)}


# --- money ---


@pytest.mark.parametrize(
    ("body", "currency"),
    [
        ('{"price": 49.999}', "USD"),  # 3 decimals in a 2-decimal currency
        ('{"price": 10.5}', "JPY"),  # JPY has no minor unit
        ('{"price": "49.99"}', "USD"),  # a string, however numeric
        ('{"price": 0.49}', "USD"),  # below Stripe's 0.50 USD minimum
        ('{"price": 49}', "JPY"),  # below Stripe's 50 JPY minimum
        ('{"price": 0.29}', "GBP"),  # below Stripe's 0.30 GBP minimum
        ('{"price": 1.2345}', "BHD"),  # 4 decimals in a 3-decimal currency
        ('{"price": -5}', "USD"),
        ('{"price": true}', "USD"),  # a boolean is not a number, though Python says int
        ('{"price": null}', "USD"),
        ('{"price": [1]}', "USD"),
        ('{"price": 1e400}', "USD"),  # above Stripe's maximum charge
    ],
)
def test_price_outside_the_currency_rules_is_refused_on_price(body: str, currency: str) -> None:
    assert _first_param(CourseCreate, {**_body(body), "currency": currency}) == "price"


@pytest.mark.parametrize(
    ("body", "currency", "stored", "written"),
    [
        ('{"price": 49.99}', "usd", Decimal("49.99"), "49.99"),
        ('{"price": 1.13}', "USD", Decimal("1.13"), "1.13"),  # never 1.1299999999999999
        ('{"price": 0}', "USD", Decimal(0), "0"),  # free
        ('{"price": 0.0}', "EUR", Decimal(0), "0"),
        ('{"price": 5000}', "JPY", Decimal(5000), "5000"),
        ('{"price": 5e3}', "JPY", Decimal(5000), "5000"),
        ('{"price": 100.0}', "JPY", Decimal(100), "100"),  # 100.0 JPY has no fraction
        ('{"price": 0.30}', "GBP", Decimal("0.3"), "0.3"),
        ('{"price": 0.50}', "USD", Decimal("0.5"), "0.5"),
        ('{"price": 49.990}', "USD", Decimal("49.99"), "49.99"),
        ('{"price": 1.234}', "BHD", Decimal("1.234"), "1.234"),  # three-decimal currency
        ('{"price": 0.001}', "KWD", Decimal("0.001"), "0.001"),
        ('{"price": 0.29}', "CAD", Decimal("0.29"), None),  # below CAD's minimum (0.50)
    ],
)
def test_price_is_kept_exactly_and_currency_upper_cased(
    body: str, currency: str, stored: Decimal, written: str | None
) -> None:
    data = {**_body(body), "currency": currency}
    if written is None:
        assert _first_param(CourseCreate, data) == "price"
        return
    course = CourseCreate.model_validate(data)
    assert course.currency == currency.upper()
    assert course.price == stored
    assert isinstance(course.price, Decimal)
    assert dumps({"price": course.price}) == f'{{"price":{written}}}'


@pytest.mark.parametrize("price", [Decimal("NaN"), Decimal("Infinity"), 49.99, 50.0])
def test_price_that_no_json_body_can_carry_is_refused(price: object) -> None:
    # the parser refuses NaN/Infinity and never makes floats; the model does not trust that
    assert _first_param(CourseCreate, {**VALID, "price": price}) == "price"


@pytest.mark.parametrize("currency", ["XYZ", "usdollar", "", 840, None, "US"])
def test_currency_must_be_one_stripe_accepts(currency: object) -> None:
    assert _first_param(CourseCreate, {**VALID, "currency": currency}) == "currency"


def test_an_unknown_currency_is_blamed_not_the_price() -> None:
    assert _errors(CourseCreate, {**VALID, "currency": "XYZ", "price": Decimal("10.555")}) == [
        ("currency", "value_error")
    ]


# --- course bodies ---


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"description": ""}, "description"),
        ({"description": "x" * 5001}, "description"),
        ({"category": "Web"}, "category"),
        ({"category": "web--dev"}, "category"),
        ({"category": "-web"}, "category"),
        ({"category": "web dev"}, "category"),
        ({"category": "a" * 101}, "category"),
        ({"status": "published"}, "status"),  # always created as draft: not a create field
        ({"id": "crs_x"}, "id"),
        ({"metadata": {"k": 1}}, "metadata"),
    ],
)
def test_bad_course_fields_are_refused_by_name(change: dict[str, Any], param: str) -> None:
    assert _first_param(CourseCreate, {**VALID, **change}) == param


@pytest.mark.parametrize("field", ["title", "description", "price", "currency"])
def test_course_create_requires_each_field(field: str) -> None:
    data = {k: v for k, v in VALID.items() if k != field}
    assert _errors(CourseCreate, data) == [(field, "missing")]


def test_course_create_takes_the_limits_exactly() -> None:
    course = CourseCreate.model_validate(
        {
            **VALID,
            "title": "é" * 200,
            "description": "x" * 5000,
            "category": "a" * 100,
            "instructor_id": "ins_0000000000000000000000AA",
        }
    )
    assert len(course.title) == 200
    assert course.category == "a" * 100


@pytest.mark.parametrize("slug", ["web", "data-science", "a1-b2-c3", "3d"])
def test_slugs_are_lower_case_words_joined_by_single_hyphens(slug: str) -> None:
    assert CourseCreate.model_validate({**VALID, "category": slug}).category == slug


# --- metadata ---


def test_metadata_limits_are_inclusive() -> None:
    metadata = {f"k{n:02d}" + "x" * 37: "v" * 500 for n in range(50)}
    assert all(len(key) == 40 for key in metadata)
    assert CourseCreate.model_validate({**VALID, "metadata": metadata}).stored_metadata() == (
        metadata
    )


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{n}": "v" for n in range(51)},
        {"k" * 41: "v"},
        {"": "v"},
        {"k": "v" * 501},
        {"k": 1},
        {"k": True},
        {"k": {"nested": "no"}},
        ["k", "v"],
        "k=v",
    ],
)
def test_metadata_outside_the_limits_is_refused(metadata: object) -> None:
    assert _first_param(CourseCreate, {**VALID, "metadata": metadata}) == "metadata"


def test_metadata_on_create_drops_empty_and_null_values() -> None:
    body = CourseCreate.model_validate({**VALID, "metadata": {"a": "1", "b": "", "c": None}})
    assert body.stored_metadata() == {"a": "1"}
    assert CourseCreate.model_validate({**VALID, "metadata": None}).stored_metadata() == {}


def test_metadata_merges_as_stripe_does() -> None:
    current = {"a": "1", "b": "2", "c": "3"}
    assert merge_metadata(current, {"a": "9", "b": "", "c": None, "d": "4"}) == {
        "a": "9",
        "d": "4",
    }
    assert merge_metadata(current, {}) == current
    assert merge_metadata(current, None) == {}
    assert current == {"a": "1", "b": "2", "c": "3"}  # not changed in place


def test_metadata_merge_that_exceeds_fifty_keys_is_refused() -> None:
    current = {f"k{n}": "v" for n in range(50)}
    with pytest.raises(errors.InvalidRequestError) as raised:
        merge_metadata(current, {"one-more": "v"})
    assert raised.value.param == "metadata"
    # replacing one key and removing another stays within the limit
    assert len(merge_metadata(current, {"k0": "", "new": "v"})) == 50


# --- list queries ---


@pytest.mark.parametrize(
    "limit", ["abc", "1.5", "0", "101", "-1", "+5", " 5", "1e1", "", "1000000"]
)
def test_limit_outside_one_to_one_hundred_is_refused(limit: str) -> None:
    assert _first_param(ListQuery, {"limit": limit}) == "limit"


@pytest.mark.parametrize(("limit", "value"), [("1", 1), ("100", 100), ("010", 10)])
def test_limit_accepts_integers_in_range(limit: str, value: int) -> None:
    assert ListQuery.model_validate({"limit": limit}).limit == value


def test_limit_defaults_to_ten() -> None:
    assert ListQuery.model_validate({}).limit == 10


def test_both_cursors_at_once_are_refused() -> None:
    assert _errors(ListQuery, {"starting_after": "crs_a", "ending_before": "crs_b"}) == [
        ("ending_before", "value_error")
    ]


def test_empty_cursor_is_refused() -> None:
    assert _first_param(ListQuery, {"starting_after": ""}) == "starting_after"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"status": "deleted"}, "status"),
        ({"status": "Draft"}, "status"),
        ({"category": "Web"}, "category"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_course_filters_select_exact_values(query: dict[str, str], param: str) -> None:
    assert _first_param(CourseListQuery, query) == param


def test_course_filters_are_named_as_given() -> None:
    query = CourseListQuery.model_validate({"category": "web", "status": "draft", "limit": "5"})
    assert query.filters() == {"category": "web", "status": "draft"}
    assert CourseListQuery.model_validate({}).filters() == {}


# --- updates ---


def _course(**changes: Any) -> Course:
    course = Course(
        id="crs_0000000000000000000000AA",
        title="T",
        description="D",
        category="web",
        instructor_id=None,
        instructor=None,
        price=Decimal("49.99"),
        currency="USD",
        status="draft",
        enrollment_count=3,
        livemode=False,
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-01-01T00:00:00Z",
        metadata={"a": "1"},
    )
    return replace(course, **changes)


def _apply(course: Course, body: str, instructor_name: str | None = None) -> Course:
    patch = CourseUpdate.model_validate(loads_object(body))
    return patch.apply(course, instructor_name=instructor_name, updated_at="2025-02-02T00:00:00Z")


@pytest.mark.parametrize(
    ("start", "target"),
    [(start, target) for start in TRANSITIONS for target in sorted(TRANSITIONS[start])],
)
def test_allowed_transitions_change_the_status(start: str, target: str) -> None:
    updated = _apply(_course(status=start), f'{{"status": "{target}"}}')
    assert updated.status == target
    assert updated.updated_at == "2025-02-02T00:00:00Z"


@pytest.mark.parametrize(
    ("start", "target"),
    [("published", "draft"), ("archived", "draft")],
)
def test_forbidden_transitions_are_400(start: str, target: str) -> None:
    with pytest.raises(errors.InvalidRequestError) as raised:
        _apply(_course(status=start), f'{{"status": "{target}"}}')
    assert raised.value.code == "invalid_status_transition"
    assert raised.value.param == "status"


@pytest.mark.parametrize("status", ["draft", "published", "archived"])
def test_setting_the_current_status_again_changes_nothing(status: str) -> None:
    course = _course(status=status)
    assert _apply(course, f'{{"status": "{status}"}}') is course


def test_an_update_that_changes_no_value_changes_nothing() -> None:
    course = _course()
    assert _apply(course, '{"title": "T", "price": 49.990, "currency": "usd"}') is course
    assert _apply(course, "{}") is course


def test_update_sets_fields_and_keeps_the_rest() -> None:
    updated = _apply(_course(), '{"title": "New", "price": 19.5, "metadata": {"b": "2"}}')
    assert (updated.title, updated.price, updated.metadata) == (
        "New",
        Decimal("19.5"),
        {
            "a": "1",
            "b": "2",
        },
    )
    assert (updated.description, updated.enrollment_count, updated.version) == ("D", 3, 1)


def test_null_clears_category_instructor_and_metadata() -> None:
    course = _course(instructor_id="ins_0000000000000000000000AA", instructor="Ada")
    updated = _apply(course, '{"category": null, "instructor_id": null, "metadata": null}')
    assert (updated.category, updated.instructor_id, updated.instructor) == (None, None, None)
    assert updated.metadata == {}


def test_linking_an_instructor_copies_its_name() -> None:
    updated = _apply(_course(), '{"instructor_id": "ins_0000000000000000000000AB"}', "Grace")
    assert (updated.instructor_id, updated.instructor) == ("ins_0000000000000000000000AB", "Grace")


@pytest.mark.parametrize("field", ["title", "description", "price", "currency", "status"])
def test_required_fields_cannot_be_nulled(field: str) -> None:
    assert _first_param(CourseUpdate, {field: None}) == field


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"currency": "JPY"}', "currency"),  # 49.99 has decimals JPY has not
        ('{"currency": "BHD", "price": 1.2345}', "price"),
        ('{"price": 0.49}', "price"),
        ('{"price": "10"}', "price"),
    ],
)
def test_a_currency_or_price_change_rechecks_the_price(body: str, param: str) -> None:
    with pytest.raises((errors.InvalidRequestError, ValidationError)) as raised:
        _apply(_course(), body)
    error = raised.value
    if isinstance(error, errors.InvalidRequestError):
        assert error.param == param
    else:
        assert isinstance(error, ValidationError)
        assert error.errors()[0]["loc"][0] == param


def test_a_currency_change_with_a_fitting_price_is_accepted() -> None:
    updated = _apply(_course(), '{"currency": "jpy", "price": 5000}')
    assert (updated.currency, updated.price) == ("JPY", Decimal(5000))


def test_course_output_writes_exact_numbers() -> None:
    out = CourseOut.from_domain(_course(price=Decimal("0.290")))
    text = dumps(out)
    assert '"price":0.29,' in text
    assert '"object":"course"' in text
    assert set(loads_object(text)) == {
        "id", "object", "title", "description", "category", "instructor", "instructor_id",
        "price", "currency", "status", "enrollment_count", "metadata", "livemode", "created_at",
        "updated_at",
    }  # fmt: skip


# --- instructors ---


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": " "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": "a b@example.com"}, "email"),
        ({"email": "a@example..com"}, "email"),
        ({"bio": "x" * 5001}, "bio"),
        ({"bio": ""}, "bio"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"website": "https://example.com"}, "website"),
    ],
)
def test_bad_instructor_fields_are_refused_by_name(change: dict[str, Any], param: str) -> None:
    assert _first_param(InstructorCreate, {"name": "Ada", **change}) == param


def test_instructor_needs_only_a_name() -> None:
    assert _errors(InstructorCreate, {}) == [("name", "missing")]
    body = InstructorCreate.model_validate(
        {"name": "Ada", "email": "ada+x@Example.org", "bio": None}
    )
    assert (body.email, body.bio, body.stored_metadata()) == ("ada+x@Example.org", None, {})
