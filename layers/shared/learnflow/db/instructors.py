"""Instructors in the single table: one item each and a count, written in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from learnflow.db import keys
from learnflow.db.repository import Repository
from learnflow.jsonio import iso
from learnflow.models.instructors import Instructor, InstructorCreate
from learnflow.resources import INSTRUCTORS
from learnflow.tenancy import Tenant


class InstructorRepository(Repository[Instructor]):
    """Create, read and list a tenant's instructors."""

    resource = INSTRUCTORS

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
        created = self.put_new(tenant, self._to_item(tenant, instructor), {keys.counter_name(): 1})
        return self.get(tenant, instructor.id) if created == "exists" else instructor

    def _to_item(self, tenant: Tenant, instructor: Instructor) -> dict[str, Any]:
        return {
            **self.key(tenant, instructor.id),
            keys.TYPE_ATTRIBUTE: INSTRUCTORS.object,
            "id": instructor.id,
            "name": instructor.name,
            "email": instructor.email,
            "bio": instructor.bio,
            "metadata": dict(instructor.metadata),
            "created_at": instructor.created_at,
        }

    def from_item(self, tenant: Tenant, item: dict[str, Any]) -> Instructor:
        return Instructor(
            id=str(item["id"]),
            name=str(item["name"]),
            email=item.get("email"),
            bio=item.get("bio"),
            metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
            livemode=tenant.livemode,
            created_at=str(item["created_at"]),
        )
