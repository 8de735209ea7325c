"""Counts kept in a tenant's counters items (`keys.counters`), read in O(1) for `total_count`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from learnflow.db import keys
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def read(table: Table, tenant: Tenant, kind: str, **filters: str) -> int:
    """How many `kind` objects of `tenant` match `filters` exactly: one item read."""
    name = keys.counter_name(**filters)
    item = table.get_item(
        Key=keys.counters(tenant, kind),
        ProjectionExpression="#n",
        ExpressionAttributeNames={"#n": name},
        ConsistentRead=True,
    ).get("Item")
    return int(cast("Any", (item or {}).get(name, 0)))
