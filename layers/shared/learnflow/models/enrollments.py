"""Enrollments: the domain objects (enrollment, its payment), the request bodies, the list query
and the API shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, StringConstraints

from learnflow import ids
from learnflow.models.common import (
    CreateModel,
    InputModel,
    ListEnvelope,
    ListQuery,
    OutputModel,
)

EnrollmentStatus = Literal["active", "canceled"]
PaymentStatus = Literal["succeeded", "refunded"]
WelcomeEmail = Literal["requested", "not_requested"]
STATUSES: Final[tuple[EnrollmentStatus, ...]] = ("active", "canceled")
PAYMENT_METHOD_MAX_LENGTH: Final = 255

# An id in a body is a string; whether it exists is the service's question (400 resource_missing).
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
PaymentMethodId = Annotated[
    str, StringConstraints(min_length=1, max_length=PAYMENT_METHOD_MAX_LENGTH, pattern=r"^\S+$")
]


def _id_of(prefix: str) -> AfterValidator:
    def check(value: str) -> str:
        if not ids.is_valid(value, prefix):
            raise ValueError(f"must be an id of the form {prefix}_…")
        return value

    return AfterValidator(check)


@dataclass(frozen=True, slots=True)
class Payment:
    """What was charged for an enrollment, as the payment provider reported it."""

    id: str  # the PaymentIntent, `pi_…`
    status: PaymentStatus
    amount: int  # minor units
    amount_refunded: int
    currency: str  # lower-case, as Stripe writes it


@dataclass(frozen=True, slots=True)
class Enrollment:
    """An enrollment as stored. `canceled_by` is the recovery token of the request that
    cancelled it (so that request's retry can tell its own cancellation from another's)."""

    id: str
    status: EnrollmentStatus
    student_id: str
    course_id: str
    enrolled_at: str  # ISO-8601 UTC, `2023-10-15T14:32:00Z`
    canceled_at: str | None
    payment: Payment | None
    welcome_email: WelcomeEmail
    livemode: bool
    metadata: dict[str, str] = field(default_factory=dict)
    canceled_by: str | None = None


class EnrollmentCreate(CreateModel):
    """POST /enrollments: `payment_method_id` is required for a paid course and ignored for a
    free one."""

    student_id: ObjectId
    course_id: ObjectId
    payment_method_id: PaymentMethodId | None = None
    send_welcome_email: bool = False


class EnrollmentCancel(InputModel):
    """POST /enrollments/{id}/cancel: `refund: true` refunds the payment in full."""

    refund: bool = False


class EnrollmentListQuery(ListQuery):
    """GET /enrollments: pagination plus exact filters, alone or combined."""

    student_id: Annotated[str, _id_of("stu")] | None = None
    course_id: Annotated[str, _id_of("crs")] | None = None
    status: EnrollmentStatus | None = None

    def filters(self) -> dict[str, str]:
        """The filters given, by name (the key grammar's spelling of a filtered list)."""
        found = {"student_id": self.student_id, "course_id": self.course_id, "status": self.status}
        return {name: value for name, value in found.items() if value is not None}


class PaymentOut(OutputModel):
    id: str
    status: PaymentStatus
    amount: int
    amount_refunded: int
    currency: str


class EnrollmentOut(OutputModel):
    id: str
    object: Literal["enrollment"] = "enrollment"
    status: EnrollmentStatus
    student_id: str
    course_id: str
    enrolled_at: str
    canceled_at: str | None
    payment: PaymentOut | None
    welcome_email: WelcomeEmail
    metadata: dict[str, str]
    livemode: bool


class EnrollmentList(ListEnvelope[EnrollmentOut]):
    """GET /enrollments."""

    url: str = "/v2/enrollments"
