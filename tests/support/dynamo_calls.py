"""Count DynamoDB calls and items read through one boto3 client (a botocore event hook)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count()


@dataclass
class DynamoCalls:
    """What one stretch of code asked of DynamoDB: calls and items read, by operation."""

    calls: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)  # items each operation wrote
    log: list[tuple[str, int]] = field(default_factory=list)  # (operation, items read) in order

    @property
    def items_read(self) -> int:
        return sum(self.items.values())

    @property
    def items_written(self) -> int:
        return sum(self.written.values())

    @property
    def reads(self) -> int:
        """Calls that read items (Query, Scan, GetItem, BatchGetItem, TransactGetItems)."""
        return sum(self.calls[name] for name in _READS)

    def record(self, operation: str, parsed: dict[str, Any]) -> None:
        read = items_read(operation, parsed)
        self.calls[operation] += 1
        self.items[operation] += read
        self.log.append((operation, read))


_READS = ("Query", "Scan", "GetItem", "BatchGetItem", "TransactGetItems")


def items_written(operation: str, params: dict[str, Any]) -> int:
    """How many items a write asks to change (whether or not its conditions then hold)."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 1
    if operation == "TransactWriteItems":
        return len(params.get("TransactItems", []))
    if operation == "BatchWriteItem":
        return sum(len(requests) for requests in params.get("RequestItems", {}).values())
    return 0


def items_read(operation: str, parsed: dict[str, Any]) -> int:
    """How many items a response shows were read: what a Query or Scan examined
    (`ScannedCount`, which also counts items a filter then dropped), the item a GetItem found,
    every item a batch or transactional get returned."""
    if operation in ("Query", "Scan"):
        return int(parsed.get("ScannedCount", parsed.get("Count", 0)))
    if operation == "GetItem":
        return 1 if parsed.get("Item") else 0
    if operation == "BatchGetItem":
        return sum(len(found) for found in parsed.get("Responses", {}).values())
    if operation == "TransactGetItems":
        return sum(1 for found in parsed.get("Responses", []) if found.get("Item"))
    return 0


@contextmanager
def count_dynamo_calls(client: Any) -> Iterator[DynamoCalls]:
    """Count what `client` (e.g. `table.meta.client`) sends to DynamoDB inside the block.

    Uses botocore's `after-call` event, emitted once per API call after its retries, with the
    parsed response; failed calls count as calls that read nothing.
    """
    calls = DynamoCalls()
    unique_id = f"learnflow-dynamo-calls-{next(_ids)}"

    def after_call(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        calls.record(str(model.name), parsed or {})

    def before_build(params: dict[str, Any], model: Any, **_: Any) -> None:
        # the call's own parameters, once per call (botocore's retries do not build again)
        calls.written[str(model.name)] += items_written(str(model.name), params)

    events = client.meta.events
    events.register("after-call.dynamodb", after_call, unique_id=unique_id)
    events.register("before-parameter-build.dynamodb", before_build, unique_id=unique_id + "-w")
    try:
        yield calls
    finally:
        events.unregister("after-call.dynamodb", unique_id=unique_id)
        events.unregister("before-parameter-build.dynamodb", unique_id=unique_id + "-w")
