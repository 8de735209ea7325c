"""Instructors: the domain object, the create body, the list query and the API shape."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, StringConstraints

from learnflow.models.common import (
    InputModel,
    ListEnvelope,
    ListQuery,
    MetadataInput,
    NotBlank,
    OutputModel,
    merge_metadata,
)

NAME_MAX_LENGTH: Final = 200
BIO_MAX_LENGTH: Final = 5000
EMAIL_MAX_LENGTH: Final = 254  # RFC 5321's limit on a forward path

# A pragmatic address check (what a sign-up form accepts): one @, a local part without spaces,
# a dotted domain of letters, digits and hyphens. Deliverability is not this API's business.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if len(value) > EMAIL_MAX_LENGTH or not _EMAIL.fullmatch(value) or ".." in value:
        raise ValueError("must be a valid email address")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH), NotBlank]
Email = Annotated[str, AfterValidator(_email)]
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


class InstructorCreate(InputModel):
    """POST /instructors."""

    name: Name
    email: Email | None = None
    bio: Bio | None = None
    metadata: MetadataInput | None = None

    def stored_metadata(self) -> dict[str, str]:
        return merge_metadata({}, self.metadata or {})


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

    @classmethod
    def from_domain(cls, instructor: Instructor) -> InstructorOut:
        return cls(
            id=instructor.id,
            name=instructor.name,
            email=instructor.email,
            bio=instructor.bio,
            metadata=dict(instructor.metadata),
            livemode=instructor.livemode,
            created_at=instructor.created_at,
        )


class InstructorList(ListEnvelope[InstructorOut]):
    """GET /instructors."""

    url: str = "/v2/instructors"
