"""Walking a list route page by page with its cursors, as a client does."""

from __future__ import annotations

from typing import Any, Protocol

import pytest

from tests.support.handlers import Reply

MAX_PAGES = 200  # every walk is bounded: a list that never ends fails the test


class Lister(Protocol):
    def list(self, **query: str) -> Reply: ...


def walk_forward(api: Lister, limit: int, **filters: str) -> list[dict[str, Any]]:
    """Every page of the list from the newest, `limit` a page, following `starting_after`."""
    pages: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        reply = api.list(**filters, limit=str(limit), **cursor)
        assert reply.status == 200, reply.body
        pages.append(reply.body)
        if not reply.body["has_more"]:
            return pages
        cursor = {"starting_after": reply.body["data"][-1]["id"]}
    pytest.fail("the list never ended")


def walk_backward(api: Lister, limit: int, oldest: str, **filters: str) -> list[dict[str, Any]]:
    """Every page of the list newer than `oldest`, `limit` a page, following `ending_before`."""
    pages: list[dict[str, Any]] = []
    cursor = oldest
    for _ in range(MAX_PAGES):
        reply = api.list(**filters, limit=str(limit), ending_before=cursor)
        assert reply.status == 200, reply.body
        pages.append(reply.body)
        if not reply.body["has_more"]:
            return pages
        cursor = reply.body["data"][0]["id"]
    pytest.fail("the list never ended")
