"""Idempotency-Key on POSTs and PATCHes over moto's table: a tiny app and the real handlers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, cast

import pytest
from aws_lambda_powertools.event_handler import Response
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from functions.courses import create_course, list_courses
from learnflow import clients, deps, errors, idempotency
from learnflow.db import keys
from learnflow.db.courses import CourseRepository
from learnflow.http import App, caller, make_app, respond
from learnflow.idempotency import Claim, IdempotencyStore, Saved
from learnflow.tenancy import Tenant
from tests.support.dynamo_calls import count_dynamo_calls
from tests.support.handlers import (
    BareContext,
    Caller,
    Context,
    FakeLimiter,
    Reply,
    invoke,
    new_tenant,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

KEY = "Idempotency-Key"

pytestmark = pytest.mark.usefixtures("module_table")


@pytest.fixture
def tenant() -> Tenant:
    return new_tenant()


@pytest.fixture
def table(module_table: Table) -> Table:
    """The module's table, as the code sees it in this test (not the suite's table per test)."""
    return clients.table()


def request(
    name: str,
    tenant: Tenant,
    *,
    key: str | None = None,
    body: dict[str, Any] | str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """An event from events/ for `tenant` (1,000 requests a minute), with its own request id
    and the key (if any)."""
    if body is not None:
        overrides["body"] = body
    return Caller(tenant.account_id, tenant.mode, rate_limit=1000).event(name, key=key, **overrides)


def record(tenant: Tenant, key: str) -> dict[str, Any] | None:
    found = clients.table().get_item(Key=keys.idempotency(tenant, key), ConsistentRead=True)
    item = found.get("Item")
    return dict(item) if item else None


def recovery() -> str:
    return "rcv-fixed"


def claim_for(store: IdempotencyStore, event: dict[str, Any], tenant: Tenant, key: str) -> Claim:
    """What a first request with `event`'s method, path and body claims (as another invocation)."""
    request_fingerprint = idempotency.fingerprint("POST", event["path"], {}, event["body"])
    claim = store.claim(
        tenant, key, request_fingerprint, method="POST", path=event["path"], recovery_id=recovery
    )
    assert isinstance(claim, Claim)
    return claim


# --------------------------------------------------------------------------- a tiny app


class ThingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=200)]
    price: Decimal = Decimal(0)


@dataclass
class Tiny:
    """POST /things, POST /things/{id}/cancel and PATCH /things/{id}, over the module's table."""

    app: App
    limiter: FakeLimiter
    tenant: Tenant
    runs: list[str] = field(default_factory=list)  # what the handlers ran for
    failures_left: int = 0

    def event(
        self,
        body: dict[str, Any] | str,
        *,
        key: str | None = "k-1",
        path: str = "/things",
        method: str = "POST",
        tenant: Tenant | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        return request(
            "create_course",
            tenant or self.tenant,
            key=key,
            body=body,
            path=path,
            resource=path,
            httpMethod=method,
            **overrides,
        )

    def call(self, event: dict[str, Any], context: object | None = None) -> Reply:
        return invoke(self.app.resolve, event, context)

    def post(self, body: dict[str, Any] | str, key: str | None = "k-1", **kw: Any) -> Reply:
        return self.call(self.event(body, key=key, **kw))


def build(
    tenant: Tenant, store: Callable[[], IdempotencyStore] | None = None, allow: int = 1000
) -> Tiny:
    limiter = FakeLimiter(allow=allow)
    app = make_app(permission="courses:write", limiter=lambda: limiter, idempotency_store=store)
    tiny = Tiny(app=app, limiter=limiter, tenant=tenant)

    @app.post("/things")
    def create(body: ThingIn) -> Response[str]:
        tiny.runs.append(body.title)
        if body.title == "flaky" and tiny.failures_left > 0:
            tiny.failures_left -= 1
            raise RuntimeError("a fault of ours")
        if body.title == "throttled":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "Put")
        if body.title == "taken":
            raise errors.ConflictError("Taken.", code="email_taken")
        if body.title == "peek":  # what this request's claim looks like while it runs
            key = str(app.current_event.headers.get(KEY))
            claim = record(caller(app).tenant, key) or {}
            lease = int(claim["lease_expires_at"]) - int(claim["created_at"]) * 1000
            return respond({"status": claim["status"], "lease_ms": lease}, 201)
        return respond({"id": f"thg_{len(tiny.runs)}", "title": body.title}, 201)

    @app.post("/things/<thing_id>/cancel")
    def cancel(thing_id: str) -> Response[str]:
        tiny.runs.append(f"cancel {thing_id}")
        return respond({"id": thing_id, "status": "canceled"})

    @app.patch("/things/<thing_id>")
    def update(thing_id: str, body: ThingIn) -> Response[str]:
        tiny.runs.append(f"update {thing_id}")
        return respond({"id": thing_id, "title": body.title})

    return tiny


@pytest.fixture
def tiny(tenant: Tenant) -> Tiny:
    return build(tenant)


def test_repeat_replays_first_status_and_body_and_runs_once(tiny: Tiny) -> None:
    first = tiny.post({"title": "Intro", "price": 49.99})
    again = tiny.post({"title": "Intro", "price": 49.99})
    assert (first.status, again.status) == (201, 201)
    assert again.text == first.text
    assert again.replayed
    assert "Idempotent-Replayed" not in first.headers
    assert tiny.runs == ["Intro"]
    assert again.headers["Content-Type"] == "application/json"
    assert again.headers["X-RateLimit-Remaining"] == "998"  # the replay counted (docs/api.md §7)


def test_replay_has_its_own_request_id_header_and_the_first_body(tiny: Tiny) -> None:
    first_event = tiny.event({"title": "taken"})
    first = tiny.call(first_event)
    again_event = tiny.event({"title": "taken"})
    again = tiny.call(again_event)
    assert (first.status, again.status) == (409, 409)
    assert again.replayed
    assert again.headers["Request-Id"] == again_event["requestContext"]["requestId"]
    assert again.error["request_id"] == first_event["requestContext"]["requestId"]
    assert tiny.runs == ["taken"]


def test_bodies_equal_as_parsed_json_replay(tiny: Tiny) -> None:
    first = tiny.post('{"title": "Intro", "price": 49.99}')
    again = tiny.post('{\n  "price" : 49.990,\n  "title" : "Intro"\n}')
    assert again.replayed
    assert again.text == first.text
    assert tiny.runs == ["Intro"]


@pytest.mark.parametrize(
    "change",
    [
        {"body": {"title": "Other", "price": 49.99}},
        {"body": {"title": "Intro", "price": 49.98}},
        {"path": "/things/thg_1/cancel"},
        {"query": {"expand": "all"}},
    ],
    ids=["title", "price", "path", "query"],
)
def test_same_key_for_another_request_is_400_key_reused(tiny: Tiny, change: dict[str, Any]) -> None:
    assert tiny.post({"title": "Intro", "price": 49.99}).status == 201
    body = change.pop("body", {"title": "Intro", "price": 49.99})
    reply = tiny.call(tiny.event(body, **change))
    assert reply.status == 400
    assert (reply.error["type"], reply.error["code"]) == (
        "idempotency_error",
        "idempotency_key_reused",
    )
    assert not reply.replayed
    assert tiny.runs == ["Intro"]
    assert tiny.post({"title": "Intro", "price": 49.99}).replayed  # the first record is intact


def test_path_with_another_id_is_another_request(tiny: Tiny) -> None:
    assert tiny.call(tiny.event({}, path="/things/thg_1/cancel")).status == 200
    reply = tiny.call(tiny.event({}, path="/things/thg_2/cancel"))
    assert reply.error["code"] == "idempotency_key_reused"
    assert tiny.runs == ["cancel thg_1"]


def test_patch_takes_the_key_with_the_same_rules(tiny: Tiny) -> None:
    first = tiny.call(tiny.event({"title": "New"}, path="/things/thg_1", method="PATCH"))
    again = tiny.call(tiny.event({"title": "New"}, path="/things/thg_1", method="PATCH"))
    assert (first.status, again.status, again.replayed, again.text) == (200, 200, True, first.text)
    invalid = tiny.call(tiny.event({"title": "New"}, path="/things/thg_1", method="PATCH", key=""))
    assert (invalid.status, invalid.error["param"]) == (400, "Idempotency-Key")
    assert tiny.runs == ["update thg_1"]


def test_a_key_reused_across_methods_is_400_key_reused(tiny: Tiny) -> None:
    assert tiny.call(tiny.event({"title": "New"}, path="/things/thg_1", method="PATCH")).ok
    reply = tiny.call(tiny.event({"title": "New"}, path="/things/thg_1", method="POST"))
    assert (reply.status, reply.error["code"]) == (400, "idempotency_key_reused")
    assert tiny.runs == ["update thg_1"]


def test_get_ignores_the_key(tiny: Tiny) -> None:
    event = request("list_courses", tiny.tenant, key="", query={})
    event["path"] = event["resource"] = "/things"
    tiny.app.get("/things")(lambda: respond({"ok": True}))
    assert tiny.call(event).status == 200  # not even validated
    assert record(tiny.tenant, "") is None


def test_different_key_runs_again(tiny: Tiny) -> None:
    first = tiny.post({"title": "Intro"}, key="k-1")
    second = tiny.post({"title": "Intro"}, key="k-2")
    assert (second.status, second.replayed) == (201, False)
    assert first.body["id"] != second.body["id"]
    assert tiny.runs == ["Intro", "Intro"]


@pytest.mark.parametrize("other_mode", [False, True], ids=["other-account", "other-mode"])
def test_keys_are_scoped_to_account_and_mode(tiny: Tiny, other_mode: bool) -> None:
    other = Tenant(tiny.tenant.account_id, "live") if other_mode else new_tenant()
    assert tiny.post({"title": "Intro"}).status == 201
    elsewhere = tiny.post({"title": "Else"}, tenant=other)  # another body: no conflict there
    assert (elsewhere.status, elsewhere.replayed, elsewhere.body["title"]) == (201, False, "Else")
    assert tiny.post({"title": "Else"}, tenant=other).replayed
    assert tiny.post({"title": "Intro"}).replayed
    assert tiny.runs == ["Intro", "Else"]


def test_requests_without_the_key_touch_no_table(tiny: Tiny) -> None:
    with count_dynamo_calls(clients.table().meta.client) as calls:
        assert tiny.post({"title": "Intro"}, key=None).status == 201
        assert tiny.post({"title": "Intro"}, key=None).status == 201
    assert sum(calls.calls.values()) == 0
    assert tiny.runs == ["Intro", "Intro"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"price": 1}, "parameter_missing"),
        ({"title": "x", "colour": "red"}, "parameter_unknown"),
        ('{"title": "x",', "invalid_json"),
        ("[1, 2]", "invalid_json"),
    ],
)
def test_input_400s_are_saved_and_replayed(
    tiny: Tiny, body: dict[str, Any] | str, code: str
) -> None:
    first = tiny.post(body)
    again = tiny.post(body)
    assert (first.status, first.error["code"]) == (400, code)
    assert (again.status, again.replayed, again.text) == (400, True, first.text)
    saved = record(tiny.tenant, "k-1")
    assert saved is not None
    assert (saved["status"], saved["response_status"]) == ("completed", 400)


def test_input_400_for_a_bad_query_is_saved(tiny: Tiny) -> None:
    first = tiny.call(tiny.event({"title": "x"}, query={"colour": "red"}))
    again = tiny.call(tiny.event({"title": "x"}, query={"colour": "red"}))
    assert (first.status, first.error["code"]) == (400, "parameter_unknown")
    assert again.replayed
    assert tiny.runs == []


def test_unparsable_body_then_another_body_is_key_reused(tiny: Tiny) -> None:
    assert tiny.post('{"title": "x",').status == 400
    reply = tiny.post({"title": "x"})
    assert reply.error["code"] == "idempotency_key_reused"
    assert tiny.runs == []


@pytest.mark.parametrize("title", ["flaky", "throttled"])
def test_5xx_is_not_saved_so_the_retry_runs_again(tiny: Tiny, title: str) -> None:
    tiny.failures_left = 1
    first = tiny.post({"title": title})
    assert (first.status, first.error["type"]) == ((500, 503)[title == "throttled"], "api_error")
    if title == "throttled":
        assert first.headers["Retry-After"] == "1"
    kept = record(tiny.tenant, "k-1")
    assert kept is not None  # released: the lease is over, the recovery point is kept
    assert (kept["status"], kept["lease_expires_at"], "response_status" in kept) == (
        "in_progress",
        0,
        False,
    )
    retry = tiny.post({"title": title})
    assert not retry.replayed
    assert tiny.runs == [title, title]
    if title == "flaky":
        assert retry.status == 201
        assert tiny.post({"title": title}).replayed
        assert tiny.runs == [title, title]


def test_429_claims_nothing(tenant: Tenant) -> None:
    tiny = build(tenant, allow=0)
    reply = tiny.post({"title": "Intro"})
    assert reply.status == 429
    assert record(tenant, "k-1") is None


def test_403_comes_before_the_key_and_claims_nothing(tiny: Tiny) -> None:
    restricted = {"key_kind": "restricted", "permissions": "courses:read"}
    invalid_key = tiny.call(tiny.event({"title": "Intro"}, key="", authorizer=restricted))
    assert (invalid_key.status, invalid_key.error["code"]) == (403, "insufficient_permissions")
    valid_key = tiny.call(tiny.event({"title": "Intro"}, authorizer=restricted))
    assert valid_key.status == 403
    assert record(tiny.tenant, "k-1") is None
    assert tiny.post({"title": "Intro"}).status == 201  # the 403 was not saved


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "line\nbreak", "tab\t"],
    ids=["empty", "too-long", "non-ascii", "newline", "tab"],
)
def test_invalid_key_is_400_parameter_invalid(tiny: Tiny, key: str) -> None:
    with count_dynamo_calls(clients.table().meta.client) as calls:
        reply = tiny.post({"title": "Intro"}, key=key)
    assert reply.status == 400
    assert (reply.error["type"], reply.error["code"], reply.error["param"]) == (
        "invalid_request_error",
        "parameter_invalid",
        "Idempotency-Key",
    )
    assert tiny.runs == []
    assert sum(calls.calls.values()) == 0


def test_longest_key_and_any_header_case_work(tiny: Tiny) -> None:
    longest = "~" * 255
    event = tiny.event({"title": "Intro"}, key=None)
    event["headers"]["idempotency-key"] = longest
    event["multiValueHeaders"]["idempotency-key"] = [longest]
    assert tiny.call(event).status == 201
    assert tiny.post({"title": "Intro"}, key=longest).replayed
    assert tiny.runs == ["Intro"]


def test_same_key_while_the_first_runs_is_409_in_progress(tiny: Tiny) -> None:
    store = deps.idempotency_store()
    claim = claim_for(store, tiny.event({"title": "Intro"}), tiny.tenant, "k-1")
    reply = tiny.post({"title": "Intro"})
    assert reply.status == 409
    assert (reply.error["type"], reply.error["code"]) == (
        "idempotency_error",
        "idempotency_request_in_progress",
    )
    assert tiny.runs == []
    busy = record(tiny.tenant, "k-1")
    assert busy is not None
    assert (busy["status"], busy["token"]) == ("in_progress", claim.token)  # the 409 saved nothing
    # another request with the key while the first runs is a reuse, not a wait
    assert tiny.post({"title": "Other"}).error["code"] == "idempotency_key_reused"
    # once the first finishes, the repeat replays it
    assert store.complete(claim, 201, '{"id": "thg_first"}')
    again = tiny.post({"title": "Intro"})
    assert (again.status, again.body, again.replayed) == (201, {"id": "thg_first"}, True)


def test_stale_in_progress_claim_is_taken_over(tiny: Tiny) -> None:
    crashed = IdempotencyStore(clients.table(), clock=lambda: time.time() - 31)
    stale = claim_for(crashed, tiny.event({"title": "Intro"}), tiny.tenant, "k-1")
    reply = tiny.post({"title": "Intro"})
    assert (reply.status, reply.replayed) == (201, False)
    assert tiny.runs == ["Intro"]
    saved = record(tiny.tenant, "k-1")
    assert saved is not None
    assert (saved["status"], saved["response_status"]) == ("completed", 201)
    # the crashed invocation, were it to wake, can neither overwrite nor release the new record
    assert not crashed.complete(stale, 500, "{}")
    assert not crashed.release(stale)
    assert tiny.post({"title": "Intro"}).replayed


def test_claim_lease_is_the_invocations_remaining_time(tiny: Tiny) -> None:
    during = tiny.call(tiny.event({"title": "peek"}, key="k-peek"), Context(remaining_ms=4_000))
    assert during.body["status"] == "in_progress"
    assert 3_000 <= during.body["lease_ms"] <= 5_000
    bare = tiny.call(tiny.event({"title": "peek"}, key="k-bare"), BareContext())
    assert 29_000 <= bare.body["lease_ms"] <= 31_000
    saved = record(tiny.tenant, "k-bare")
    assert saved is not None
    assert "lease_expires_at" not in saved  # a completed record has no lease left


def test_claim_record_expires_in_24_hours(table: Table, tenant: Tenant) -> None:
    store = IdempotencyStore(table, clock=lambda: 1_000.0)
    fp = idempotency.fingerprint("POST", "/things", {}, "{}")
    claim = store.claim(tenant, "k-1", fp, method="POST", path="/things", recovery_id=recovery)
    assert isinstance(claim, Claim)
    saved = record(tenant, "k-1")
    assert saved is not None
    assert (saved["lease_expires_at"], saved["expires_at"]) == (1_030_000, 1_000 + 24 * 3600)
    assert saved["recovery_id"] == "rcv-fixed"


def test_record_older_than_24_hours_runs_again(tiny: Tiny) -> None:
    yesterday = IdempotencyStore(clients.table(), clock=lambda: time.time() - 24 * 3600 - 1)
    old = claim_for(yesterday, tiny.event({"title": "Intro"}), tiny.tenant, "k-1")
    assert yesterday.complete(old, 201, '{"id": "thg_old"}')
    reply = tiny.post({"title": "Intro"})
    assert (reply.status, reply.replayed) == (201, False)
    assert reply.body["id"] != "thg_old"
    # nor does an expired record hold the key against another request
    claim_for(yesterday, tiny.event({"title": "Old"}), tiny.tenant, "k-2")
    assert tiny.post({"title": "New"}, key="k-2").status == 201
    assert tiny.runs == ["Intro", "New"]


def test_replay_costs_one_failed_write_and_no_read(tiny: Tiny) -> None:
    client = clients.table().meta.client
    with count_dynamo_calls(client) as first:
        tiny.post({"title": "Intro"})
    with count_dynamo_calls(client) as again:
        tiny.post({"title": "Intro"})
    with count_dynamo_calls(client) as fault:
        tiny.failures_left = 1
        tiny.post({"title": "flaky"}, key="k-fault")
    assert dict(first.calls) == {"PutItem": 1, "UpdateItem": 1}
    assert dict(again.calls) == {"PutItem": 1}
    assert dict(fault.calls) == {"PutItem": 1, "UpdateItem": 1}  # claim, release


class BrokenCompletion(IdempotencyStore):
    """DynamoDB refuses the completing write (the outer edge: AWS failing)."""

    def complete(self, claim: Claim, status: int, body: str) -> bool:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "UpdateItem")


def test_a_failed_completion_does_not_change_the_answer(table: Table, tenant: Tenant) -> None:
    tiny = build(tenant, store=lambda: BrokenCompletion(table))
    reply = tiny.post({"title": "Intro"})
    assert (reply.status, reply.body["title"]) == (201, "Intro")
    # the claim stays in progress until its lease ends: a retry meanwhile is told to wait
    assert tiny.post({"title": "Intro"}).status == 409
    assert tiny.runs == ["Intro"]


# --------------------------------------------------------------------------- the store itself


def claim(store: IdempotencyStore, tenant: Tenant, key: str, fp: str = "fp") -> Claim | Saved:
    ids = iter(f"rcv-{n}" for n in range(1, 100))
    return store.claim(tenant, key, fp, method="POST", path="/x", recovery_id=lambda: next(ids))


def test_store_claim_complete_replay_release(table: Table, tenant: Tenant) -> None:
    store = IdempotencyStore(table)
    first = claim(store, tenant, "s-1")
    assert isinstance(first, Claim)
    assert (first.recovery_id, first.resumed) == ("rcv-1", False)
    item = record(tenant, "s-1")
    assert item is not None
    assert (item["PK"], item["SK"]) == (f"IDEM#{tenant.account_id}#test#s-1", "IDEM")
    assert (item["type"], item["status"], item["method"], item["path"]) == (
        "idempotency",
        "in_progress",
        "POST",
        "/x",
    )
    with pytest.raises(errors.IdempotencyInProgressError):
        claim(store, tenant, "s-1")
    with pytest.raises(errors.IdempotencyKeyReusedError):
        claim(store, tenant, "s-1", "other")
    assert store.complete(first, 201, '{"ok": true}')
    assert claim(store, tenant, "s-1") == Saved(201, '{"ok": true}')
    second = claim(store, tenant, "s-2")
    assert isinstance(second, Claim)
    assert store.release(second)
    # released after a 5xx: the same request resumes it, with the same recovery point
    resumed = claim(store, tenant, "s-2")
    assert isinstance(resumed, Claim)
    assert (resumed.recovery_id, resumed.resumed) == (second.recovery_id, True)
    assert resumed.token != second.token
    assert not store.complete(second, 201, "{}")  # the old run's token no longer counts
    assert store.release(resumed)
    # another request with the released key is still a reuse: the first may have done its work
    with pytest.raises(errors.IdempotencyKeyReusedError):
        claim(store, tenant, "s-2", "other")


def test_two_retries_racing_for_a_released_claim_resume_it_once(
    table: Table, tenant: Tenant
) -> None:
    store = IdempotencyStore(table)
    first = claim(store, tenant, "s-3")
    assert isinstance(first, Claim)
    assert store.release(first)
    # both retries read the released record before either writes: one takes it over
    stale = record(tenant, "s-3")
    assert stale is not None
    winner = store._take_over(tenant, "s-3", stale, "token-a", 5_000)
    loser = store._take_over(tenant, "s-3", stale, "token-b", 5_000)
    assert winner is not None
    assert (winner.recovery_id, winner.resumed, loser) == (first.recovery_id, True, None)
    # and a retry arriving now meets the winner's live lease
    with pytest.raises(errors.IdempotencyInProgressError):
        claim(store, tenant, "s-3")


def test_a_resent_claim_whose_first_try_was_written_is_still_this_claim(
    table: Table, tenant: Tenant
) -> None:
    store = IdempotencyStore(table)
    sent: list[dict[str, Any]] = []

    class Resending:
        """An endpoint that writes the first try, loses its answer, and gets the resend."""

        def put_item(self, **kwargs: Any) -> Any:
            sent.append(kwargs)
            table.put_item(**kwargs)
            return table.put_item(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(table, name)

    resending = IdempotencyStore(cast("Table", Resending()))
    taken = claim(resending, tenant, "s-4")
    assert isinstance(taken, Claim)
    assert len(sent) == 1
    assert taken.token == (record(tenant, "s-4") or {}).get("token")
    with pytest.raises(errors.IdempotencyInProgressError):  # it is in progress, as claimed
        claim(store, tenant, "s-4")


def test_a_crashed_claim_is_resumed_only_by_the_same_request(tiny: Tiny) -> None:
    crashed = IdempotencyStore(clients.table(), clock=lambda: time.time() - 31)
    claim_for(crashed, tiny.event({"title": "Intro"}), tiny.tenant, "k-1")
    other = tiny.post({"title": "Other"})
    assert (other.status, other.error["code"]) == (400, "idempotency_key_reused")
    assert tiny.runs == []
    assert tiny.post({"title": "Intro"}).status == 201


class NoOldImageTable:
    """A DynamoDB endpoint that ignores ReturnValuesOnConditionCheckFailure (the outer edge)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.gets = 0

    def put_item(self, **kwargs: Any) -> Any:
        kwargs.pop("ReturnValuesOnConditionCheckFailure", None)
        return self.table.put_item(**kwargs)

    def get_item(self, **kwargs: Any) -> Any:
        self.gets += 1
        return self.table.get_item(**kwargs)


def test_store_reads_the_record_where_the_failed_put_does_not_return_it(
    table: Table, tenant: Tenant
) -> None:
    endpoint = NoOldImageTable(table)
    store = IdempotencyStore(cast("Table", endpoint))
    first = claim(IdempotencyStore(table), tenant, "s-1")
    assert isinstance(first, Claim)
    with pytest.raises(errors.IdempotencyInProgressError):
        claim(store, tenant, "s-1")
    assert endpoint.gets == 1
    IdempotencyStore(table).complete(first, 400, "{}")
    assert claim(store, tenant, "s-1") == Saved(400, "{}")


# --------------------------------------------------------------------------- POST /courses


COURSE = {
    "title": "Distributed Systems",
    "description": "Consensus and replication.",
    "price": Decimal("49.99"),
    "currency": "USD",
}


def create(tenant: Tenant, key: str | None, body: dict[str, Any] | str = COURSE) -> Reply:
    return invoke(
        create_course.lambda_handler, request("create_course", tenant, key=key, body=body)
    )


def courses(tenant: Tenant) -> int:
    return deps.repository(CourseRepository).count(tenant)


def test_create_course_twice_with_one_key_creates_one_course(tenant: Tenant) -> None:
    first = create(tenant, "order-1")
    again = create(tenant, "order-1")
    assert (first.status, again.status) == (201, 201)
    assert again.replayed
    assert again.body == first.body
    assert courses(tenant) == 1
    listed = invoke(list_courses.lambda_handler, request("list_courses", tenant))
    assert [course["id"] for course in listed.body["data"]] == [first.body["id"]]


def test_create_course_with_reordered_body_replays(tenant: Tenant) -> None:
    first = create(tenant, "order-1")
    reordered = (
        '{"currency":"USD","price":49.990,"description":"Consensus and replication.",'
        ' "title": "Distributed Systems"}'
    )
    again = create(tenant, "order-1", reordered)
    assert (again.replayed, again.body["id"]) == (True, first.body["id"])
    assert courses(tenant) == 1


def test_create_course_key_reused_for_another_course_is_400(tenant: Tenant) -> None:
    create(tenant, "order-1")
    reply = create(tenant, "order-1", {**COURSE, "title": "Another"})
    assert (reply.status, reply.error["type"], reply.error["code"]) == (
        400,
        "idempotency_error",
        "idempotency_key_reused",
    )
    assert courses(tenant) == 1


def test_create_course_other_key_and_other_tenant_create_their_own(tenant: Tenant) -> None:
    first = create(tenant, "order-1")
    second = create(tenant, "order-2")
    other_account = new_tenant()
    theirs = create(other_account, "order-1")
    live = Tenant(tenant.account_id, "live")
    own_live = create(live, "order-1")
    assert len({reply.body["id"] for reply in (first, second, theirs, own_live)}) == 4
    assert not any(reply.replayed for reply in (second, theirs, own_live))
    assert (theirs.body["livemode"], own_live.body["livemode"]) == (False, True)
    assert (courses(tenant), courses(other_account), courses(live)) == (2, 1, 1)


def test_create_course_400_is_saved_and_replayed(tenant: Tenant) -> None:
    bad = {**COURSE, "price": Decimal("49.999")}
    first = create(tenant, "order-1", bad)
    again = create(tenant, "order-1", bad)
    assert (first.status, first.error["param"]) == (400, "price")
    assert (again.status, again.replayed, again.body) == (400, True, first.body)
    assert courses(tenant) == 0


def test_create_course_costs_two_writes_more_and_a_replay_two_writes(tenant: Tenant) -> None:
    client = clients.table().meta.client
    with count_dynamo_calls(client) as plain:
        assert create(tenant, None).status == 201
    with count_dynamo_calls(client) as keyed:
        assert create(tenant, "order-1").status == 201
    with count_dynamo_calls(client) as replay:
        assert create(tenant, "order-1").replayed
    assert dict(keyed.calls - plain.calls) == {"PutItem": 1, "UpdateItem": 1}  # claim, complete
    assert plain.calls - keyed.calls == Counter()
    assert dict(replay.calls) == {"UpdateItem": 1, "PutItem": 1}  # rate limit, failed claim
    assert replay.reads == 0
