"""Students in-process: the four routes' handlers fed events/, over moto's table (template.yaml).

The module shares one table, and each `Api()` is an account of its own. Calls run one at a time
on a worker thread (tests/support/handlers.py: CPython 3.13.0's frame-stack chunks thrash under
pytest's deep stack), except in the race tests, which call separate copies of the handlers from
several threads at once, as separate Lambda containers would.
"""

from __future__ import annotations

import base64
import builtins
import itertools
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from functions.students import create_student, get_student, list_students, update_student
from learnflow import ids
from tests.support.handlers import Caller, Context, Reply, container_copy, invoke, parse
from tests.support.handlers import separate_containers as containers
from tests.support.pages import walk_backward, walk_forward

STUDENT_ID = re.compile(r"^stu_[0-9A-Za-z]{24}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
STUDENT_FIELDS = {"id", "object", "email", "name", "metadata", "livemode", "created_at"}
RACERS = 8

pytestmark = pytest.mark.usefixtures("module_table")


@dataclass
class Api(Caller):
    """The student routes, called as API Gateway calls them, for one caller."""

    # --- the four routes ---

    def create_event(self, body: Any, *, key: str | None = None) -> dict[str, Any]:
        return self.event("create_student", body=body, key=key)

    def create(self, body: Any, *, key: str | None = None, **overrides: Any) -> Reply:
        return self.call(
            create_student.lambda_handler, "create_student", body=body, key=key, **overrides
        )

    def get(self, student_id: str) -> Reply:
        return self.call(
            get_student.lambda_handler,
            "get_student",
            path=f"/students/{student_id}",
            path_params={"student_id": student_id},
        )

    def patch_event(self, student_id: str, body: Any, *, key: str | None = None) -> dict[str, Any]:
        return self.event(
            "update_student",
            path=f"/students/{student_id}",
            path_params={"student_id": student_id},
            body=body,
            key=key,
        )

    def patch(self, student_id: str, body: Any, *, key: str | None = None) -> Reply:
        return invoke(update_student.lambda_handler, self.patch_event(student_id, body, key=key))

    def list(self, **query: str) -> Reply:
        return self.call(list_students.lambda_handler, "list_students", query=query)

    # --- conveniences ---

    def student(self, email: str, name: str = "A Student", **body: Any) -> dict[str, Any]:
        reply = self.create({"email": email, "name": name, **body})
        assert reply.status == 201, reply.body
        return reply.body

    def total(self) -> int:
        reply = self.list()
        assert reply.status == 200, reply.body
        return int(reply.body["total_count"])

    def holder(self, email: str) -> builtins.list[str]:
        """The ids the list filtered by `email` shows (at most one)."""
        reply = self.list(email=email)
        assert reply.status == 200, reply.body
        return [s["id"] for s in reply.body["data"]]


def assert_error(
    reply: Reply, status: int, code: str, param: str | None, kind: str = "invalid_request_error"
) -> None:
    assert reply.status == status, reply.body
    error = reply.error
    assert (error["type"], error.get("code"), error.get("param")) == (kind, code, param), error


def assert_not_found(reply: Reply) -> None:
    """404 `resource_missing` (the contract names no `param` for it: none, or the id's)."""
    assert reply.status == 404, reply.body
    error = reply.error
    assert (error["type"], error.get("code")) == ("invalid_request_error", "resource_missing")
    assert error.get("param") in (None, "id"), error


def listed_ids(api: Api, limit: int = 7) -> list[str]:
    return [s["id"] for page in walk_forward(api, limit) for s in page["data"]]


# =========================================================================== POST /students


def test_create_answers_201_with_the_student() -> None:
    api = Api()
    reply = api.create(
        {"email": "grace@example.com", "name": "Grace Hopper", "metadata": {"cohort": "2025"}}
    )
    assert reply.status == 201, reply.body
    body = reply.body
    assert set(body) == STUDENT_FIELDS
    assert STUDENT_ID.match(body["id"])
    assert ids.is_valid(body["id"], "stu")
    assert body == {
        "id": body["id"],
        "object": "student",
        "email": "grace@example.com",
        "name": "Grace Hopper",
        "metadata": {"cohort": "2025"},
        "livemode": False,
        "created_at": body["created_at"],
    }
    assert ISO.match(body["created_at"])
    fetched = api.get(body["id"])
    assert (fetched.status, fetched.body) == (200, body)
    assert api.total() == 1


def test_a_live_mode_student_says_livemode_true_and_metadata_defaults_to_empty() -> None:
    live = Api(mode="live")
    reply = live.create({"email": "ada@example.com", "name": "Ada"})
    assert reply.status == 201
    assert (reply.body["livemode"], reply.body["metadata"]) == (True, {})
    assert live.get(reply.body["id"]).body == reply.body
    assert live.list().body["data"] == [reply.body]
    assert live.patch(reply.body["id"], {"name": "Ada L."}).body["livemode"] is True


def test_email_and_name_are_kept_as_given() -> None:
    api = Api()
    body = api.student("Ada.Lovelace+maths@Example.CO.uk", "  Ada  Lovelace ")
    assert (body["email"], body["name"]) == ("Ada.Lovelace+maths@Example.CO.uk", "  Ada  Lovelace ")


def test_ids_sort_in_creation_order_and_do_not_follow_one_another() -> None:
    api = Api()
    created = [api.student(f"s{n}@example.com")["id"] for n in range(6)]
    assert all(STUDENT_ID.match(i) for i in created)
    assert created == sorted(created)
    assert len(set(created)) == 6
    # unguessable: the random part of one id does not give the next (no counter steps of one)

    def value(student_id: str) -> int:
        number = 0
        for char in student_id[4:]:
            number = number * 62 + ids.ALPHABET.index(char)
        return number

    steps = [value(b) - value(a) for a, b in itertools.pairwise(created)]
    assert all(step > 1 for step in steps), steps
    assert listed_ids(api) == list(reversed(created))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "email"),
        ({"name": "Ada"}, "email"),
        ({"email": "ada@example.com"}, "name"),
        ({"email": "ada@example.com", "metadata": {"k": "v"}}, "name"),
    ],
)
def test_a_missing_required_field_is_400_parameter_missing(
    body: dict[str, Any], param: str
) -> None:
    api = Api()
    assert_error(api.create(body), 400, "parameter_missing", param)
    assert api.total() == 0


def test_a_body_of_only_blanks_is_not_empty_and_not_json() -> None:
    api = Api()
    assert_error(api.create("   "), 400, "invalid_json", None)
    assert api.total() == 0


@pytest.mark.parametrize("body", ["", None])
def test_an_empty_post_body_reads_as_an_empty_object(body: str | None) -> None:
    api = Api()
    reply = api.create(body)
    assert reply.status == 400
    assert (reply.error["type"], reply.error["code"]) == (
        "invalid_request_error",
        "parameter_missing",
    )
    assert reply.error["param"] in ("email", "name")
    assert api.total() == 0


@pytest.mark.parametrize(
    "email",
    [
        "nope",
        "",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "ada lovelace@example.com",
        "ada@example..com",
        "ada..l@example.com",
        "ada@-example.com",
        "a" * 250 + "@example.com",
        123,
        ["ada@example.com"],
        None,
    ],
)
def test_an_invalid_email_is_400_parameter_invalid(email: Any) -> None:
    api = Api()
    assert_error(api.create({"email": email, "name": "Ada"}), 400, "parameter_invalid", "email")
    assert api.total() == 0


@pytest.mark.parametrize("name", ["", " ", " \u3000 ", "x" * 201, 5, True, ["Ada"], None])
def test_an_invalid_name_is_400_parameter_invalid(name: Any) -> None:
    api = Api()
    assert_error(
        api.create({"email": "ada@example.com", "name": name}), 400, "parameter_invalid", "name"
    )
    assert api.total() == 0


@pytest.mark.parametrize("name", ["x", "x" * 200, "Zoë Ñúñez 李"])
def test_names_of_one_to_200_characters_are_accepted(name: str) -> None:
    assert Api().student("ada@example.com", name)["name"] == name


@pytest.mark.parametrize(
    "metadata",
    [
        ["k", "v"],
        "k=v",
        5,
        {"k": 1},
        {"k": True},
        {"k": {"nested": "v"}},
        {"k": ["v"]},
        {"": "v"},
        {"k" * 41: "v"},
        {"k": "v" * 501},
        {f"k{n}": "v" for n in range(51)},
    ],
)
def test_invalid_metadata_is_400_on_metadata(metadata: Any) -> None:
    api = Api()
    reply = api.create({"email": "ada@example.com", "name": "Ada", "metadata": metadata})
    assert_error(reply, 400, "parameter_invalid", "metadata")
    assert api.total() == 0


def test_metadata_at_its_limits_is_accepted() -> None:
    metadata = {f"key{n:02d}" + "k" * 35: "v" * 500 for n in range(50)}
    assert all(len(k) == 40 for k in metadata)
    api = Api()
    body = api.student("ada@example.com", metadata=metadata)
    assert body["metadata"] == metadata
    assert api.get(body["id"]).body["metadata"] == metadata


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"phone": "555"}, "phone"),
        ({"id": "stu_000000000000000000000000"}, "id"),
        ({"object": "student"}, "object"),
        ({"livemode": True}, "livemode"),
        ({"created_at": "2023-10-15T14:32:00Z"}, "created_at"),
        ({"Email": "ada@example.com"}, "Email"),
    ],
)
def test_an_unknown_field_is_400_parameter_unknown(extra: dict[str, Any], param: str) -> None:
    api = Api()
    reply = api.create({"email": "ada@example.com", "name": "Ada", **extra})
    assert_error(reply, 400, "parameter_unknown", param)
    assert api.total() == 0


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '[{"email": "ada@example.com", "name": "Ada"}]',
        '"ada@example.com"',
        "1",
        "null",
        "true",
        "{",
        '{"email": "ada@example.com", "name": "Ada",}',
        "{'email': 'ada@example.com', 'name': 'Ada'}",
        '{"email": "ada@example.com", "email": "bob@example.com", "name": "Ada"}',
        '{"email": "ada@example.com", "name": "Ada", "name": "Ada"}',
        '{"email": "ada@example.com", "name": "Ada", "metadata": {"k": "1", "k": "2"}}',
    ],
)
def test_a_body_that_is_no_json_object_is_400_invalid_json(body: str) -> None:
    api = Api()
    assert_error(api.create(body), 400, "invalid_json", None)
    assert api.total() == 0


def test_a_body_that_is_not_utf8_is_400_invalid_json() -> None:
    api = Api()
    raw = b'{"email": "ada@example.com", "name": "Ad\xe9 \xff"}'
    reply = api.create(base64.b64encode(raw).decode("ascii"), isBase64Encoded=True)
    assert_error(reply, 400, "invalid_json", None)
    assert api.total() == 0


def test_a_base64_body_that_is_utf8_is_read() -> None:
    """The counterpart of the test above: base64 itself is fine, only bad bytes are refused."""
    raw = '{"email": "ada@example.com", "name": "Adé"}'.encode()
    reply = Api().create(base64.b64encode(raw).decode("ascii"), isBase64Encoded=True)
    assert (reply.status, reply.body.get("name")) == (201, "Adé")


CONTROL_CASES: list[tuple[dict[str, Any], str]] = [
    ({"name": "Ada\x00"}, "name"),
    ({"name": "Ada\tLovelace"}, "name"),
    ({"name": "Ada\nLovelace"}, "name"),
    ({"name": "Ada\rLovelace"}, "name"),
    ({"name": "Ada\x1b[31m"}, "name"),
    ({"name": "Ada\x7f"}, "name"),
    ({"name": "Ada\x85"}, "name"),
    ({"email": "ada\x00@example.com"}, "email"),
    ({"email": "ada@example.com\n"}, "email"),
    ({"metadata": {"k\x00": "v"}}, "metadata"),
    ({"metadata": {"k": "v\x00"}}, "metadata"),
    ({"metadata": {"k": "line\nbreak"}}, "metadata"),
]


@pytest.mark.parametrize(("change", "param"), CONTROL_CASES)
def test_control_characters_in_a_string_field_are_400_with_param(
    change: dict[str, Any], param: str
) -> None:
    api = Api()
    reply = api.create({"email": "ada@example.com", "name": "Ada", **change})
    assert_error(reply, 400, "parameter_invalid", param)
    assert api.total() == 0


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("create", '{"email": "ada@example.com", "name": "Ada", "metadata": {"k": "\\udfff"}}'),
        ("create", '{"email": "ada@example.com", "name": "Ada", "metadata": {"\\ud800": "v"}}'),
        ("patch", '{"metadata": {"k": "v\\ud83d"}}'),
    ],
)
def test_a_string_that_is_not_unicode_text_is_a_400_not_a_500(route: str, body: str) -> None:
    """`"\\udfff"` is a JSON escape for half a surrogate pair: no character, and nothing UTF-8
    can encode. The body is refused as the same escape in `name` is (400 on the field) or as a
    body that is not UTF-8 (400 invalid_json); never a 500."""
    api = Api()
    if route == "create":
        reply = api.create(body)
    else:
        student = api.student("grace@example.com", metadata={"k": "v"})
        reply = api.patch(student["id"], body)
    assert reply.status == 400, reply.body
    assert reply.error["type"] == "invalid_request_error"
    assert (reply.error["code"], reply.error.get("param")) in (
        ("parameter_invalid", "metadata"),
        ("invalid_json", None),
    )
    assert api.total() == (0 if route == "create" else 1)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"email": "ada@example.com", "name": "\\ud800"}', "name"),
        ('{"email": "ada\\udfff@example.com", "name": "Ada"}', "email"),
    ],
)
def test_a_lone_surrogate_in_name_or_email_is_400_on_the_field(body: str, param: str) -> None:
    api = Api()
    assert_error(api.create(body), 400, "parameter_invalid", param)
    assert api.total() == 0


# --------------------------------------------------------------------------- uniqueness


@pytest.mark.parametrize(
    "again", ["ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.Com", "aDa@eXample.com"]
)
def test_an_address_in_use_in_any_letter_case_is_409_email_taken(again: str) -> None:
    api = Api()
    first = api.student("ada@example.com", "Ada")
    reply = api.create({"email": again, "name": "Another Ada"})
    assert_error(reply, 409, "email_taken", "email")
    assert listed_ids(api) == [first["id"]]
    assert api.total() == 1
    assert api.get(first["id"]).body == first


def test_an_address_may_exist_once_per_account_and_mode() -> None:
    test = Api()
    tenants = [test, test.as_mode("live"), Api(), Api(mode="live")]
    made = [t.student("Ada@Example.com")["id"] for t in tenants]
    assert len(set(made)) == 4
    for tenant, student_id in zip(tenants, made, strict=True):
        assert_error(
            tenant.create({"email": "ada@example.com", "name": "Twin"}), 409, "email_taken", "email"
        )
        assert listed_ids(tenant) == [student_id]
        assert tenant.holder("ADA@EXAMPLE.COM") == [student_id]
        assert tenant.total() == 1


# =========================================================================== GET /students/{id}


@pytest.mark.parametrize(
    "student_id",
    [
        "nope",
        "stu_123",
        "stu_" + "0" * 23,
        "stu_" + "0" * 25,
        "STU_" + "0" * 24,
        "crs_" + "0" * 24,
        "stu_" + "0" * 23 + "-",
        "stu_" + "0" * 24 + "%00",
    ],
)
def test_get_by_a_malformed_id_is_404_resource_missing(student_id: str) -> None:
    assert_not_found(Api().get(student_id))


def test_get_by_an_unknown_id_is_404_resource_missing() -> None:
    api = Api()
    api.student("ada@example.com")
    assert_not_found(api.get(ids.new_id("stu")))


def test_another_account_or_modes_student_is_404_exactly_as_a_missing_one() -> None:
    owner = Api()
    student = owner.student("ada@example.com")
    missing = owner.get(ids.new_id("stu"))
    for stranger in (Api(), owner.as_mode("live"), Api(mode="live")):
        stranger.student("someone@example.com")
        reply = stranger.get(student["id"])
        assert reply.status == 404
        assert {k: v for k, v in reply.error.items() if k not in ("message", "request_id")} == {
            k: v for k, v in missing.error.items() if k not in ("message", "request_id")
        }
        assert_not_found(stranger.patch(student["id"], {"name": "Mine now"}))
        assert student["id"] not in listed_ids(stranger)
        assert stranger.total() == 1
        assert stranger.holder("ada@example.com") == []
    assert owner.get(student["id"]).body == student


# =========================================================================== GET /students


def test_the_list_envelope_and_the_default_page_of_ten() -> None:
    api = Api()
    created = [api.student(f"s{n:02d}@example.com", f"Student {n}") for n in range(12)]
    reply = api.list()
    assert reply.status == 200
    body = reply.body
    assert set(body) == {"object", "url", "data", "has_more", "total_count"}
    assert (body["object"], body["url"], body["has_more"], body["total_count"]) == (
        "list",
        "/v2/students",
        True,
        12,
    )
    assert body["data"] == list(reversed(created))[:10]


def test_an_empty_list() -> None:
    reply = Api().list()
    assert reply.status == 200
    assert reply.body == {
        "object": "list",
        "url": "/v2/students",
        "data": [],
        "has_more": False,
        "total_count": 0,
    }


def test_walking_the_list_gives_full_pages_newest_first_with_no_gap() -> None:
    api = Api()
    created = [api.student(f"s{n:02d}@example.com")["id"] for n in range(13)]
    Api().student("noise@example.com")
    api.as_mode("live").student("noise@example.com")
    newest_first = list(reversed(created))
    forward = {1: [1] * 13, 5: [5, 5, 3], 6: [6, 6, 1], 12: [12, 1], 13: [13], 100: [13]}
    for limit, sizes in forward.items():
        pages = walk_forward(api, limit)
        assert [len(p["data"]) for p in pages] == sizes, limit
        assert [p["has_more"] for p in pages] == [True] * (len(sizes) - 1) + [False], limit
        assert all(p["total_count"] == 13 for p in pages)
        assert all((p["object"], p["url"]) == ("list", "/v2/students") for p in pages)
        assert [s["id"] for p in pages for s in p["data"]] == newest_first, limit
    backward = {5: [5, 5, 2], 4: [4, 4, 4], 12: [12], 100: [12]}
    for limit, sizes in backward.items():
        pages = walk_backward(api, limit, created[0])
        assert [len(p["data"]) for p in pages] == sizes, limit
        assert [p["has_more"] for p in pages] == [True] * (len(sizes) - 1) + [False], limit
        assert all(p["total_count"] == 13 for p in pages)
        # each page is newest first; the last page fetched holds the newest
        walked = [s["id"] for p in reversed(pages) for s in p["data"]]
        assert walked == newest_first[:-1], limit


def test_a_cursor_in_the_middle_pages_both_ways() -> None:
    api = Api()
    created = [api.student(f"s{n:02d}@example.com")["id"] for n in range(9)]
    newest_first = list(reversed(created))
    after = api.list(limit="3", starting_after=newest_first[4]).body
    assert ([s["id"] for s in after["data"]], after["has_more"]) == (newest_first[5:8], True)
    before = api.list(limit="3", ending_before=newest_first[4]).body
    assert ([s["id"] for s in before["data"]], before["has_more"]) == (newest_first[1:4], True)
    last = api.list(limit="3", starting_after=newest_first[5]).body
    assert ([s["id"] for s in last["data"]], last["has_more"]) == (newest_first[6:9], False)
    first = api.list(limit="3", ending_before=newest_first[3]).body
    assert ([s["id"] for s in first["data"]], first["has_more"]) == (newest_first[0:3], False)
    assert api.list(starting_after=newest_first[-1]).body["data"] == []
    assert api.list(ending_before=newest_first[0]).body["data"] == []


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", " 5", "+5", "1e1", "\uff11"])
def test_a_bad_limit_is_400_on_limit(limit: str) -> None:
    assert_error(Api().list(limit=limit), 400, "parameter_invalid", "limit")


def test_both_cursors_at_once_are_400() -> None:
    api = Api()
    older, newest = (s["id"] for s in [api.student("b@example.com"), api.student("a@example.com")])
    reply = api.list(starting_after=older, ending_before=newest)
    assert reply.status == 400
    assert (reply.error["type"], reply.error["code"]) == (
        "invalid_request_error",
        "parameter_invalid",
    )
    assert reply.error["param"] in ("starting_after", "ending_before")


def test_a_cursor_that_is_no_student_of_this_list_is_400_resource_missing() -> None:
    api = Api()
    for n in range(3):
        api.student(f"s{n}@example.com")
    cursors = {
        "nobody": ids.new_id("stu"),
        "malformed": "stu_nope",
        "course": ids.new_id("crs"),
        "other account": Api().student("s1@example.com")["id"],
        "other mode": api.as_mode("live").student("s1@example.com")["id"],
    }
    for whose, cursor in cursors.items():
        for param in ("starting_after", "ending_before"):
            reply = api.list(**{param: cursor})
            assert reply.status == 400, (whose, param)
            assert_error(reply, 400, "resource_missing", param)


def test_the_email_filter_is_case_insensitive_and_exact() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada")
    grace = api.student("Grace@Example.com", "Grace")
    api.student("ada@example.org", "Not Ada")
    api.student("xada@example.com", "Not Ada either")
    Api().student("nobody@example.com")
    for query, found in (
        ("ada@example.com", ada),
        ("ADA@EXAMPLE.COM", ada),
        ("Ada@Example.Com", ada),
        ("grace@example.com", grace),
        ("GRACE@EXAMPLE.COM", grace),
    ):
        reply = api.list(email=query)
        assert reply.status == 200
        assert (reply.body["data"], reply.body["has_more"], reply.body["total_count"]) == (
            [found],
            False,
            1,
        ), query
        assert reply.body["url"] == "/v2/students"
    for query in ("nobody@example.com", "ada@example", "da@example.com", "ada@example.co"):
        reply = api.list(email=query)
        assert reply.status == 200
        assert (reply.body["data"], reply.body["has_more"], reply.body["total_count"]) == (
            [],
            False,
            0,
        ), query


def test_the_email_filter_keeps_the_cursor_rules() -> None:
    api = Api()
    ada = api.student("ada@example.com")["id"]
    other = api.student("bob@example.com")["id"]
    for param in ("starting_after", "ending_before"):
        # a student of the tenant, but not of this filtered list
        assert_error(
            api.list(email="ADA@example.com", **{param: other}), 400, "resource_missing", param
        )
        assert_error(
            api.list(email="ada@example.com", **{param: ids.new_id("stu")}),
            400,
            "resource_missing",
            param,
        )
        # the one student of the list is a fine cursor: nothing lies beyond it either way
        reply = api.list(email="ada@example.com", **{param: ada})
        assert reply.status == 200
        assert (reply.body["data"], reply.body["has_more"], reply.body["total_count"]) == (
            [],
            False,
            1,
        )
    assert_error(api.list(email="ada@example.com", limit="0"), 400, "parameter_invalid", "limit")
    reply = api.list(email="ada@example.com", starting_after=ada, ending_before=ada)
    assert reply.status == 400


@pytest.mark.parametrize(
    "name", ["name", "Email", "EMAIL", "status", "expand", "created", "starting_before", "offset"]
)
def test_an_unknown_query_parameter_is_400_parameter_unknown(name: str) -> None:
    assert_error(Api().list(**{name: "x"}), 400, "parameter_unknown", name)


# =========================================================================== PATCH /students/{id}


def test_patch_changes_only_what_it_names() -> None:
    api = Api()
    created = api.student("ada@example.com", "Ada", metadata={"a": "1"})
    reply = api.patch(created["id"], {"name": "Ada Lovelace"})
    assert reply.status == 200, reply.body
    assert reply.body == {**created, "name": "Ada Lovelace"}
    assert api.get(created["id"]).body == reply.body
    reply = api.patch(created["id"], {"email": "countess@example.com", "metadata": {"b": "2"}})
    assert reply.status == 200, reply.body
    expected = {
        **created,
        "name": "Ada Lovelace",
        "email": "countess@example.com",
        "metadata": {"a": "1", "b": "2"},
    }
    assert reply.body == expected
    assert api.get(created["id"]).body == expected
    assert api.total() == 1


@pytest.mark.parametrize("body", [{}, "", None])
def test_an_empty_patch_changes_nothing(body: dict[str, Any] | str | None) -> None:
    api = Api()
    created = api.student("ada@example.com", metadata={"k": "v"})
    reply = api.patch(created["id"], body)
    assert (reply.status, reply.body) == (200, created)
    assert api.get(created["id"]).body == created


def test_metadata_merges_as_stripe_does() -> None:
    api = Api()
    created = api.student("ada@example.com", metadata={"a": "1", "b": "2", "c": "3"})
    reply = api.patch(created["id"], '{"metadata": {"a": "", "b": null, "c": "33", "d": "4"}}')
    assert (reply.status, reply.body["metadata"]) == (200, {"c": "33", "d": "4"})
    assert api.get(created["id"]).body["metadata"] == {"c": "33", "d": "4"}
    # removing a key that is not there changes nothing
    assert api.patch(created["id"], {"metadata": {"zz": ""}}).body["metadata"] == {
        "c": "33",
        "d": "4",
    }
    assert api.patch(created["id"], {"metadata": {}}).body["metadata"] == {"c": "33", "d": "4"}
    reply = api.patch(created["id"], '{"metadata": null}')
    assert (reply.status, reply.body["metadata"]) == (200, {})
    assert api.get(created["id"]).body == {**created, "metadata": {}}


def test_merged_metadata_must_still_fit_50_keys() -> None:
    api = Api()
    full = {f"k{n}": "v" for n in range(50)}
    created = api.student("ada@example.com", metadata=full)
    reply = api.patch(created["id"], {"metadata": {"one_more": "v"}, "name": "Renamed"})
    assert_error(reply, 400, "parameter_invalid", "metadata")
    assert api.get(created["id"]).body == created
    # one out, one in: still 50
    reply = api.patch(created["id"], {"metadata": {"k0": "", "one_more": "v"}})
    assert reply.status == 200
    assert len(reply.body["metadata"]) == 50
    assert "k0" not in reply.body["metadata"]
    assert reply.body["metadata"]["one_more"] == "v"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ('{"email": null}', "parameter_invalid", "email"),
        ('{"name": null}', "parameter_invalid", "name"),
        ('{"name": null, "metadata": {"k": "v2"}}', "parameter_invalid", "name"),
        ('{"email": "nope"}', "parameter_invalid", "email"),
        ('{"email": ""}', "parameter_invalid", "email"),
        ('{"email": 5}', "parameter_invalid", "email"),
        ('{"name": ""}', "parameter_invalid", "name"),
        ('{"name": "   "}', "parameter_invalid", "name"),
        ('{"name": "' + "x" * 201 + '"}', "parameter_invalid", "name"),
        ('{"name": "Ada\\u0000"}', "parameter_invalid", "name"),
        ('{"email": "ada\\u0007@example.com"}', "parameter_invalid", "email"),
        ('{"metadata": {"k": 5}}', "parameter_invalid", "metadata"),
        ('{"metadata": {"k": "v\\u0000"}}', "parameter_invalid", "metadata"),
        ('{"metadata": ["k"]}', "parameter_invalid", "metadata"),
        ('{"metadata": "k"}', "parameter_invalid", "metadata"),
        ('{"metadata": {"' + "k" * 41 + '": "v"}}', "parameter_invalid", "metadata"),
        ('{"id": "stu_000000000000000000000000"}', "parameter_unknown", "id"),
        ('{"livemode": true}', "parameter_unknown", "livemode"),
        ('{"name": "Ada", "phone": "555"}', "parameter_unknown", "phone"),
        ("[]", "invalid_json", None),
        ("null", "invalid_json", None),
        ('{"name": "A", "name": "B"}', "invalid_json", None),
        ('{"name": "A"', "invalid_json", None),
    ],
)
def test_a_bad_patch_is_400_and_changes_nothing(body: str, code: str, param: str | None) -> None:
    api = Api()
    created = api.student("ada@example.com", "Ada", metadata={"k": "v"})
    assert_error(api.patch(created["id"], body), 400, code, param)
    assert api.get(created["id"]).body == created


def test_patch_of_a_body_that_is_not_utf8_is_400_invalid_json() -> None:
    api = Api()
    created = api.student("ada@example.com", "Ada")
    event = api.patch_event(created["id"], "x")
    event["body"] = base64.b64encode(b'{"name": "\xff"}').decode("ascii")
    event["isBase64Encoded"] = True
    reply = invoke(update_student.lambda_handler, event)
    assert_error(reply, 400, "invalid_json", None)
    assert api.get(created["id"]).body == created


def test_patch_of_a_missing_or_malformed_id_is_404() -> None:
    api = Api()
    api.student("ada@example.com")
    for student_id in (ids.new_id("stu"), "stu_nope", "nope", "crs_" + "0" * 24):
        assert_not_found(api.patch(student_id, {"name": "x"}))
    assert api.total() == 1


def test_an_email_change_moves_the_address() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada")
    reply = api.patch(ada["id"], {"email": "Countess@Example.com"})
    assert (reply.status, reply.body["email"]) == (200, "Countess@Example.com")
    assert api.holder("countess@example.com") == [ada["id"]]
    assert api.holder("ada@example.com") == []
    # the new address is held ...
    assert_error(
        api.create({"email": "COUNTESS@example.com", "name": "Impostor"}),
        409,
        "email_taken",
        "email",
    )
    # ... and the old one is free for another student
    other = api.student("ADA@example.com", "Another Ada")
    assert api.holder("ada@example.com") == [other["id"]]
    assert api.total() == 2
    # and the first student may not take it back now
    assert_error(api.patch(ada["id"], {"email": "ada@example.com"}), 409, "email_taken", "email")


def test_an_email_change_to_an_address_in_use_is_409_and_changes_nothing() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada", metadata={"k": "v"})
    grace = api.student("grace@example.com", "Grace")
    for taken in ("grace@example.com", "GRACE@example.COM"):
        reply = api.patch(
            ada["id"], {"email": taken, "name": "Renamed", "metadata": {"k": "", "n": "1"}}
        )
        assert_error(reply, 409, "email_taken", "email")
    assert api.get(ada["id"]).body == ada
    assert api.get(grace["id"]).body == grace
    assert api.holder("ada@example.com") == [ada["id"]]
    assert api.holder("grace@example.com") == [grace["id"]]
    # ada's address is still hers
    assert_error(api.create({"email": "Ada@example.com", "name": "X"}), 409, "email_taken", "email")
    assert api.total() == 2


def test_another_tenants_address_is_no_conflict_for_an_email_change() -> None:
    api = Api()
    Api().student("grace@example.com")
    api.as_mode("live").student("grace@example.com")
    ada = api.student("ada@example.com")
    reply = api.patch(ada["id"], {"email": "grace@example.com"})
    assert (reply.status, reply.body["email"]) == (200, "grace@example.com")


def test_a_change_of_letter_case_only_keeps_the_address() -> None:
    api = Api()
    ada = api.student("Ada@X.com", "Ada")
    reply = api.patch(ada["id"], {"email": "ada@x.com"})
    assert (reply.status, reply.body) == (200, {**ada, "email": "ada@x.com"})
    assert api.get(ada["id"]).body["email"] == "ada@x.com"
    assert api.holder("ADA@X.COM") == [ada["id"]]
    assert_error(api.create({"email": "ADA@x.com", "name": "Twin"}), 409, "email_taken", "email")
    # the same address again, as it is, is no change and no conflict
    again = api.patch(ada["id"], {"email": "ada@x.com", "name": "Ada L."})
    assert (again.status, again.body["email"], again.body["name"]) == (200, "ada@x.com", "Ada L.")
    # and after a case change the address can still move on, freeing it
    moved = api.patch(ada["id"], {"email": "lovelace@x.com"})
    assert moved.status == 200
    assert api.student("ADA@X.COM", "Now free")["email"] == "ADA@X.COM"
    assert api.total() == 2


# =========================================================================== permissions

ROUTES = ("list", "get", "create", "patch")
READ_ONLY = {"list": 200, "get": 200, "create": 403, "patch": 403}
READ_WRITE = {"list": 200, "get": 200, "create": 201, "patch": 200}
NONE = dict.fromkeys(ROUTES, 403)


@pytest.mark.parametrize(
    ("permissions", "expected"),
    [
        ("*", READ_WRITE),
        ("students:write", READ_WRITE),
        ("students:read,students:write", READ_WRITE),
        ("courses:read, students:write", READ_WRITE),
        ("students:read", READ_ONLY),
        ("courses:write,students:read", READ_ONLY),
        ("courses:write", NONE),
        ("courses:read,enrollments:write,instructors:write", NONE),
        ("", NONE),
        ("students", NONE),
    ],
)
def test_routes_need_the_students_permissions(permissions: str, expected: dict[str, int]) -> None:
    owner = Api()
    student = owner.student("ada@example.com")
    caller = Api(owner.account_id, permissions=permissions)
    replies = {
        "list": caller.list(),
        "get": caller.get(student["id"]),
        "create": caller.create({"email": "grace@example.com", "name": "Grace"}),
        "patch": caller.patch(student["id"], {"name": "Renamed"}),
    }
    assert {route: reply.status for route, reply in replies.items()} == expected
    for reply in replies.values():
        if reply.status == 403:
            assert_error(reply, 403, "insufficient_permissions", None, kind="permission_error")
    assert owner.total() == (2 if expected["create"] == 201 else 1)
    name = owner.get(student["id"]).body["name"]
    assert name == ("Renamed" if expected["patch"] == 200 else "A Student")


def test_the_permission_is_checked_before_the_input() -> None:
    owner = Api()
    student = owner.student("ada@example.com")
    reader = Api(owner.account_id, permissions="students:read")
    for reply in (
        reader.create("not json"),
        reader.create({"email": "nope"}),
        reader.patch(student["id"], {"email": None}),
        reader.patch(ids.new_id("stu"), {"name": "x"}),
    ):
        assert_error(reply, 403, "insufficient_permissions", None, kind="permission_error")
    stranger = Api(owner.account_id, permissions="courses:read")
    assert_error(
        stranger.list(limit="0"), 403, "insufficient_permissions", None, kind="permission_error"
    )
    assert_error(
        stranger.get("nope"), 403, "insufficient_permissions", None, kind="permission_error"
    )
    assert owner.total() == 1


# =========================================================================== Idempotency-Key


def test_a_repeated_create_replays_the_first_response_and_creates_nothing_more() -> None:
    api = Api()
    body = {"email": "ada@example.com", "name": "Ada", "metadata": {"k": "v"}}
    first = api.create(body, key="create-ada-1")
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    api.patch(first.body["id"], {"name": "Renamed since"})
    for _ in range(2):
        again = api.create(body, key="create-ada-1")
        assert (again.status, again.text) == (201, first.text)
        assert again.headers.get("Idempotent-Replayed") == "true"
    assert listed_ids(api) == [first.body["id"]]
    assert api.total() == 1
    # another key is another request: the address is taken by then
    assert_error(api.create(body, key="create-ada-2"), 409, "email_taken", "email")


def test_a_400_is_saved_and_replayed_too() -> None:
    api = Api()
    first = api.create({"email": "nope", "name": "Ada"}, key="bad-email")
    assert_error(first, 400, "parameter_invalid", "email")
    again = api.create({"email": "nope", "name": "Ada"}, key="bad-email")
    assert (again.status, again.text) == (400, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.total() == 0


def test_a_409_email_taken_is_saved_and_replayed() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada")
    body = {"email": "ADA@example.com", "name": "Second Ada"}
    first = api.create(body, key="second-ada")
    assert_error(first, 409, "email_taken", "email")
    assert "Idempotent-Replayed" not in first.headers
    # free the address: a replay still answers what the first request got
    assert api.patch(ada["id"], {"email": "lovelace@example.com"}).status == 200
    again = api.create(body, key="second-ada")
    assert (again.status, again.text) == (409, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.total() == 1
    assert api.holder("ada@example.com") == []
    # without the key the same body now succeeds
    assert api.create(body).status == 201


def test_a_repeated_patch_replays_the_first_response() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada")
    first = api.patch(ada["id"], {"name": "Ada B", "metadata": {"n": "1"}}, key="rename-1")
    assert (first.status, first.body["name"]) == (200, "Ada B")
    assert "Idempotent-Replayed" not in first.headers
    assert api.patch(ada["id"], {"name": "Ada C", "metadata": {"n": ""}}).status == 200
    again = api.patch(ada["id"], {"name": "Ada B", "metadata": {"n": "1"}}, key="rename-1")
    assert (again.status, again.text) == (200, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.get(ada["id"]).body == {**ada, "name": "Ada C", "metadata": {}}


def test_a_patch_409_email_taken_is_saved_and_replayed() -> None:
    api = Api()
    ada = api.student("ada@example.com", "Ada")
    grace = api.student("grace@example.com", "Grace")
    first = api.patch(ada["id"], {"email": "grace@example.com"}, key="take-grace")
    assert_error(first, 409, "email_taken", "email")
    assert api.patch(grace["id"], {"email": "hopper@example.com"}).status == 200
    again = api.patch(ada["id"], {"email": "grace@example.com"}, key="take-grace")
    assert (again.status, again.text) == (409, first.text)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.get(ada["id"]).body == ada
    assert api.holder("grace@example.com") == []


# =========================================================================== races


@pytest.fixture
def separate_containers() -> Iterator[None]:
    with containers():
        yield


def race(module: ModuleType, events: list[dict[str, Any]]) -> tuple[list[Reply], int]:
    """Each event to its own copy of the handler, all released at once; the replies and the
    most requests that were in flight together (proof that they overlapped)."""
    handlers = [container_copy(module, n) for n in range(len(events))]
    barrier = threading.Barrier(len(events), timeout=30)
    guard = threading.Lock()
    in_flight = [0, 0]  # now, most

    def run(n: int) -> dict[str, Any]:
        barrier.wait()
        with guard:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        try:
            return handlers[n](events[n], Context())
        finally:
            with guard:
                in_flight[0] -= 1

    with ThreadPoolExecutor(max_workers=len(events), thread_name_prefix="container") as pool:
        results = list(pool.map(run, range(len(events))))
    return [parse(r) for r in results], in_flight[1]


CASES = [
    "ada@example.com",
    "ADA@EXAMPLE.COM",
    "Ada@Example.com",
    "aDa@example.COM",
    "adA@Example.Com",
    "ADA@example.com",
    "ada@EXAMPLE.com",
    "AdA@ExAmPlE.cOm",
]


@pytest.mark.usefixtures("separate_containers")
def test_concurrent_creates_of_one_address_make_exactly_one_student() -> None:
    api = Api()
    assert api.total() == 0  # clients and caches built before the threads start
    events = [
        api.create_event({"email": email, "name": f"Racer {n}"})
        for n, email in enumerate(CASES[:RACERS])
    ]
    replies, overlap = race(create_student, events)
    assert overlap > 1
    statuses = sorted(r.status for r in replies)
    assert statuses == [201] + [409] * (RACERS - 1), [r.body for r in replies]
    for reply in replies:
        if reply.status == 409:
            assert_error(reply, 409, "email_taken", "email")
    ((won, winner),) = [(n, r.body) for n, r in enumerate(replies) if r.status == 201]
    assert (winner["email"], winner["name"]) == (CASES[won], f"Racer {won}")
    assert api.total() == 1
    assert listed_ids(api) == [winner["id"]]
    assert api.holder("ada@example.com") == [winner["id"]]
    assert api.get(winner["id"]).body == winner


@pytest.mark.usefixtures("separate_containers")
def test_concurrent_email_changes_to_one_address_move_exactly_one() -> None:
    api = Api()
    students = [api.student(f"s{n}@example.com", f"Student {n}") for n in range(RACERS)]
    events = [
        api.patch_event(s["id"], {"email": CASES[n], "name": f"Renamed {n}"})
        for n, s in enumerate(students)
    ]
    replies, overlap = race(update_student, events)
    assert overlap > 1
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [409] * (RACERS - 1), [r.body for r in replies]
    (won,) = [n for n, r in enumerate(replies) if r.status == 200]
    assert replies[won].body == {
        **students[won],
        "email": CASES[won],
        "name": f"Renamed {won}",
    }
    assert api.holder("ada@example.com") == [students[won]["id"]]
    assert api.holder(f"s{won}@example.com") == []  # its old address is free again
    for n, student in enumerate(students):
        now = api.get(student["id"]).body
        if n == won:
            assert (now["email"], now["name"]) == (CASES[n], f"Renamed {n}")
        else:
            assert_error(replies[n], 409, "email_taken", "email")
            assert now == student  # nothing changed, not even the name
            assert api.holder(f"s{n}@example.com") == [student["id"]]
    assert api.total() == RACERS
    assert api.student(f"s{won}@example.com")["email"] == f"s{won}@example.com"


# =========================================================================== counts


def test_total_count_matches_the_listed_students_through_creates_and_changes() -> None:
    api = Api()
    made: list[str] = []
    for n in range(7):
        made.append(api.student(f"s{n}@example.com")["id"])
    neighbours = (Api(), api.as_mode("live"))
    for neighbour in neighbours:
        neighbour.student("s0@example.com")

    def check(expected: int) -> None:
        listed = listed_ids(api, limit=3)
        assert len(listed) == len(set(listed)) == expected
        assert api.total() == expected
        assert sorted(listed, reverse=True) == listed

    check(7)
    # refused creates count nothing
    assert api.create({"email": "S3@example.com", "name": "Dup"}).status == 409
    assert api.create({"email": "bad", "name": "Bad"}).status == 400
    check(7)
    # email changes move addresses, never the count
    assert api.patch(made[0], {"email": "moved0@example.com"}).status == 200
    assert api.patch(made[1], {"email": "S1@EXAMPLE.COM"}).status == 200
    assert api.patch(made[2], {"email": "s3@example.com"}).status == 409
    check(7)
    made.append(api.student("s0@example.com")["id"])  # the freed address
    check(8)
    for neighbour in neighbours:
        assert neighbour.total() == 1
