"""Students in the single table: one item each, an e-mail uniqueness item, and a count."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

from learnflow import errors, ids
from learnflow.db import counters, keys
from learnflow.db.transactions import write_transaction
from learnflow.jsonio import iso
from learnflow.models.students import (
    Student,
    StudentCreate,
    StudentListQuery,
    StudentUpdate,
    email_key,
)
from learnflow.pagination import Listing, ListSource, listing, listing_of
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ID_PREFIX: Final = "stu"
STUDENT_TYPE: Final = "student"
EMAIL_TYPE: Final = "student_email"
EMAIL_KIND: Final = "STUDENT_EMAIL"  # the uniqueness items' partition (`keys.unique`)
_UPDATE_ATTEMPTS: Final = 5
_CONDITION_FAILED: Final = "ConditionalCheckFailed"


class StudentRepository:
    """Create, read, update and list a tenant's students; one student per e-mail address.

    Item `keys.item(tenant, STUDENT, id)`: the student, `type` "student", and a `version` for
    optimistic locking. Uniqueness item `keys.unique(tenant, STUDENT_EMAIL, <lower-cased
    address>)` names the student holding the address; it is written, moved and checked in the
    same transaction as the student, so two students never share an address, whatever races.
    """

    def __init__(self, table: Table) -> None:
        self._table = table

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
        actions = [
            {
                "Put": {
                    "TableName": self._table.name,
                    "Item": _to_item(tenant, student),
                    # the recovery point: written once, never overwritten
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {"Put": self._email_claim(tenant, student)},
            *counters.updates(
                self._table, tenant, keys.STUDENT, {keys.counter_name(): 1}, object_id=student.id
            ),
        ]
        reasons = write_transaction(self._table, actions)
        if reasons is None:
            return student
        if reasons[0] == _CONDITION_FAILED:
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
        item = _to_item(tenant, replace(after, version=before.version + 1))
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
        if moved and reasons[1] == _CONDITION_FAILED and reasons[0] != _CONDITION_FAILED:
            raise _email_taken(after.email)
        return False

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

    def find(self, tenant: Tenant, student_id: str) -> Student | None:
        """The student, or None if this tenant has none with that id (whatever its shape)."""
        if not ids.is_valid(student_id, ID_PREFIX):
            return None
        item = self._table.get_item(
            Key=keys.item(tenant, keys.STUDENT, student_id), ConsistentRead=True
        ).get("Item")
        return _from_item(tenant, cast("dict[str, Any]", item)) if item else None

    def get(self, tenant: Tenant, student_id: str) -> Student:
        """The student; 404 if this tenant has none with that id."""
        student = self.find(tenant, student_id)
        if student is None:
            raise errors.not_found("student", student_id)
        return student

    def find_by_email(self, tenant: Tenant, email: str) -> Student | None:
        """The student holding `email` (compared case-insensitively), read consistently."""
        claim = self._table.get_item(
            Key=keys.unique(tenant, EMAIL_KIND, email_key(email)), ConsistentRead=True
        ).get("Item")
        return self.find(tenant, str(claim["student_id"])) if claim else None

    def list(self, tenant: Tenant, query: StudentListQuery) -> Listing[Student]:
        """One page, newest first; with `email`, the one student holding the address (or none)."""
        if query.email is not None:
            found = self.find_by_email(tenant, query.email)
            return listing_of([found] if found else [], query, id_prefix=ID_PREFIX, id_of=_id)
        return listing(
            self._table,
            ListSource(partition=keys.collection(tenant, keys.STUDENT)),
            query,
            id_prefix=ID_PREFIX,
            convert=lambda item: _from_item(tenant, item),
            total_count=lambda: self.count(tenant),
        )

    def count(self, tenant: Tenant) -> int:
        """Every student of the tenant (one BatchGetItem of the count's shards)."""
        return counters.read(self._table, tenant, keys.STUDENT)


def _email_taken(email: str) -> errors.ConflictError:
    return errors.ConflictError(
        f"A student with the email {email!r} already exists.", code="email_taken", param="email"
    )


def _id(student: Student) -> str:
    return student.id


def _to_item(tenant: Tenant, student: Student) -> dict[str, Any]:
    return {
        **keys.item(tenant, keys.STUDENT, student.id),
        keys.TYPE_ATTRIBUTE: STUDENT_TYPE,
        "id": student.id,
        "email": student.email,
        "name": student.name,
        "metadata": dict(student.metadata),
        "created_at": student.created_at,
        "version": student.version,
    }


def _from_item(tenant: Tenant, item: dict[str, Any]) -> Student:
    return Student(
        id=str(item["id"]),
        email=str(item["email"]),
        name=str(item["name"]),
        metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        livemode=tenant.livemode,
        created_at=str(item["created_at"]),
        version=int(item.get("version", 1)),
    )
