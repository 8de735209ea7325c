"""Tenancy end to end (docs/api.md §4): another account's key and the other mode's key see nothing.

Account A creates objects with its test key (an instructor, a published course, a student and a
paid enrollment of that student in that course); account B's test key and A's own live key must
get 404 for every one of them on every resource route, exactly as for a missing id, change
nothing, never see them in any list, filter or count, and get 400 `resource_missing` when they
name them in a body or a cursor. Restricted keys are held to their permissions on every resource.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import stripe

from learnflow.resources import RESOURCES
from tests.e2e.client import Client, Reply

if TYPE_CHECKING:
    from tests.support.stack import Account, Stack

OWNER_EMAIL = "Owner.Student@example.com"
KINDS = ("course", "instructor", "student", "enrollment")


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return stack.create_account("pro")


@pytest.fixture(scope="module")
def objects(stack: Stack, owner: Account) -> dict[str, Any]:
    a = Client(stack, owner.keys["test"])
    instructor = a.post("/instructors", {"name": "Owner's instructor", "email": "i@example.com"})
    course = a.post(
        "/courses",
        {
            "title": "Owner's course",
            "description": "Only A may see this.",
            "price": 25,
            "currency": "usd",
            "category": "iso-only",
            "instructor_id": instructor.body["id"],
        },
    )
    student = a.post("/students", {"email": OWNER_EMAIL, "name": "Owner's student"})
    assert (instructor.status, course.status, student.status) == (201, 201, 201)
    published = a.patch(f"/courses/{course.body['id']}", {"status": "published"})
    assert published.status == 200
    enrollment = a.post(
        "/enrollments",
        {
            "student_id": student.body["id"],
            "course_id": course.body["id"],
            "payment_method_id": "pm_card_visa",
        },
    )
    assert enrollment.status == 201, enrollment.text
    # the course as it is now (its enrollment_count counts the enrollment)
    course_now = a.get(f"/courses/{course.body['id']}")
    assert course_now.body["enrollment_count"] == 1
    return {
        "course": course_now.body,
        "instructor": instructor.body,
        "student": student.body,
        "enrollment": enrollment.body,
    }


@pytest.fixture(scope="module", params=["other account", "other mode"])
def stranger(request: pytest.FixtureRequest, stack: Stack, owner: Account) -> Client:
    if request.param == "other mode":
        return Client(stack, owner.keys["live"])
    return Client(stack, stack.create_account("pro").keys["test"])


@pytest.fixture(scope="module")
def strangers_own(stranger: Client) -> dict[str, Any]:
    """A student and a published free course of the stranger's own, so that a body naming one
    of them and one of A's objects is wrong only in A's id."""
    student = stranger.post("/students", {"email": OWNER_EMAIL, "name": "Stranger's student"})
    course = stranger.post(
        "/courses", {"title": "Theirs", "description": "D", "price": 0, "currency": "usd"}
    )
    assert (student.status, course.status) == (201, 201), (student.text, course.text)
    published = stranger.patch(f"/courses/{course.body['id']}", {"status": "published"})
    assert published.status == 200
    return {"student": student.body, "course": published.body}


def _amount_refunded(stack: Stack, payment_intent_id: str) -> int:
    """What the local Stripe server says was refunded of a test-mode PaymentIntent's charge (it
    takes any well-formed secret key, as stripe-mock does; the stack's own stays private)."""
    reader = stripe.StripeClient(
        "sk_test_e2eReader", base_addresses={"api": stack.stripe_url}, max_network_retries=0
    )
    intent = reader.v1.payment_intents.retrieve(payment_intent_id)
    return int(reader.v1.charges.retrieve(str(intent.latest_charge)).amount_refunded)


def _error(reply: Reply) -> tuple[int, str, str, str | None]:
    error = reply.error
    return reply.status, error["type"], error["code"], error.get("param")


FOREIGN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/courses/{course}", None),
    ("PATCH", "/courses/{course}", {"title": "Taken over"}),
    ("PATCH", "/courses/{course}", {"status": "archived"}),
    ("GET", "/instructors/{instructor}", None),
    ("GET", "/students/{student}", None),
    ("PATCH", "/students/{student}", {"name": "Taken over"}),
    ("PATCH", "/students/{student}", {"email": "taken.over@example.com"}),
    ("GET", "/enrollments/{enrollment}", None),
    ("POST", "/enrollments/{enrollment}/cancel", {"refund": True}),
    ("POST", "/enrollments/{enrollment}/cancel", {}),
]


@pytest.mark.parametrize(
    "route", FOREIGN_ROUTES, ids=[f"{m} {p} {b or ''}" for m, p, b in FOREIGN_ROUTES]
)
def test_foreign_object_answers_404_like_a_missing_one(
    stack: Stack,
    owner: Account,
    stranger: Client,
    objects: dict[str, Any],
    route: tuple[str, str, dict[str, Any] | None],
) -> None:
    method, path, body = route
    kind = path.split("{")[1].split("}", maxsplit=1)[0]
    foreign = objects[kind]["id"]
    missing = foreign[: -len("0" * 4)] + "0000"  # a missing id of the same shape
    payload = None if body is None else json.dumps(body)
    reply = stranger.send(method, path.format(**{kind: foreign}), payload)
    absent = stranger.send(method, path.format(**{kind: missing}), payload)
    assert _error(reply)[:3] == (404, "invalid_request_error", "resource_missing"), reply.text
    # exactly what a missing id of the same shape answers (the param included)
    assert _error(absent) == _error(reply)
    # and the owner's object is as it was
    mine = Client(stack, owner.keys["test"]).get(f"/{kind}s/{foreign}")
    assert (mine.status, mine.body) == (200, objects[kind])
    if kind == "enrollment":  # and nothing was refunded at Stripe either
        assert _amount_refunded(stack, objects["enrollment"]["payment"]["id"]) == 0


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/courses", {}),
        ("/courses", {"status": "published"}),
        ("/courses", {"category": "iso-only"}),
        ("/courses", {"category": "iso-only", "status": "published"}),
        ("/courses", {"limit": "100"}),
        ("/instructors", {"limit": "100"}),
        ("/students", {"limit": "100"}),
        ("/students", {"email": OWNER_EMAIL}),
        ("/students", {"email": OWNER_EMAIL.lower()}),
        ("/enrollments", {"limit": "100"}),
        ("/enrollments", {"status": "active"}),
        ("/enrollments", {"student_id": "{student}"}),
        ("/enrollments", {"course_id": "{course}"}),
        ("/enrollments", {"student_id": "{student}", "status": "active"}),
        ("/enrollments", {"course_id": "{course}", "status": "active"}),
        ("/enrollments", {"student_id": "{student}", "course_id": "{course}"}),
        ("/enrollments", {"student_id": "{student}", "course_id": "{course}", "status": "active"}),
    ],
)
def test_foreign_objects_never_appear_in_lists(
    stranger: Client, objects: dict[str, Any], path: str, query: dict[str, str]
) -> None:
    ids = {kind: objects[kind]["id"] for kind in KINDS}
    reply = stranger.get(path, **{name: value.format(**ids) for name, value in query.items()})
    assert reply.status == 200, reply.text
    listed = {item["id"] for item in reply.body["data"]}
    assert not listed & set(ids.values())
    if {"category", "email", "student_id", "course_id"} & set(query):
        # a filter that only A's objects match: nothing, and a count of nothing
        assert (reply.body["data"], reply.body["total_count"]) == ([], 0)


def test_owner_still_sees_its_objects(
    stack: Stack, owner: Account, objects: dict[str, Any]
) -> None:
    a = Client(stack, owner.keys["test"])
    assert a.get(f"/courses/{objects['course']['id']}").body["title"] == "Owner's course"
    listed = a.get("/courses", category="iso-only", status="published").body
    assert [c["id"] for c in listed["data"]] == [objects["course"]["id"]]
    assert listed["total_count"] == 1
    students = a.get("/students", email=OWNER_EMAIL.upper()).body
    assert ([s["id"] for s in students["data"]], students["total_count"]) == (
        [objects["student"]["id"]],
        1,
    )
    enrollments = a.get(
        "/enrollments",
        student_id=objects["student"]["id"],
        course_id=objects["course"]["id"],
        status="active",
    ).body
    assert (enrollments["data"], enrollments["total_count"]) == ([objects["enrollment"]], 1)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/courses", "instructor_id"),
        ("/enrollments", "student_id"),
        ("/enrollments", "course_id"),
    ],
)
def test_a_foreign_id_in_a_body_is_resource_missing(
    stranger: Client,
    objects: dict[str, Any],
    strangers_own: dict[str, Any],
    path: str,
    param: str,
) -> None:
    body: dict[str, Any] = {
        "/courses": {"title": "Borrowing", "description": "D", "price": 0, "currency": "usd"},
        "/enrollments": {
            "student_id": strangers_own["student"]["id"],
            "course_id": strangers_own["course"]["id"],
            "payment_method_id": "pm_card_visa",
        },
    }[path]
    body[param] = objects[param.removesuffix("_id")]["id"]
    reply = stranger.post(path, body)
    assert _error(reply) == (400, "invalid_request_error", "resource_missing", param), reply.text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cursor", ["starting_after", "ending_before"])
def test_a_foreign_id_as_a_cursor_is_resource_missing(
    stranger: Client, objects: dict[str, Any], kind: str, cursor: str
) -> None:
    reply = stranger.get(f"/{kind}s", **{cursor: objects[kind]["id"]})
    assert _error(reply) == (400, "invalid_request_error", "resource_missing", cursor), reply.text


def test_objects_carry_the_mode_they_were_made_in(
    stack: Stack, owner: Account, objects: dict[str, Any]
) -> None:
    assert all(objects[kind]["livemode"] is False for kind in KINDS)
    live = Client(stack, owner.keys["live"]).post("/instructors", {"name": "Live one"})
    assert (live.status, live.body["livemode"]) == (201, True)


def test_revoked_key_is_refused_at_once(stack: Stack, owner: Account) -> None:
    key = stack.create_key(owner.id, "test")
    client = Client(stack, key["secret"])
    assert client.get("/courses").status == 200
    stack.revoke_key(key["id"])
    refused = client.get("/courses")
    assert (refused.status, refused.error["type"]) == (401, "authentication_error")
    assert refused.headers["Request-Id"] == refused.error["request_id"]


# --- restricted keys ---

FREE_COURSE = {"title": "Free", "description": "D", "price": 0, "currency": "usd"}


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None
    succeeds_with: int  # the status when the key may make it


@dataclass(frozen=True, slots=True)
class Shop:
    """An account of its own (about 150 requests in all: half its rate limit) with one object of
    each kind, and its secret test key (`full`) to make more."""

    account: Account
    full: Client
    ids: dict[str, str]

    def new_student(self) -> str:
        reply = self.full.post(
            "/students", {"email": f"{uuid.uuid4().hex[:12]}@example.com", "name": "S"}
        )
        assert reply.status == 201, reply.text
        return str(reply.body["id"])

    def new_enrollment(self) -> str:
        reply = self.full.post(
            "/enrollments", {"student_id": self.new_student(), "course_id": self.ids["course"]}
        )
        assert reply.status == 201, reply.text
        return str(reply.body["id"])


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    account = stack.create_account("pro")
    full = Client(stack, account.keys["test"])
    instructor = full.post("/instructors", {"name": "I"})
    course = full.post("/courses", FREE_COURSE)
    assert (instructor.status, course.status) == (201, 201)
    assert full.patch(f"/courses/{course.body['id']}", {"status": "published"}).status == 200
    shop = Shop(account, full, {"instructor": instructor.body["id"], "course": course.body["id"]})
    shop.ids["student"] = shop.new_student()
    shop.ids["enrollment"] = shop.new_enrollment()
    return shop


def _reads(shop: Shop, resource: str) -> list[Call]:
    kind = resource.removesuffix("s")
    assert kind in shop.ids, (
        f"the `shop` fixture makes no {kind}: add one (docs/adding-a-resource.md)"
    )
    one = shop.ids[kind]
    return [Call("GET", f"/{resource}", None, 200), Call("GET", f"/{resource}/{one}", None, 200)]


def _writes(shop: Shop, resource: str, *, allowed: bool) -> list[Call]:
    """Every write route of `resource`, on objects it may change when `allowed` (a refused
    write is refused before any id or body is looked at)."""
    ids = shop.ids
    if resource == "courses":
        return [
            Call("POST", "/courses", FREE_COURSE, 201),
            Call("PATCH", f"/courses/{ids['course']}", {"title": "Renamed"}, 200),
        ]
    if resource == "instructors":
        return [Call("POST", "/instructors", {"name": "Another"}, 201)]
    if resource == "students":
        email = f"{uuid.uuid4().hex}@example.com"
        return [
            Call("POST", "/students", {"email": email, "name": "N"}, 201),
            Call("PATCH", f"/students/{ids['student']}", {"name": "Renamed"}, 200),
        ]
    if resource == "enrollments":
        student = shop.new_student() if allowed else ids["student"]
        enrollment = shop.new_enrollment() if allowed else ids["enrollment"]
        return [
            Call("POST", "/enrollments", {"student_id": student, "course_id": ids["course"]}, 201),
            Call("POST", f"/enrollments/{enrollment}/cancel", {"refund": True}, 200),
        ]
    raise AssertionError(
        f"no write routes of {resource} here: add them (docs/adding-a-resource.md)"
    )


@pytest.mark.parametrize(
    "permission",
    [f"{resource.name}:{access}" for resource in RESOURCES for access in ("read", "write")],
)
def test_restricted_key_is_held_to_its_permissions(
    stack: Stack, shop: Shop, permission: str
) -> None:
    """A key with `<resource>:read` reads that resource only; `:write` also writes it. Every
    other route is 403 `permission_error` / `insufficient_permissions`."""
    key = stack.create_key(shop.account.id, "test", [permission])
    client = Client(stack, key["secret"])
    granted, _, access = permission.partition(":")
    calls = [(call, True) for call in _reads(shop, granted)]
    writes = access == "write"
    calls += [(call, writes) for call in _writes(shop, granted, allowed=writes)]
    for other in (resource.name for resource in RESOURCES):
        if other != granted:
            calls += [(call, False) for call in _reads(shop, other)]
            calls += [(call, False) for call in _writes(shop, other, allowed=False)]
    for call, allowed in calls:
        payload = None if call.body is None else json.dumps(call.body)
        reply = client.send(call.method, call.path, payload)
        where = f"{permission}: {call.method} {call.path} → {reply.status} {reply.text}"
        if allowed:
            assert reply.status == call.succeeds_with, where
        else:
            assert reply.status == 403, where
            assert (reply.error["type"], reply.error["code"]) == (
                "permission_error",
                "insufficient_permissions",
            ), where
