"""Tenancy end to end (CONTRACT §2): another account's key and the other mode's key see nothing.

Account A creates objects with its test key; account B's test key and A's own live key must get
404 for every one of them on every resource route, never see them in any list, filter or count,
and get 400 `resource_missing` when they name them in a body or a cursor. Students and
enrollments join these tables when their routes are built (they answer 501 today).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.client import Client

if TYPE_CHECKING:
    from tests.e2e.conftest import Account, Stack

pytestmark = pytest.mark.e2e


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
    assert (instructor.status, course.status) == (201, 201)
    published = a.patch(f"/courses/{course.body['id']}", {"status": "published"})
    assert published.status == 200
    return {"course": published.body, "instructor": instructor.body}


@pytest.fixture(scope="module", params=["other account", "other mode"])
def stranger(request: pytest.FixtureRequest, stack: Stack, owner: Account) -> Client:
    if request.param == "other mode":
        return Client(stack, owner.keys["live"])
    return Client(stack, stack.create_account("pro").keys["test"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/courses/{course}", None),
        ("PATCH", "/courses/{course}", {"title": "Taken over"}),
        ("PATCH", "/courses/{course}", {"status": "archived"}),
        ("GET", "/instructors/{instructor}", None),
    ],
)
def test_foreign_object_answers_404_like_a_missing_one(
    stranger: Client,
    objects: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    url = path.format(course=objects["course"]["id"], instructor=objects["instructor"]["id"])
    if method == "GET":
        reply = stranger.get(url)
    else:
        assert body is not None
        reply = stranger.patch(url, body)
    assert reply.status == 404
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["code"] == "resource_missing"
    # exactly what a missing id of the same shape answers
    missing = stranger.get(url[: -len("0" * 4)] + "0000")
    assert (missing.status, missing.error["code"]) == (404, "resource_missing")


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/courses", {}),
        ("/courses", {"status": "published"}),
        ("/courses", {"category": "iso-only"}),
        ("/courses", {"category": "iso-only", "status": "published"}),
        ("/courses", {"limit": "100"}),
        ("/instructors", {"limit": "100"}),
    ],
)
def test_foreign_objects_never_appear_in_lists(
    stranger: Client, objects: dict[str, Any], path: str, query: dict[str, str]
) -> None:
    reply = stranger.get(path, **query)
    assert reply.status == 200
    listed = {item["id"] for item in reply.body["data"]}
    assert objects["course"]["id"] not in listed
    assert objects["instructor"]["id"] not in listed
    if "category" in query:
        assert reply.body["total_count"] == 0


def test_owner_still_sees_its_objects(
    stack: Stack, owner: Account, objects: dict[str, Any]
) -> None:
    a = Client(stack, owner.keys["test"])
    assert a.get(f"/courses/{objects['course']['id']}").body["title"] == "Owner's course"
    listed = a.get("/courses", category="iso-only", status="published").body
    assert [c["id"] for c in listed["data"]] == [objects["course"]["id"]]
    assert listed["total_count"] == 1


def test_foreign_ids_in_a_body_or_cursor_are_resource_missing(
    stranger: Client, objects: dict[str, Any]
) -> None:
    borrowed = stranger.post(
        "/courses",
        {
            "title": "Borrowing",
            "description": "D",
            "price": 0,
            "currency": "usd",
            "instructor_id": objects["instructor"]["id"],
        },
    )
    assert (borrowed.status, borrowed.error["code"], borrowed.error["param"]) == (
        400,
        "resource_missing",
        "instructor_id",
    )
    for cursor in ("starting_after", "ending_before"):
        reply = stranger.get("/courses", **{cursor: objects["course"]["id"]})
        assert (reply.status, reply.error["code"], reply.error["param"]) == (
            400,
            "resource_missing",
            cursor,
        )
        reply = stranger.get("/instructors", **{cursor: objects["instructor"]["id"]})
        assert (reply.status, reply.error["code"]) == (400, "resource_missing")


def test_objects_carry_the_mode_they_were_made_in(
    stack: Stack, owner: Account, objects: dict[str, Any]
) -> None:
    assert objects["course"]["livemode"] is False
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


def test_restricted_key_is_held_to_its_permissions(stack: Stack, owner: Account) -> None:
    key = stack.create_key(owner.id, "test", ["courses:read"])
    client = Client(stack, key["secret"])
    assert client.get("/courses").status == 200
    denied = client.post(
        "/courses", {"title": "x", "description": "d", "price": 0, "currency": "usd"}
    )
    assert (denied.status, denied.error["type"], denied.error["code"]) == (
        403,
        "permission_error",
        "insufficient_permissions",
    )
    assert client.get("/instructors").status == 403
