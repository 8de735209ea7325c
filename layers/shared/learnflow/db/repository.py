"""What every repository shares: reads by id, exact lists and counts, and the create that is
written once under the id its request fixed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar, cast

from learnflow import errors, ids
from learnflow.db import counters, keys
from learnflow.db.transactions import write_transaction
from learnflow.pagination import Listing, ListSource, PageRequest, listing
from learnflow.resources import Resource
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

T = TypeVar("T")
Created = Literal["created", "exists"]
Reasons = list[str]  # a transaction's cancellation reason per action
FAILED = "ConditionalCheckFailed"  # a transaction's cancellation reason for a failed condition


class ListRequest(PageRequest, Protocol):
    """A list's query: pagination and the exact filters of its partition."""

    def filters(self) -> dict[str, str]: ...


class Repository(Generic[T]):
    """One resource's objects in the single table (`keys.item(tenant, kind, id)`), its lists
    (one exact partition per filter combination: the resource's indexes) and its counts
    (learnflow.db.counters). Subclasses say how an item becomes an object (`from_item`) and
    write what their resource writes."""

    resource: ClassVar[Resource]

    def __init__(self, table: Table) -> None:
        self._table = table

    def from_item(self, tenant: Tenant, item: dict[str, Any]) -> T:
        raise NotImplementedError

    # --- reads ---

    def find(self, tenant: Tenant, object_id: str) -> T | None:
        """The object, or None if this tenant has none with that id (whatever its shape)."""
        if not ids.is_valid(object_id, self.resource.prefix):
            return None
        item = self._table.get_item(Key=self.key(tenant, object_id), ConsistentRead=True).get(
            "Item"
        )
        return self.from_item(tenant, cast("dict[str, Any]", item)) if item else None

    def get(self, tenant: Tenant, object_id: str) -> T:
        """The object; 404 `resource_missing` if this tenant has none with that id."""
        found = self.find(tenant, object_id)
        if found is None:
            raise errors.not_found(self.resource.object, object_id)
        return found

    def list(self, tenant: Tenant, query: ListRequest) -> Listing[T]:
        """One page, newest first, from the exact partition of the query's filters: at most
        `limit + 2` items of the list and one read of its count (learnflow.pagination)."""
        filters = query.filters()
        kind = self.resource.kind
        return listing(
            self._table,
            ListSource(
                partition=keys.filtered(tenant, kind, **filters)
                if filters
                else keys.collection(tenant, kind),
                index=self.resource.index(frozenset(filters)),
            ),
            query,
            id_prefix=self.resource.prefix,
            convert=lambda item: self.from_item(tenant, item),
            total_count=lambda: self.count(tenant, **filters),
        )

    def count(self, tenant: Tenant, **filters: str) -> int:
        """How many objects match `filters` exactly (one BatchGetItem of the count's shards)."""
        return counters.read(self._table, tenant, self.resource.kind, **filters)

    # --- writes ---

    def key(self, tenant: Tenant, object_id: str) -> keys.Key:
        return keys.item(tenant, self.resource.kind, object_id)

    def projections(self, tenant: Tenant, values: Mapping[str, str | None]) -> dict[str, str]:
        """The GSI keys that put an object with these filter `values` in each filtered list it
        belongs to (a combination with a missing value is left out: a GSI key cannot be null)."""
        item: dict[str, str] = {}
        object_id = str(values["id"])
        for filters, index in self.resource.indexes.items():
            chosen = {name: values.get(name) for name in filters}
            if any(value is None for value in chosen.values()):
                continue
            partition_attribute, sort_attribute = keys.GSI[index]
            item[partition_attribute] = keys.filtered(
                tenant, self.resource.kind, **{name: str(v) for name, v in chosen.items()}
            )
            item[sort_attribute] = object_id
        return item

    def put_new(
        self,
        tenant: Tenant,
        item: dict[str, Any],
        counts: Mapping[str, int],
        *,
        also: Sequence[dict[str, Any]] = (),
    ) -> Created | Reasons:
        """One transaction: the new object's item (the recovery point: written only if no item
        has its id), `also` (more actions) and its counts. `exists` when the id was written
        already (by an earlier run of the same request); the cancellation reasons when another
        of `also`'s conditions failed."""
        object_id = str(item[keys.SK])
        put = {
            "Put": {
                "TableName": self._table.name,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        updates = counters.updates(
            self._table, tenant, self.resource.kind, counts, object_id=object_id
        )
        reasons = write_transaction(self._table, [put, *also, *updates])
        if reasons is None:
            return "created"
        if reasons[0] == FAILED:
            return "exists"
        return reasons
