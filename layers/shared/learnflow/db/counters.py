"""Exact counts for `total_count`, in sharded counter items read in O(1).

Each count (`keys.counter_name`: `all`, `status=draft`, `category=web#status=draft`, …) is kept
in `SHARDS` small items (`keys.counter`), and an object always adds to the same shard (a hash of
its id). So no single item is written by every create (concurrent creates of one tenant rarely
touch the same item, and a transaction conflict is retried), an item never grows with the number
of categories (DynamoDB's 400 KB item limit never comes near), and a count is one BatchGetItem of
`SHARDS` keys whatever the size of the tenant. Counts change in the same transaction as the
objects they count (`updates`), so they never drift.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from learnflow import errors
from learnflow.db import keys
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

SHARDS: Final = 8
COUNT_ATTRIBUTE: Final = "count"
_READ_ATTEMPTS: Final = 4
_BATCH_GET: Final = 100  # BatchGetItem's limit


def shard_of(object_id: str) -> int:
    """The shard an object counts in: stable, so a retried write touches the same item."""
    return int.from_bytes(hashlib.sha256(object_id.encode()).digest()[:4], "big") % SHARDS


def updates(
    table: Table, tenant: Tenant, kind: str, deltas: Mapping[str, int], *, object_id: str
) -> list[dict[str, Any]]:
    """TransactWriteItems actions adding `deltas` (count name → ±n) for the object `object_id`
    (one action per count; zero deltas are left out)."""
    shard = shard_of(object_id)
    return [
        {"Update": {"TableName": table.name, **_add(tenant, kind, name, shard, delta)}}
        for name, delta in sorted(deltas.items())
        if delta
    ]


def add_all(
    table: Table, tenant: Tenant, kind: str, totals: Iterable[tuple[str, str, int]]
) -> None:
    """Add many (object id, count name, delta) at once, outside any transaction: bulk loads of
    new objects (seeding, imports), while nothing else writes the tenant's counts. Reads the
    shards it changes in batches of 100 and writes them back in batches of 25, rather than one
    UpdateItem per shard."""
    merged: Counter[tuple[str, int]] = Counter()
    for object_id, name, delta in totals:
        merged[(name, shard_of(object_id))] += delta
    wanted = [key for key, delta in merged.items() if delta]
    client = table.meta.client
    for start in range(0, len(wanted), _BATCH_GET):
        chunk = wanted[start : start + _BATCH_GET]
        keys_of = {_shard_key(tenant, kind, key): key for key in chunk}
        current: dict[tuple[str, int], int] = {}
        request: Any = [keys.counter(tenant, kind, name, shard) for name, shard in chunk]
        for _ in range(_READ_ATTEMPTS):
            response = client.batch_get_item(
                RequestItems={table.name: {"Keys": request, "ConsistentRead": True}}
            )
            for item in response.get("Responses", {}).get(table.name, []):
                found = cast("dict[str, Any]", item)
                current[keys_of[(str(found[keys.PK]), str(found[keys.SK]))]] = int(
                    found.get(COUNT_ATTRIBUTE, 0)
                )
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
            request = (unprocessed.get(table.name) or {}).get("Keys") or []
            if not request:
                break
        else:
            raise errors.service_unavailable()
        with table.batch_writer() as batch:
            for name, shard in chunk:
                batch.put_item(
                    Item={
                        **keys.counter(tenant, kind, name, shard),
                        keys.TYPE_ATTRIBUTE: keys.COUNTER_TYPE,
                        COUNT_ATTRIBUTE: current.get((name, shard), 0) + merged[(name, shard)],
                    }
                )


def _shard_key(tenant: Tenant, kind: str, shard: tuple[str, int]) -> tuple[str, str]:
    key = keys.counter(tenant, kind, *shard)
    return key[keys.PK], key[keys.SK]


def read(table: Table, tenant: Tenant, kind: str, **filters: str) -> int:
    """How many `kind` objects of `tenant` match `filters` exactly: one BatchGetItem of the
    count's shards, strongly consistent."""
    name = keys.counter_name(**filters)
    wanted: list[Any] = [keys.counter(tenant, kind, name, shard) for shard in range(SHARDS)]
    total = 0
    # The resource's client takes and gives native values (boto3 registers its type transforms
    # on it), like every other call here.
    client = table.meta.client
    for attempt in range(_READ_ATTEMPTS):
        if attempt:
            time.sleep(0.02 * 2**attempt)  # AWS's advice for unprocessed keys: back off
        response = client.batch_get_item(
            RequestItems={
                table.name: {
                    "Keys": wanted,
                    "ConsistentRead": True,
                    "ProjectionExpression": "#c",
                    "ExpressionAttributeNames": {"#c": COUNT_ATTRIBUTE},
                }
            }
        )
        for item in response.get("Responses", {}).get(table.name, []):
            total += int(cast("Any", item).get(COUNT_ATTRIBUTE, 0))
        unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
        left = (unprocessed.get(table.name) or {}).get("Keys")
        if not left:
            return total
        wanted = list(left)
    raise errors.service_unavailable()


def _add(tenant: Tenant, kind: str, name: str, shard: int, delta: int) -> dict[str, Any]:
    """An UpdateItem adding `delta` to one shard of one count."""
    return {
        "Key": keys.counter(tenant, kind, name, shard),
        "UpdateExpression": "ADD #c :delta SET #type = :type",
        "ExpressionAttributeNames": {"#c": COUNT_ATTRIBUTE, "#type": keys.TYPE_ATTRIBUTE},
        "ExpressionAttributeValues": {":delta": delta, ":type": keys.COUNTER_TYPE},
    }
