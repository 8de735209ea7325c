"""Idempotency-Key over real HTTP through `learnflow serve` (docs/api.md §8)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from tests.e2e.client import TIMEOUT, Client, Reply

if TYPE_CHECKING:
    from tests.support.stack import Stack


def post(client: Client, path: str, body: str, key: str) -> Reply:
    response = client.session.post(
        client.stack.url(path),
        data=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        timeout=TIMEOUT,
    )
    return Reply(response)


def test_post_course_twice_with_one_key_creates_one_course(stack: Stack) -> None:
    client = Client(stack, stack.create_account("pro").keys["test"])
    category = f"e2e-idem-{uuid.uuid4().hex[:8]}"
    course: dict[str, Any] = {
        "title": "Retried course",
        "description": "Sent twice.",
        "price": 12.5,
        "currency": "USD",
        "category": category,
    }
    key = f"e2e-{uuid.uuid4()}"

    first = post(client, "/courses", json.dumps(course), key)
    # the same request as parsed JSON: other key order, other whitespace
    again = post(client, "/courses", json.dumps(dict(reversed(course.items())), indent=2), key)

    assert first.status == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert again.status == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body
    assert again.headers["Request-Id"] != first.headers["Request-Id"]
    listed = client.get("/courses", category=category)
    assert [c["id"] for c in listed.body["data"]] == [first.body["id"]]

    reused = post(client, "/courses", json.dumps({**course, "title": "Another"}), key)
    assert (reused.status, reused.error["type"], reused.error["code"]) == (
        400,
        "idempotency_error",
        "idempotency_key_reused",
    )
    fresh = post(client, "/courses", json.dumps(course), f"e2e-{uuid.uuid4()}")
    assert (fresh.status, fresh.headers.get("Idempotent-Replayed")) == (201, None)
    assert client.get("/courses", category=category).body["total_count"] == 2


def test_invalid_key_is_400_over_http(stack: Stack) -> None:
    client = Client(stack, stack.create_account("pro").keys["test"])
    reply = post(client, "/instructors", json.dumps({"name": "Ada"}), "x" * 256)
    assert (reply.status, reply.error["code"], reply.error["param"]) == (
        400,
        "parameter_invalid",
        "Idempotency-Key",
    )
