"""Instructors: the domain object, the create body, the list query and the API shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Final, Literal

from pydantic import StringConstraints

from learnflow.models.common import (
    CreateModel,
    Email,
    ListEnvelope,
    ListQuery,
    NotBlank,
    OutputModel,
)

NAME_MAX_LENGTH: Final = 200
BIO_MAX_LENGTH: Final = 5000
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH), NotBlank]
Bio = Annotated[str, StringConstraints(min_length=1, max_length=BIO_MAX_LENGTH)]


@dataclass(frozen=True, slots=True)
class Instructor:
    """An instructor as stored."""

    id: str
    name: str
    email: str | None
    bio: str | None
    livemode: bool
    created_at: str  # ISO-8601 UTC, `2023-10-15T14:32:00Z`
    metadata: dict[str, str] = field(default_factory=dict)


class InstructorCreate(CreateModel):
    """POST /instructors."""

    multiline_fields: ClassVar[frozenset[str]] = frozenset({"bio"})

    name: Name
    email: Email | None = None
    bio: Bio | None = None


class InstructorListQuery(ListQuery):
    """GET /instructors: no filters beyond pagination."""


class InstructorOut(OutputModel):
    id: str
    object: Literal["instructor"] = "instructor"
    name: str
    email: str | None
    bio: str | None
    metadata: dict[str, str]
    livemode: bool
    created_at: str


class InstructorList(ListEnvelope[InstructorOut]):
    """GET /instructors."""

    url: str = "/v2/instructors"
