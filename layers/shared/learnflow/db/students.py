"""Students in the single table: one item each, an e-mail uniqueness item, and a count."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from learnflow import errors
from learnflow.db import keys
from learnflow.db.repository import FAILED, ListRequest, Repository
from learnflow.db.transactions import write_transaction
from learnflow.jsonio import iso
from learnflow.models.students import (
    Student,
    StudentCreate,
    StudentListQuery,
    StudentUpdate,
    email_key,
)
from learnflow.pagination import Listing, listing_of
from learnflow.resources import STUDENTS
from learnflow.tenancy import Tenant

EMAIL_TYPE: Final = "student_email"
EMAIL_KIND: Final = "STUDENT_EMAIL"  # the uniqueness items' partition (`keys.unique`)
_UPDATE_ATTEMPTS: Final = 5


class StudentRepository(Repository[Student]):
    """Create, read, update and list a tenant's students; one student per e-mail address.

    Item `keys.item(tenant, STUDENT, id)`: the student, `type` "student", and a `version` for
    optimistic locking. Uniqueness item `keys.unique(tenant, STUDENT_EMAIL, <lower-cased
    address>)` names the student holding the address; it is written, moved and checked in the
    same transaction as the student, so two students never share an address, whatever races.
    """

    resource = STUDENTS

    # --- writes ---

    def create(self, tenant: Tenant, data: StudentCreate, *, student_id: str) -> Student:
        """A new student with the id `student_id`; 409 `email_taken` when another student of
        the tenant has the address. A student already stored under that id was made by an
        earlier run of the same request, and is returned as it is."""
        student = Student(
            id=student_id,
            email=data.email,
            name=data.name,
            metadata=data.stored_metadata(),
            livemode=tenant.livemode,
            created_at=iso(datetime.now(UTC)),
        )
        created = self.put_new(
            tenant,
            self._to_item(tenant, student),
            {keys.counter_name(): 1},
            also=[{"Put": self._email_claim(tenant, student)}],
        )
        if created == "created":
            return student
        if created == "exists":
            return self.get(tenant, student.id)
        raise _email_taken(data.email)

    def update(self, tenant: Tenant, student_id: str, patch: StudentUpdate) -> Student:
        """Apply `patch`; an address change moves the uniqueness item in the same transaction
        (409 `email_taken` when another student has the new address). A concurrent write makes
        it re-read and re-apply (optimistic locking on `version`)."""
        for _ in range(_UPDATE_ATTEMPTS):
            student = self.get(tenant, student_id)
            updated = patch.apply(student)
            if updated is student:
                return student
            if self._save(tenant, student, updated):
                return replace(updated, version=student.version + 1)
        raise errors.service_unavailable()  # outraced five times: transient, never a 4xx

    def _save(self, tenant: Tenant, before: Student, after: Student) -> bool:
        """Write `after` if the stored student is still `before`; False when it is not."""
        item = self._to_item(tenant, replace(after, version=before.version + 1))
        put = {
            "TableName": self._table.name,
            "Item": item,
            "ConditionExpression": "#version = :expected",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":expected": before.version},
        }
        actions: list[dict[str, Any]] = [{"Put": put}]
        moved = email_key(before.email) != email_key(after.email)
        if moved:
            actions.append({"Put": self._email_claim(tenant, after)})
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table.name,
                        "Key": keys.unique(tenant, EMAIL_KIND, email_key(before.email)),
                        "ConditionExpression": "student_id = :me",
                        "ExpressionAttributeValues": {":me": before.id},
                    }
                }
            )
        reasons = write_transaction(self._table, actions)
        if reasons is None:
            return True
        if moved and reasons[1] == FAILED and reasons[0] != FAILED:
            raise _email_taken(after.email)
        return False

    def _to_item(self, tenant: Tenant, student: Student) -> dict[str, Any]:
        return {
            **self.key(tenant, student.id),
            keys.TYPE_ATTRIBUTE: STUDENTS.object,
            "id": student.id,
            "email": student.email,
            "name": student.name,
            "metadata": dict(student.metadata),
            "created_at": student.created_at,
            "version": student.version,
        }

    def from_item(self, tenant: Tenant, item: dict[str, Any]) -> Student:
        return _student(tenant, item)

    def _email_claim(self, tenant: Tenant, student: Student) -> dict[str, Any]:
        return {
            "TableName": self._table.name,
            "Item": {
                **keys.unique(tenant, EMAIL_KIND, email_key(student.email)),
                keys.TYPE_ATTRIBUTE: EMAIL_TYPE,
                "student_id": student.id,
            },
            "ConditionExpression": "attribute_not_exists(PK)",
        }

    # --- reads ---

    def find_by_email(self, tenant: Tenant, email: str) -> Student | None:
        """The student holding `email` (compared case-insensitively), read consistently."""
        claim = self._table.get_item(
            Key=keys.unique(tenant, EMAIL_KIND, email_key(email)), ConsistentRead=True
        ).get("Item")
        return self.find(tenant, str(claim["student_id"])) if claim else None

    def list(self, tenant: Tenant, query: ListRequest) -> Listing[Student]:
        """One page, newest first; with `email`, the one student holding the address (or none)."""
        if isinstance(query, StudentListQuery) and query.email is not None:
            found = self.find_by_email(tenant, query.email)
            return listing_of([found] if found else [], query, id_prefix=STUDENTS.prefix, id_of=_id)
        return super().list(tenant, query)


def _email_taken(email: str) -> errors.ConflictError:
    return errors.ConflictError(
        f"A student with the email {email!r} already exists.", code="email_taken", param="email"
    )


def _id(student: Student) -> str:
    return student.id


def _student(tenant: Tenant, item: dict[str, Any]) -> Student:
    return Student(
        id=str(item["id"]),
        email=str(item["email"]),
        name=str(item["name"]),
        metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        livemode=tenant.livemode,
        created_at=str(item["created_at"]),
        version=int(item.get("version", 1)),
    )
