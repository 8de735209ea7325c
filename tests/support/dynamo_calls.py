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
    log: list[tuple[str, int]] = field(default_factory=list)  # (operation, items read) in order

    @property
    def items_read(self) -> int:
        return sum(self.items.values())

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

    events = client.meta.events
    events.register("after-call.dynamodb", after_call, unique_id=unique_id)
    try:
        yield calls
    finally:
        events.unregister("after-call.dynamodb", unique_id=unique_id)
