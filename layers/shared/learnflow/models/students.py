"""Students: the domain object, the request bodies, the list query and the API shape."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import StringConstraints

from learnflow.models.common import (
    EMAIL_MAX_LENGTH,
    CreateModel,
    Email,
    InputModel,
    ListEnvelope,
    ListQuery,
    MetadataInput,
    NotBlank,
    OutputModel,
    merge_metadata,
)

NAME_MAX_LENGTH: Final = 200

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH), NotBlank]


def email_key(email: str) -> str:
    """What makes two addresses the same student: the address compared case-insensitively."""
    return email.lower()


@dataclass(frozen=True, slots=True)
class Student:
    """A student as stored; `version` grows with every write, for optimistic locking."""

    id: str
    email: str
    name: str
    livemode: bool
    created_at: str  # ISO-8601 UTC, `2023-10-15T14:32:00Z`
    version: int = 1
    metadata: dict[str, str] = field(default_factory=dict)


class StudentCreate(CreateModel):
    """POST /students: `email` unique per account and mode, case-insensitively."""

    email: Email
    name: Name


class StudentUpdate(InputModel):
    """PATCH /students/{id}: only the fields given change; `metadata` merges (null clears)."""

    not_nullable: ClassVar[frozenset[str]] = frozenset({"email", "name"})

    email: Email | None = None
    name: Name | None = None
    metadata: MetadataInput | None = None

    def apply(self, student: Student) -> Student:
        """The student after this update, or `student` itself when nothing changes."""
        changes: dict[str, Any] = {}
        if self.email is not None:
            changes["email"] = self.email
        if self.name is not None:
            changes["name"] = self.name
        if "metadata" in self.model_fields_set:
            changes["metadata"] = merge_metadata(student.metadata, self.metadata)
        updated = replace(student, **changes)
        return student if updated == student else updated


class StudentListQuery(ListQuery):
    """GET /students: pagination, and `email` (the one student with that address, compared
    case-insensitively; an address no student has lists nothing)."""

    email: Annotated[str, StringConstraints(min_length=1, max_length=EMAIL_MAX_LENGTH)] | None = (
        None
    )


class StudentOut(OutputModel):
    id: str
    object: Literal["student"] = "student"
    email: str
    name: str
    metadata: dict[str, str]
    livemode: bool
    created_at: str


class StudentList(ListEnvelope[StudentOut]):
    """GET /students."""

    url: str = "/v2/students"
