"""Courses: the domain object and its rules, the request bodies, the list query, the API shape."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from learnflow import errors, money
from learnflow.models.common import (
    CreateModel,
    CurrencyCode,
    InputModel,
    ListEnvelope,
    ListQuery,
    MetadataInput,
    NotBlank,
    OutputModel,
    Price,
    Slug,
    merge_metadata,
    price_problem,
)

CourseStatus = Literal["draft", "published", "archived"]
STATUSES: Final[tuple[CourseStatus, ...]] = ("draft", "published", "archived")

# docs/api.md §11: draft→published, draft→archived, published→archived, archived→published.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "draft": frozenset({"published", "archived"}),
    "published": frozenset({"archived"}),
    "archived": frozenset({"published"}),
}

TITLE_MAX_LENGTH: Final = 200
DESCRIPTION_MAX_LENGTH: Final = 5000

Title = Annotated[str, StringConstraints(min_length=1, max_length=TITLE_MAX_LENGTH), NotBlank]
Description = Annotated[
    str, StringConstraints(min_length=1, max_length=DESCRIPTION_MAX_LENGTH), NotBlank
]


@dataclass(frozen=True, slots=True)
class Course:
    """A course as stored. `instructor` is the instructor's name, copied when the course is
    linked to it (docs/catalogue.md); `version` grows with every write, for optimistic locking."""

    id: str
    title: str
    description: str
    category: str | None
    instructor_id: str | None
    instructor: str | None
    price: Decimal
    currency: str
    status: CourseStatus
    enrollment_count: int
    livemode: bool
    created_at: str  # ISO-8601 UTC, `2023-10-15T14:32:00Z`
    updated_at: str
    version: int = 1
    metadata: dict[str, str] = field(default_factory=dict)

    def same_content(self, other: Course) -> bool:
        """Equal but for the bookkeeping (`updated_at`, `version`)."""
        return replace(self, updated_at=other.updated_at, version=other.version) == other


class CourseCreate(CreateModel):
    """POST /courses: a new course, always created as a draft."""

    multiline_fields: ClassVar[frozenset[str]] = frozenset({"description"})

    title: Title
    description: Description
    currency: CurrencyCode  # before `price`, so that the price is checked against it
    price: Price
    category: Slug | None = None
    instructor_id: str | None = None

    @field_validator("price")
    @classmethod
    def _price_fits_currency(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        currency = info.data.get("currency")
        if currency is not None:  # else the currency's own error is reported
            problem = price_problem(value, currency)
            if problem:
                raise ValueError(problem)
        return money.normalize(value)


_NOT_NULLABLE: Final = ("title", "description", "currency", "price", "status")


class CourseUpdate(InputModel):
    """PATCH /courses/{id}: only the fields given change; `category`, `instructor_id` and
    `metadata` may be null (clear), the others may not."""

    multiline_fields: ClassVar[frozenset[str]] = frozenset({"description"})
    not_nullable: ClassVar[frozenset[str]] = frozenset(_NOT_NULLABLE)

    title: Title | None = None
    description: Description | None = None
    currency: CurrencyCode | None = None
    price: Price | None = None
    category: Slug | None = None
    instructor_id: str | None = None
    status: CourseStatus | None = None
    metadata: MetadataInput | None = None

    def given(self, name: str) -> bool:
        return name in self.model_fields_set

    def links_instructor(self) -> str | None:
        """The instructor id this update links the course to, if it names one."""
        return self.instructor_id if self.given("instructor_id") else None

    def apply(self, course: Course, *, instructor_name: str | None, updated_at: str) -> Course:
        """The course after this update, or `course` itself when nothing changes.

        `instructor_name` is the name of the instructor `instructor_id` names (the caller has
        checked it exists). Raises 400s for a forbidden status transition and for a price that
        does not fit the (new) currency.
        """
        changes: dict[str, Any] = {}
        for name in ("title", "description", "category"):
            if self.given(name):
                changes[name] = getattr(self, name)
        if self.given("instructor_id"):
            changes["instructor_id"] = self.instructor_id
            changes["instructor"] = instructor_name if self.instructor_id else None
        if self.status is not None and self.status != course.status:
            if self.status not in TRANSITIONS[course.status]:
                raise errors.InvalidRequestError(
                    f"A {course.status} course cannot become {self.status}.",
                    code="invalid_status_transition",
                    param="status",
                )
            changes["status"] = self.status
        if self.price is not None or self.currency is not None:
            price = self.price if self.price is not None else course.price
            currency = self.currency or course.currency
            problem = price_problem(price, currency)
            if problem:
                # Blame what the request changed: the price if it sent one, else the currency.
                param = "price" if self.price is not None else "currency"
                raise errors.parameter_invalid(param, f"Invalid {param}: {problem}")
            changes["price"] = money.normalize(price)
            changes["currency"] = currency
        if self.given("metadata"):
            changes["metadata"] = merge_metadata(course.metadata, self.metadata)
        updated = replace(course, **changes)
        if updated.same_content(course):
            return course
        return replace(updated, updated_at=updated_at)


class CourseListQuery(ListQuery):
    """GET /courses: pagination plus exact filters."""

    category: Slug | None = None
    status: CourseStatus | None = None

    def filters(self) -> dict[str, str]:
        """The filters given, by name (the key grammar's spelling of a filtered list)."""
        found = {"category": self.category, "status": self.status}
        return {name: value for name, value in found.items() if value is not None}


class CourseOut(OutputModel):
    id: str
    object: Literal["course"] = "course"
    title: str
    description: str
    category: str | None
    instructor: str | None
    instructor_id: str | None
    # An exact JSON number on the wire (learnflow.jsonio), in canonical form (`0.290` is 0.29)
    price: Annotated[
        Decimal,
        AfterValidator(money.normalize),
        WithJsonSchema({"type": "number", "examples": [49.99]}),
    ]
    currency: str
    status: CourseStatus
    enrollment_count: int
    metadata: dict[str, str]
    livemode: bool
    created_at: str
    updated_at: str


class CourseList(ListEnvelope[CourseOut]):
    """GET /courses."""

    url: str = "/v2/courses"
