"""Instructors in the single table: one item each and a counter, written in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

from learnflow import errors, ids
from learnflow.db import counters, keys
from learnflow.db.transactions import write_transaction
from learnflow.jsonio import iso
from learnflow.models.instructors import Instructor, InstructorCreate, InstructorListQuery
from learnflow.pagination import Listing, ListSource, listing
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ID_PREFIX: Final = "ins"
INSTRUCTOR_TYPE: Final = "instructor"


class InstructorRepository:
    """Create, read and list a tenant's instructors."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def create(self, tenant: Tenant, data: InstructorCreate, *, instructor_id: str) -> Instructor:
        """A new instructor with the id `instructor_id`; one already stored under that id was
        made by an earlier run of the same request, and is returned as it is."""
        instructor = Instructor(
            id=instructor_id,
            name=data.name,
            email=data.email,
            bio=data.bio,
            metadata=data.stored_metadata(),
            livemode=tenant.livemode,
            created_at=iso(datetime.now(UTC)),
        )
        put = {
            "TableName": self._table.name,
            "Item": _to_item(tenant, instructor),
            # the recovery point: written once, never overwritten
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        count = counters.updates(
            self._table, tenant, keys.INSTRUCTOR, {keys.counter_name(): 1}, object_id=instructor.id
        )
        if write_transaction(self._table, [{"Put": put}, *count]) is not None:
            return self.get(tenant, instructor.id)  # only the put has a condition: it exists
        return instructor

    def find(self, tenant: Tenant, instructor_id: str) -> Instructor | None:
        """The instructor, or None if this tenant has no instructor with that id."""
        if not ids.is_valid(instructor_id, ID_PREFIX):
            return None
        item = self._table.get_item(
            Key=keys.item(tenant, keys.INSTRUCTOR, instructor_id), ConsistentRead=True
        ).get("Item")
        return _from_item(tenant, cast("dict[str, Any]", item)) if item else None

    def get(self, tenant: Tenant, instructor_id: str) -> Instructor:
        """The instructor; 404 if this tenant has none with that id (whatever its shape)."""
        instructor = self.find(tenant, instructor_id)
        if instructor is None:
            raise errors.not_found("instructor", instructor_id)
        return instructor

    def list(self, tenant: Tenant, query: InstructorListQuery) -> Listing[Instructor]:
        return listing(
            self._table,
            ListSource(partition=keys.collection(tenant, keys.INSTRUCTOR)),
            query,
            id_prefix=ID_PREFIX,
            convert=lambda item: _from_item(tenant, item),
            total_count=lambda: self.count(tenant),
        )

    def count(self, tenant: Tenant) -> int:
        """Every instructor of the tenant, from the counter (one item read)."""
        return counters.read(self._table, tenant, keys.INSTRUCTOR)


def _to_item(tenant: Tenant, instructor: Instructor) -> dict[str, Any]:
    return {
        **keys.item(tenant, keys.INSTRUCTOR, instructor.id),
        keys.TYPE_ATTRIBUTE: INSTRUCTOR_TYPE,
        "id": instructor.id,
        "name": instructor.name,
        "email": instructor.email,
        "bio": instructor.bio,
        "metadata": dict(instructor.metadata),
        "created_at": instructor.created_at,
    }


def _from_item(tenant: Tenant, item: dict[str, Any]) -> Instructor:
    return Instructor(
        id=str(item["id"]),
        name=str(item["name"]),
        email=item.get("email"),
        bio=item.get("bio"),
        metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        livemode=tenant.livemode,
        created_at=str(item["created_at"]),
    )
