"""Courses in the single table: items, filtered-list projections and exact counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from learnflow import errors, money
from learnflow.db import counters, keys
from learnflow.db.conditions import condition_failed
from learnflow.db.instructors import InstructorRepository
from learnflow.db.repository import Repository
from learnflow.db.transactions import write_transaction
from learnflow.jsonio import iso
from learnflow.models.courses import Course, CourseCreate, CourseUpdate
from learnflow.resources import COURSES
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

# Attributes a PATCH never writes: the enrollment count belongs to enrollments (an atomic ADD
# there), and the keys, id, type and creation time never change.
_NOT_REWRITTEN: Final = frozenset(
    {keys.PK, keys.SK, keys.TYPE_ATTRIBUTE, "id", "created_at", "enrollment_count", "version"}
)
_UPDATE_ATTEMPTS: Final = 5


class StaleCourseError(Exception):
    """The course changed since it was read: re-read and apply the update again."""


class CourseRepository(Repository[Course]):
    """Create, read, update and list a tenant's courses; keep the counts exact.

    Item `keys.item(tenant, COURSE, id)`: the course's attributes, `type` "course", a `version`
    for optimistic locking, and its filtered-list projections (the indexes of
    `resources.COURSES`: by status always; by category and by both only with a category).
    Counts (learnflow.db.counters): `keys.counter_name(**filters)` for no filter, each status,
    each category and each pair, changed in the same transaction as the course.
    """

    resource = COURSES

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self._instructors = InstructorRepository(table)

    # --- writes ---

    def create(self, tenant: Tenant, data: CourseCreate, *, course_id: str) -> Course:
        """A new draft course with the id `course_id` (the instructor, if named, must be one of
        this tenant's). A course already stored under that id was made by an earlier run of the
        same request (ids are unique, and a retried request keeps its id): it is returned as it
        is, and nothing is written again."""
        now = _now()
        course = Course(
            id=course_id,
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
        if self.put_new(tenant, self._to_item(tenant, course), _counts(course)) == "exists":
            return self.get(tenant, course.id)
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
        # Five concurrent writers in a row won the race: a transient conflict, never a 4xx.
        raise errors.service_unavailable()

    def save(self, tenant: Tenant, before: Course, after: Course) -> Course:
        """Write `after` over `before` if the stored course is still at `before.version`
        (else `StaleCourseError`); the counters move in the same transaction."""
        old, new = self._to_item(tenant, before), self._to_item(tenant, after)
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
            "Key": self.key(tenant, before.id),
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
                *counters.updates(self._table, tenant, keys.COURSE, deltas, object_id=before.id),
            ]
            if write_transaction(self._table, actions) is not None:
                raise StaleCourseError(before.id)
        else:
            try:
                self._table.update_item(**update)
            except ClientError as error:
                if condition_failed(error):
                    raise StaleCourseError(before.id) from None
                raise
        return replace(after, version=before.version + 1)

    def load(self, tenant: Tenant, courses: Iterable[Course]) -> int:
        """Write many courses at once (seeding, benchmarks, imports): batched puts, then the
        counters in one update. Not atomic and not for ids that already exist; returns how many."""
        counted: list[tuple[str, str, int]] = []
        with self._table.batch_writer() as batch:
            for course in courses:
                batch.put_item(Item=self._to_item(tenant, course))
                counted.extend((course.id, name, n) for name, n in _counts(course).items())
        counters.add_all(self._table, tenant, keys.COURSE, counted)
        return sum(n for _, name, n in counted if name == keys.counter_name())

    # --- helpers ---

    def _to_item(self, tenant: Tenant, course: Course) -> dict[str, Any]:
        """The stored item; attributes that are null are left out (a GSI key cannot be null)."""
        item: dict[str, Any] = {
            **self.key(tenant, course.id),
            **self.projections(
                tenant, {"id": course.id, "status": course.status, "category": course.category}
            ),
            keys.TYPE_ATTRIBUTE: COURSES.object,
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
        if course.category is not None:
            item["category"] = course.category
        if course.instructor_id is not None:
            item["instructor_id"] = course.instructor_id
            if course.instructor is not None:
                item["instructor_name"] = course.instructor
        return item

    def from_item(self, tenant: Tenant, item: dict[str, Any]) -> Course:
        return from_item(tenant, item)

    def _instructor_name(self, tenant: Tenant, instructor_id: str | None) -> str | None:
        if instructor_id is None:
            return None
        instructor = self._instructors.find(tenant, instructor_id)
        if instructor is None:
            raise errors.resource_missing("instructor_id", instructor_id)
        return instructor.name


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


def from_item(tenant: Tenant, item: dict[str, Any]) -> Course:
    """The course an item of the table holds (enrollments read courses with their own reads)."""
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
