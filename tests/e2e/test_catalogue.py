"""The catalogue over real HTTP through `learnflow serve`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.e2e.client import Client

if TYPE_CHECKING:
    from tests.support.stack import Account, Stack


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    return stack.create_account("pro")


@pytest.fixture(scope="module")
def client(stack: Stack, account: Account) -> Client:
    return Client(stack, account.keys["test"])


def test_instructor_course_publish_and_filtered_list(client: Client) -> None:
    instructor = client.post("/instructors", {"name": "Ada Lovelace", "email": "ada@example.org"})
    assert instructor.status == 201, instructor.text
    created = client.post(
        "/courses",
        '{"title": "Analytical Engines", "description": "Notes on the engine.", '
        '"price": 1.13, "currency": "usd", "category": "e2e-history", '
        f'"instructor_id": "{instructor.body["id"]}"}}',
    )
    assert created.status == 201, created.text
    course = created.body
    assert (course["status"], course["instructor"], course["currency"]) == (
        "draft",
        "Ada Lovelace",
        "USD",
    )
    assert '"price":1.13,' in created.text.replace(" ", "")

    published = client.patch(f"/courses/{course['id']}", {"status": "published"})
    assert (published.status, published.body["status"]) == (200, "published")
    again = client.patch(f"/courses/{course['id']}", {"status": "draft"})
    assert (again.status, again.error["code"]) == (400, "invalid_status_transition")

    listed = client.get("/courses", category="e2e-history", status="published")
    assert listed.status == 200
    assert [c["id"] for c in listed.body["data"]] == [course["id"]]
    assert (listed.body["total_count"], listed.body["has_more"]) == (1, False)
    assert client.get("/courses", category="e2e-history", status="draft").body["total_count"] == 0
    fetched = client.get(f"/courses/{course['id']}")
    assert fetched.body == published.body


def test_prices_are_exact_over_http(client: Client) -> None:
    for literal, currency in (("0.29", "CAD"), ("49.99", "USD"), ("5000", "JPY"), ("1.234", "BHD")):
        reply = client.post(
            "/courses",
            f'{{"title": "P", "description": "D", "price": {literal}, "currency": "{currency}"}}',
        )
        if literal == "0.29":  # below CAD's minimum charge
            assert (reply.status, reply.error["param"]) == (400, "price")
            continue
        assert reply.status == 201, reply.text
        text = client.get(f"/courses/{reply.body['id']}").text.replace(" ", "")
        assert f'"price":{literal},' in text
    as_string = client.post(
        "/courses", {"title": "P", "description": "D", "price": "49.99", "currency": "USD"}
    )
    assert (as_string.status, as_string.error["param"]) == (400, "price")


def test_other_tenants_get_404_and_empty_lists(
    stack: Stack, account: Account, client: Client
) -> None:
    course = client.post(
        "/courses",
        {"title": "Mine", "description": "D", "price": 0, "currency": "EUR", "category": "e2e-own"},
    ).body
    instructor = client.post("/instructors", {"name": "Mine"}).body
    strangers = (
        Client(stack, account.keys["live"]),  # same account, other mode
        Client(stack, stack.create_account("pro").keys["test"]),  # other account
    )
    for other in strangers:
        missing = other.get(f"/courses/{course['id']}")
        assert (missing.status, missing.error["code"]) == (404, "resource_missing")
        assert other.get(f"/instructors/{instructor['id']}").status == 404
        assert other.patch(f"/courses/{course['id']}", {"title": "Theirs"}).status == 404
        listed = other.get("/courses", category="e2e-own").body
        assert (listed["data"], listed["total_count"]) == ([], 0)
    assert client.get(f"/courses/{course['id']}").body["title"] == "Mine"


def test_cursors_walk_a_filtered_list_both_ways(client: Client) -> None:
    ids = []
    for n in range(7):
        reply = client.post(
            "/courses",
            {
                "title": f"C{n}",
                "description": "D",
                "price": 10,
                "currency": "GBP",
                "category": "e2e-cursors",
            },
        )
        ids.append(reply.body["id"])
    newest_first = list(reversed(ids))
    first = client.get("/courses", category="e2e-cursors", limit="3").body
    assert [c["id"] for c in first["data"]] == newest_first[:3]
    assert (first["has_more"], first["total_count"]) == (True, 7)
    second = client.get(
        "/courses", category="e2e-cursors", limit="3", starting_after=newest_first[2]
    ).body
    assert [c["id"] for c in second["data"]] == newest_first[3:6]
    back = client.get(
        "/courses", category="e2e-cursors", limit="3", ending_before=newest_first[3]
    ).body
    assert [c["id"] for c in back["data"]] == newest_first[:3]
    assert back["has_more"] is False
    bad = client.get("/courses", category="e2e-other", starting_after=newest_first[0])
    assert (bad.status, bad.error["code"], bad.error["param"]) == (
        400,
        "resource_missing",
        "starting_after",
    )
    both = client.get("/courses", starting_after=ids[0], ending_before=ids[1])
    assert both.status == 400
