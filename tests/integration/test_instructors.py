"""Instructors in-process: handlers fed events/, moto's table from template.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from functions.courses import create_course
from functions.instructors import create_instructor, get_instructor, list_instructors
from learnflow import clients, deps, ids
from learnflow.db import counters, keys
from learnflow.db.instructors import InstructorRepository
from tests.support.dynamo_calls import count_dynamo_calls
from tests.support.handlers import Caller, Reply

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass
class Api(Caller):
    """The instructor routes, called as API Gateway calls them, for one caller."""

    def create(self, body: dict[str, Any] | str) -> Reply:
        return self.call(create_instructor.lambda_handler, "create_instructor", body=body)

    def get(self, instructor_id: str) -> Reply:
        return self.call(
            get_instructor.lambda_handler,
            "get_instructor",
            path=f"/instructors/{instructor_id}",
            path_params={"instructor_id": instructor_id},
        )

    def list(self, **query: str) -> Reply:
        return self.call(list_instructors.lambda_handler, "list_instructors", query=query)


def test_create_answers_201_with_the_instructor(table: Table) -> None:
    api = Api()
    reply = api.create(
        {
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "bio": "Wrote the first program.",
            "metadata": {"team": "analytical", "drop": ""},
        }
    )
    assert reply.status == 201
    body = reply.body
    assert ids.is_valid(body["id"], "ins")
    assert body == {
        "id": body["id"],
        "object": "instructor",
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "bio": "Wrote the first program.",
        "metadata": {"team": "analytical"},
        "livemode": False,
        "created_at": body["created_at"],
    }
    assert ISO.match(body["created_at"])
    assert api.get(body["id"]).body == body
    item = table.get_item(Key=keys.item(api.tenant, keys.INSTRUCTOR, body["id"]))["Item"]
    assert item[keys.TYPE_ATTRIBUTE] == "instructor"


def test_only_a_name_is_required(table: Table) -> None:
    body = Api(mode="live").create({"name": "Grace Hopper"}).body
    assert (body["email"], body["bio"], body["metadata"], body["livemode"]) == (
        None,
        None,
        {},
        True,
    )


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({}, "parameter_missing", "name"),
        ({"name": ""}, "parameter_invalid", "name"),
        ({"name": "x" * 201}, "parameter_invalid", "name"),
        ({"name": "Ada", "email": "nope"}, "parameter_invalid", "email"),
        ({"name": "Ada", "bio": "x" * 5001}, "parameter_invalid", "bio"),
        ({"name": "Ada", "metadata": {"k": "v" * 501}}, "parameter_invalid", "metadata"),
        ({"name": "Ada", "courses": []}, "parameter_unknown", "courses"),
        ('"Ada"', "invalid_json", None),
    ],
)
def test_bad_bodies_are_400_and_store_nothing(
    table: Table, body: dict[str, Any] | str, code: str, param: str | None
) -> None:
    api = Api()
    reply = api.create(body)
    assert reply.status == 400
    assert (reply.error["code"], reply.error.get("param")) == (code, param)
    assert api.list().body["total_count"] == 0


@pytest.mark.parametrize("instructor_id", ["nope", "ins_123", "crs_0000000000000000000000AA"])
def test_get_by_an_id_of_the_wrong_shape_is_404(table: Table, instructor_id: str) -> None:
    reply = Api().get(instructor_id)
    assert (reply.status, reply.error["code"]) == (404, "resource_missing")


def test_another_tenants_instructor_is_404_and_not_listed(table: Table) -> None:
    owner = Api()
    instructor_id = owner.create({"name": "Ada"}).body["id"]
    for stranger in (Api(), Api(owner.account_id, "live")):
        assert stranger.get(instructor_id).status == 404
        listed = stranger.list()
        assert (listed.body["data"], listed.body["total_count"]) == ([], 0)
        # nor can it be named on a course
        reply = stranger.call(
            create_course.lambda_handler,
            "create_course",
            body={
                "title": "T",
                "description": "D",
                "price": 0,
                "currency": "USD",
                "instructor_id": instructor_id,
            },
        )
        assert (reply.status, reply.error["param"]) == (400, "instructor_id")
    assert owner.get(instructor_id).status == 200


def test_a_read_only_key_cannot_create(table: Table) -> None:
    reader = Api(permissions="instructors:read")
    assert reader.create({"name": "Ada"}).status == 403
    assert reader.list().status == 200
    assert Api(permissions="courses:write").list().status == 403


def test_list_walks_both_ways_newest_first_in_full_pages(table: Table) -> None:
    api = Api()
    created = [api.create({"name": f"Instructor {n}"}).body["id"] for n in range(23)]
    Api().create({"name": "Someone else's"})
    expected = list(reversed(created))
    seen: list[str] = []
    cursor: dict[str, str] = {}
    for _ in range(10):
        page = api.list(limit="5", **cursor).body
        assert page["total_count"] == 23
        assert page["url"] == "/v2/instructors"
        assert len(page["data"]) == (5 if page["has_more"] else 3)
        seen += [i["id"] for i in page["data"]]
        if not page["has_more"]:
            break
        cursor = {"starting_after": page["data"][-1]["id"]}
    assert seen == expected
    back: list[str] = []
    cursor = {"ending_before": expected[-1]}
    for _ in range(10):
        page = api.list(limit="5", **cursor).body
        assert len(page["data"]) == (5 if page["has_more"] else 2)
        back = [i["id"] for i in page["data"]] + back
        if not page["has_more"]:
            break
        cursor = {"ending_before": page["data"][0]["id"]}
    assert back == expected[:-1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"starting_after": "ins_000000000000000000000000"}, "starting_after"),
        ({"ending_before": "crs_000000000000000000000000"}, "ending_before"),
        ({"status": "active"}, "status"),
    ],
)
def test_bad_list_queries_are_400_with_param(
    table: Table, query: dict[str, str], param: str
) -> None:
    reply = Api().list(**query)
    assert (reply.status, reply.error["param"]) == (400, param)


def test_a_list_call_reads_at_most_limit_plus_two_items_of_the_list(table: Table) -> None:
    api = Api()
    created = [api.create({"name": f"I{n}"}).body["id"] for n in range(12)]
    for query, budget in (
        ({"limit": "5"}, 5 + 1),
        ({"limit": "5", "starting_after": created[8]}, 5 + 2),
        ({"limit": "5", "ending_before": created[2]}, 5 + 2),
    ):
        with count_dynamo_calls(clients.table().meta.client) as calls:
            reply = api.list(**query)
        assert len(reply.body["data"]) == 5
        assert calls.calls["Scan"] == 0
        assert (calls.calls["Query"], calls.calls["BatchGetItem"], calls.reads) == (1, 1, 2)
        assert calls.items["Query"] <= budget
        assert calls.items["BatchGetItem"] <= counters.SHARDS  # the count's shards
        assert calls.items_read <= budget + counters.SHARDS
    assert deps.repository(InstructorRepository).count(api.tenant) == 12
