"""Hostile input gets a clear 400 (or 401), never a silent store: duplicate JSON keys, bytes that
are not UTF-8, control characters, two Authorization headers, prices finer than their currency."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from functions.courses import create_course, update_course
from functions.instructors import create_instructor
from functions.students import create_student
from learnflow import deps
from learnflow.db.courses import CourseRepository
from tests.support.handlers import Caller, Context, Handler, Reply

COURSE = '{"title": "T", "description": "D", "price": 10, "currency": "USD"}'


pytestmark = pytest.mark.usefixtures("module_table")


def create(caller: Caller, body: str, **overrides: Any) -> Reply:
    return caller.call(create_course.lambda_handler, "create_course", body=body, **overrides)


def nothing_stored(caller: Caller) -> bool:
    return deps.repository(CourseRepository).count(caller.tenant) == 0


@pytest.mark.parametrize(
    "body",
    [
        '{"title": "T", "title": "U", "description": "D", "price": 10, "currency": "USD"}',
        '{"title": "T", "description": "D", "price": 10, "currency": "USD",'
        ' "metadata": {"k": "a", "k": "b"}}',
    ],
    ids=["top-level", "nested"],
)
def test_an_object_naming_a_key_twice_is_400_invalid_json(body: str) -> None:
    caller = Caller()
    reply = create(caller, body)
    assert (reply.status, reply.error["type"], reply.error["code"]) == (
        400,
        "invalid_request_error",
        "invalid_json",
    )
    assert nothing_stored(caller)


@pytest.mark.parametrize("depth", [40, 974, 2_000, 50_000])
@pytest.mark.parametrize(
    ("handler", "event"),
    [
        (create_course.lambda_handler, "create_course"),
        (create_student.lambda_handler, "create_student"),
    ],
    ids=["course", "student"],
)
def test_a_body_nested_too_deeply_is_400_invalid_json(
    handler: Handler, event: str, depth: int
) -> None:
    """Anywhere in the body, at any depth up to what the interpreter itself cannot parse (once
    a 500 from the validators' recursion, from about 974 levels in metadata)."""
    caller = Caller()
    body = '{"name": "N", "email": "n@example.com", "metadata": ' + "[" * depth + "]" * depth + "}"
    reply = caller.call(handler, event, body=body)
    assert (reply.status, reply.error["code"]) == (400, "invalid_json")
    assert "more than 32 levels deep" in reply.error["message"]
    assert nothing_stored(caller)


@pytest.mark.parametrize(
    "raw",
    [b'{"title": "\xff\xfe", "description": "D", "price": 10, "currency": "USD"}', b"\xc3\x28"],
    ids=["in-a-string", "bare"],
)
def test_a_body_that_is_not_utf8_is_400_invalid_json(raw: bytes) -> None:
    caller = Caller()
    reply = create(caller, base64.b64encode(raw).decode(), isBase64Encoded=True)
    assert (reply.status, reply.error["code"]) == (400, "invalid_json")
    assert nothing_stored(caller)


def test_a_utf8_body_sent_as_base64_is_read() -> None:
    caller = Caller()
    body = '{"title": "Café", "description": "D", "price": 10, "currency": "USD"}'
    reply = create(caller, base64.b64encode(body.encode()).decode(), isBase64Encoded=True)
    assert (reply.status, reply.body["title"]) == (201, "Café")


@pytest.mark.parametrize(
    ("handler", "event", "body", "param"),
    [
        (create_course.lambda_handler, "create_course", {"title": "a\u0000b"}, "title"),
        (create_course.lambda_handler, "create_course", {"title": "a\nb"}, "title"),
        (create_course.lambda_handler, "create_course", {"description": "a\u0000"}, "description"),
        (
            create_course.lambda_handler,
            "create_course",
            {"description": "a\u001b[2J"},
            "description",
        ),
        (create_course.lambda_handler, "create_course", {"metadata": {"k\u0007": "v"}}, "metadata"),
        (create_course.lambda_handler, "create_course", {"metadata": {"k": "v\u0085"}}, "metadata"),
        (create_instructor.lambda_handler, "create_instructor", {"name": "A\u007f"}, "name"),
        (create_instructor.lambda_handler, "create_instructor", {"bio": "a\u0000"}, "bio"),
        (create_student.lambda_handler, "create_student", {"name": "A\tB"}, "name"),
        (create_student.lambda_handler, "create_student", {"email": "a\u0000@x.com"}, "email"),
    ],
)
def test_control_characters_are_400_naming_the_field(
    handler: Handler, event: str, body: dict[str, Any], param: str
) -> None:
    bases: dict[str, dict[str, Any]] = {
        "create_course": {
            "title": "T",
            "description": "D",
            "price": Decimal(10),
            "currency": "USD",
        },
        "create_instructor": {"name": "N"},
        "create_student": {"email": "s@example.com", "name": "N"},
    }
    reply = Caller().call(handler, event, body={**bases[event], **body})
    assert (reply.status, reply.error["code"], reply.error["param"]) == (
        400,
        "parameter_invalid",
        param,
    )


@pytest.mark.parametrize(
    ("handler", "event", "body"),
    [
        (
            create_course.lambda_handler,
            "create_course",
            {"title": "T", "description": "Line one\nLine\ttwo\r\n", "price": 0, "currency": "EUR"},
        ),
        (create_instructor.lambda_handler, "create_instructor", {"name": "N", "bio": "a\nb\tc"}),
    ],
)
def test_newlines_and_tabs_are_text_in_description_and_bio(
    handler: Handler, event: str, body: dict[str, Any]
) -> None:
    reply = Caller().call(handler, event, body=body)
    assert reply.status == 201, reply.body


def two_authorizations(event: dict[str, Any]) -> dict[str, Any]:
    event["multiValueHeaders"]["Authorization"] = ["Bearer sk_test_" + "A" * 32] * 2
    return event


def test_two_authorization_headers_are_401_before_anything_counts() -> None:
    caller = Caller(rate_limit=1)
    event = two_authorizations(caller.event("create_course", body=COURSE))
    result = create_course.lambda_handler(event, Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 401
    assert '"authentication_error"' in result["body"]
    assert "X-RateLimit-Remaining" not in (result.get("headers") or {})
    # the refusal did not count: the one request of the minute still passes
    assert create(caller, COURSE).status == 201


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"price": Decimal("10.5"), "currency": "JPY"}, "price"),
        ({"price": Decimal("49.999"), "currency": "USD"}, "price"),
        ({"price": Decimal("1.2345"), "currency": "KWD"}, "price"),
        ({"price": "10", "currency": "USD"}, "price"),
        ({"price": Decimal("10"), "currency": "XYZ"}, "currency"),
    ],
)
def test_a_price_finer_than_its_currency_names_price(body: dict[str, Any], param: str) -> None:
    caller = Caller()
    reply = caller.call(
        create_course.lambda_handler,
        "create_course",
        body={"title": "T", "description": "D", **body},
    )
    assert (reply.status, reply.error["param"]) == (400, param)


def test_a_patch_to_a_price_finer_than_the_currency_names_price() -> None:
    caller = Caller()
    course = create(caller, COURSE).body["id"]
    reply = caller.call(
        update_course.lambda_handler,
        "update_course",
        path=f"/courses/{course}",
        path_params={"course_id": course},
        body={"price": Decimal("10.5"), "currency": "JPY"},
    )
    assert (reply.status, reply.error["param"]) == (400, "price")
