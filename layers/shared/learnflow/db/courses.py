"""Courses in the single table: items, filtered-list projections and exact counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from learnflow import errors, ids, money
from learnflow.db import counters, keys
from learnflow.db.instructors import InstructorRepository
from learnflow.db.transactions import write_transaction
from learnflow.jsonio import iso
from learnflow.models.courses import Course, CourseCreate, CourseListQuery, CourseUpdate
from learnflow.pagination import Listing, ListSource, listing
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

ID_PREFIX: Final = "crs"
COURSE_TYPE: Final = "course"
# Index of each filter combination (template.yaml declares GSI1..GSI5; these three are courses').
_INDEX_BY_FILTERS: Final[dict[frozenset[str], str]] = {
    frozenset({"status"}): "GSI1",
    frozenset({"category"}): "GSI2",
    frozenset({"category", "status"}): "GSI3",
}
# Attributes a PATCH never writes: the enrollment count belongs to enrollments (an atomic ADD
# there), and the keys, id, type and creation time never change.
_NOT_REWRITTEN: Final = frozenset(
    {keys.PK, keys.SK, keys.TYPE_ATTRIBUTE, "id", "created_at", "enrollment_count", "version"}
)
_UPDATE_ATTEMPTS: Final = 5
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


class StaleCourseError(Exception):
    """The course changed since it was read: re-read and apply the update again."""


class CourseRepository:
    """Create, read, update and list a tenant's courses; keep the counters exact.

    Item `keys.item(tenant, COURSE, id)`: the course's attributes, `type` "course", a `version`
    for optimistic locking, and its filtered-list projections (id as sort key):
    GSI1 `keys.filtered(tenant, COURSE, status=…)`; with a category only, GSI2
    `keys.filtered(…, category=…)` and GSI3 `keys.filtered(…, category=…, status=…)`.
    Counters `keys.counters(tenant, COURSE)`: `keys.counter_name(**filters)` for no filter, each
    status, each category and each pair, changed in the same transaction as the course.
    """

    def __init__(self, table: Table, instructors: InstructorRepository) -> None:
        self._table = table
        self._instructors = instructors

    # --- writes ---

    def create(self, tenant: Tenant, data: CourseCreate) -> Course:
        """A new draft course (the instructor, if named, must be one of this tenant's)."""
        now = _now()
        course = Course(
            id=ids.new_id(ID_PREFIX),
            title=data.title,
            description=data.description,
            category=data.category,
            instructor_id=data.instructor_id,
            instructor=self._instructor_name(tenant, data.instructor_id),
            price=money.normalize(data.price),
            currency=data.currency,
            status="draft",
            enrollment_count=0,
            metadata=data.stored_metadata(),
            livemode=tenant.livemode,
            created_at=now,
            updated_at=now,
        )
        put = {
            "TableName": self._table.name,
            "Item": _to_item(tenant, course),
            # ids are unique by construction; a clash must fail, never overwrite
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        count = {"TableName": self._table.name, **self._count_update(tenant, _counts(course))}
        actions = [{"Put": put}, {"Update": count}]
        if write_transaction(self._table, actions) is not None:
            raise errors.ConflictError(
                "The course could not be created; please retry.", code="lock_timeout"
            )
        return course

    def update(self, tenant: Tenant, course_id: str, patch: CourseUpdate) -> Course:
        """Apply `patch` to the stored course; a concurrent write makes it re-read and re-apply
        (optimistic locking on `version`), so counters never drift."""
        course = self.get(tenant, course_id)
        linked = patch.links_instructor()
        name = self._instructor_name(tenant, linked) if linked is not None else None
        for _ in range(_UPDATE_ATTEMPTS):
            updated = patch.apply(course, instructor_name=name, updated_at=_now())
            if updated is course:
                return course
            try:
                return self.save(tenant, course, updated)
            except StaleCourseError:
                course = self.get(tenant, course_id)
        raise errors.ConflictError(
            "The course is being changed by another request; please retry.", code="lock_timeout"
        )

    def save(self, tenant: Tenant, before: Course, after: Course) -> Course:
        """Write `after` over `before` if the stored course is still at `before.version`
        (else `StaleCourseError`); the counters move in the same transaction."""
        old, new = _to_item(tenant, before), _to_item(tenant, after)
        changed = {
            name: value
            for name, value in new.items()
            if name not in _NOT_REWRITTEN and old.get(name) != value
        }
        removed = [name for name in old if name not in new and name not in _NOT_REWRITTEN]
        names = {"#version": "version"}
        values: dict[str, Any] = {":expected": before.version, ":version": before.version + 1}
        sets = ["#version = :version"]
        for n, (name, value) in enumerate(sorted(changed.items())):
            names[f"#s{n}"] = name
            values[f":s{n}"] = value
            sets.append(f"#s{n} = :s{n}")
        expression = "SET " + ", ".join(sets)
        if removed:
            for n, name in enumerate(sorted(removed)):
                names[f"#r{n}"] = name
            expression += " REMOVE " + ", ".join(f"#r{n}" for n in range(len(removed)))
        update: dict[str, Any] = {
            "Key": keys.item(tenant, keys.COURSE, before.id),
            "UpdateExpression": expression,
            "ConditionExpression": "#version = :expected",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        deltas = _counts(after)
        deltas.subtract(_counts(before))
        deltas = Counter({name: delta for name, delta in deltas.items() if delta})
        if deltas:
            actions = [
                {"Update": {"TableName": self._table.name, **update}},
                {"Update": {"TableName": self._table.name, **self._count_update(tenant, deltas)}},
            ]
            if write_transaction(self._table, actions) is not None:
                raise StaleCourseError(before.id)
        else:
            try:
                self._table.update_item(**update)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                    raise StaleCourseError(before.id) from None
                raise
        return replace(after, version=before.version + 1)

    def load(self, tenant: Tenant, courses: Iterable[Course]) -> int:
        """Write many courses at once (seeding, benchmarks, imports): batched puts, then the
        counters in one update. Not atomic and not for ids that already exist; returns how many."""
        totals: Counter[str] = Counter()
        with self._table.batch_writer() as batch:
            for course in courses:
                batch.put_item(Item=_to_item(tenant, course))
                totals.update(_counts(course))
        if totals:
            self._table.update_item(**self._count_update(tenant, totals))
        return totals[keys.counter_name()]

    # --- reads ---

    def get(self, tenant: Tenant, course_id: str) -> Course:
        """The course; 404 if this tenant has none with that id (whatever its shape)."""
        if not ids.is_valid(course_id, ID_PREFIX):
            raise errors.not_found("course", course_id)
        item = self._table.get_item(
            Key=keys.item(tenant, keys.COURSE, course_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise errors.not_found("course", course_id)
        return _from_item(tenant, cast("dict[str, Any]", item))

    def list(self, tenant: Tenant, query: CourseListQuery) -> Listing[Course]:
        """One page, newest first: at most `limit + 2` items from the list's own partition and
        one from the counters (see learnflow.pagination)."""
        filters = query.filters()
        index = _INDEX_BY_FILTERS.get(frozenset(filters))
        partition = (
            keys.filtered(tenant, keys.COURSE, **filters)
            if filters
            else keys.collection(tenant, keys.COURSE)
        )
        return listing(
            self._table,
            ListSource(partition=partition, index=index),
            query,
            id_prefix=ID_PREFIX,
            convert=lambda item: _from_item(tenant, item),
            total_count=lambda: self.count(tenant, **filters),
        )

    def count(self, tenant: Tenant, **filters: str) -> int:
        """How many courses match `filters` exactly (one item read: the counters)."""
        return counters.read(self._table, tenant, keys.COURSE, **filters)

    # --- helpers ---

    def _instructor_name(self, tenant: Tenant, instructor_id: str | None) -> str | None:
        if instructor_id is None:
            return None
        instructor = self._instructors.find(tenant, instructor_id)
        if instructor is None:
            raise errors.resource_missing("instructor_id", instructor_id)
        return instructor.name

    def _count_update(self, tenant: Tenant, deltas: Counter[str]) -> dict[str, Any]:
        """An UpdateItem on the counters item adding `deltas` (name → ±n)."""
        names = {"#type": keys.TYPE_ATTRIBUTE}
        values: dict[str, Any] = {":type": keys.COUNTER_TYPE}
        adds = []
        for n, (name, delta) in enumerate(sorted(deltas.items())):
            names[f"#c{n}"] = name
            values[f":c{n}"] = delta
            adds.append(f"#c{n} :c{n}")
        return {
            "Key": keys.counters(tenant, keys.COURSE),
            "UpdateExpression": "ADD " + ", ".join(adds) + " SET #type = :type",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }


def _now() -> str:
    return iso(datetime.now(UTC))


def _counts(course: Course) -> Counter[str]:
    """The counters a course adds one to: all, its status, and its category (alone and with the
    status) when it has one."""
    names = [keys.counter_name(), keys.counter_name(status=course.status)]
    if course.category is not None:
        names.append(keys.counter_name(category=course.category))
        names.append(keys.counter_name(category=course.category, status=course.status))
    return Counter(names)


def _to_item(tenant: Tenant, course: Course) -> dict[str, Any]:
    """The stored item; attributes that are null are left out (a GSI key cannot be null)."""
    item: dict[str, Any] = {
        **keys.item(tenant, keys.COURSE, course.id),
        keys.TYPE_ATTRIBUTE: COURSE_TYPE,
        "id": course.id,
        "title": course.title,
        "description": course.description,
        "price": course.price,
        "currency": course.currency,
        "status": course.status,
        "enrollment_count": course.enrollment_count,
        "metadata": dict(course.metadata),
        "created_at": course.created_at,
        "updated_at": course.updated_at,
        "version": course.version,
    }
    gsi1_pk, gsi1_sk = keys.GSI["GSI1"]
    item[gsi1_pk] = keys.filtered(tenant, keys.COURSE, status=course.status)
    item[gsi1_sk] = course.id
    if course.category is not None:
        item["category"] = course.category
        gsi2_pk, gsi2_sk = keys.GSI["GSI2"]
        item[gsi2_pk] = keys.filtered(tenant, keys.COURSE, category=course.category)
        item[gsi2_sk] = course.id
        gsi3_pk, gsi3_sk = keys.GSI["GSI3"]
        item[gsi3_pk] = keys.filtered(
            tenant, keys.COURSE, category=course.category, status=course.status
        )
        item[gsi3_sk] = course.id
    if course.instructor_id is not None:
        item["instructor_id"] = course.instructor_id
        if course.instructor is not None:
            item["instructor_name"] = course.instructor
    return item


def _from_item(tenant: Tenant, item: dict[str, Any]) -> Course:
    return Course(
        id=str(item["id"]),
        title=str(item["title"]),
        description=str(item["description"]),
        category=item.get("category"),
        instructor_id=item.get("instructor_id"),
        instructor=item.get("instructor_name"),
        price=money.normalize(Decimal(item["price"])),
        currency=str(item["currency"]),
        status=item["status"],
        enrollment_count=int(item.get("enrollment_count", 0)),
        metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        livemode=tenant.livemode,
        created_at=str(item["created_at"]),
        updated_at=str(item["updated_at"]),
        version=int(item.get("version", 1)),
    )
