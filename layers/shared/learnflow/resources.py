"""The API's resources, each declared once: its name, id prefix, table kind and list indexes.

Ids (`learnflow.ids`), permissions (`learnflow.permissions`), table keys (`learnflow.db.keys`),
repositories (`learnflow.db`) and the tests read these; adding a resource starts here
(docs/adding-a-resource.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of object the API serves.

    name: the routes' root and the permission's resource (`courses` → `courses:read`);
    prefix: of its ids (`crs_…`); kind: of its table keys (`T#<acct>#<mode>#COURSE`);
    object: its objects' `object` and its items' `type` (`course`);
    indexes: the GSI holding each exact filter combination of its list (template.yaml declares
    GSI1..GSI7, overloaded: each resource's partitions are its own).
    """

    name: str
    prefix: str
    kind: str
    object: str
    indexes: Mapping[frozenset[str], str] = field(default_factory=dict)

    @property
    def filters(self) -> frozenset[str]:
        """Every filter its list takes."""
        return frozenset().union(*self.indexes) if self.indexes else frozenset()

    def index(self, filters: frozenset[str]) -> str | None:
        """The GSI of a filter combination, None for none (the base table's partition)."""
        return self.indexes[filters] if filters else None


COURSES: Final = Resource(
    name="courses",
    prefix="crs",
    kind="COURSE",
    object="course",
    indexes={
        frozenset({"status"}): "GSI1",
        frozenset({"category"}): "GSI2",
        frozenset({"category", "status"}): "GSI3",
    },
)
INSTRUCTORS: Final = Resource(
    name="instructors", prefix="ins", kind="INSTRUCTOR", object="instructor"
)
STUDENTS: Final = Resource(name="students", prefix="stu", kind="STUDENT", object="student")
ENROLLMENTS: Final = Resource(
    name="enrollments",
    prefix="enr",
    kind="ENROLLMENT",
    object="enrollment",
    indexes={
        frozenset({"status"}): "GSI1",
        frozenset({"course_id"}): "GSI2",
        frozenset({"course_id", "status"}): "GSI3",
        frozenset({"student_id"}): "GSI4",
        frozenset({"student_id", "status"}): "GSI5",
        frozenset({"course_id", "student_id"}): "GSI6",
        frozenset({"course_id", "student_id", "status"}): "GSI7",
    },
)

RESOURCES: Final[tuple[Resource, ...]] = (COURSES, INSTRUCTORS, STUDENTS, ENROLLMENTS)
# Ids of things that are not resources of the API: accounts and their API keys (the CLI's).
OTHER_ID_PREFIXES: Final = frozenset({"acct", "key"})
