"""Enrollments in the single table: the enrollment, its student+course pair lock, the course's
`enrollment_count` and exact counts, changed together in one transaction."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, cast

from botocore.exceptions import ClientError

from learnflow import errors, ids
from learnflow.db import counters, keys
from learnflow.db.conditions import condition_failed
from learnflow.db.courses import from_item as course_from_item
from learnflow.db.repository import FAILED, Repository
from learnflow.db.transactions import write_transaction
from learnflow.models.courses import Course
from learnflow.models.enrollments import Enrollment, Payment
from learnflow.resources import ENROLLMENTS
from learnflow.tenancy import Tenant

PAIR_TYPE: Final = "enrollment_pair"
PAIR_KIND: Final = "PAIR"  # the pair locks' partition (`keys.unique`)

PairStatus = Literal["pending", "active"]
Committed = Literal["committed", "exists", "pair_taken"]


@dataclass(frozen=True, slots=True)
class Draft:
    """An enrollment on its way: what a pending pair lock holds, so that whoever finishes it
    (the request that began it, its retry, or a later request recovering a crashed one) commits
    exactly this enrollment and charges exactly this amount."""

    enrollment: Enrollment
    account_id: str
    amount: int  # minor units; 0 for a free course
    currency: str  # lower-case
    payment_method: str | None


@dataclass(frozen=True, slots=True)
class Pair:
    """The lock on one student+course pair: pending (a draft being paid for) or active."""

    enrollment_id: str
    status: PairStatus
    lease_until_ms: int
    draft: Draft | None  # pending locks only


@dataclass(frozen=True, slots=True)
class EnrollContext:
    """What POST /enrollments reads first, in one BatchGetItem."""

    student_exists: bool
    course: Course | None
    pair: Pair | None
    enrollment: Enrollment | None


class EnrollmentRepository(Repository[Enrollment]):
    """Enrollments, their pair locks and counts (DESIGN: "Enrolling, exactly once").

    Item `keys.item(tenant, ENROLLMENT, id)`: the enrollment, `type` "enrollment", its tenant
    (`account_id`, `mode`: the welcome-mail stream reads them) and one GSI projection per filter
    combination. Pair lock `keys.unique(tenant, PAIR, "<student>#<course>")`: `pending` with the
    draft while a paid enrollment is being charged, `active` once committed, deleted on cancel.
    """

    resource = ENROLLMENTS

    # --- reads ---

    def context(
        self, tenant: Tenant, student_id: str, course_id: str, enrollment_id: str
    ) -> EnrollContext:
        """The student (does it exist), the course, the pair's lock and the enrollment itself
        (present when an earlier run of this request committed it), read consistently."""
        wanted: dict[str, keys.Key] = {"enrollment": self.key(tenant, enrollment_id)}
        if ids.is_valid(student_id, "stu"):
            wanted["student"] = keys.item(tenant, keys.STUDENT, student_id)
        if ids.is_valid(course_id, "crs"):
            wanted["course"] = keys.item(tenant, keys.COURSE, course_id)
            if "student" in wanted:
                wanted["pair"] = _pair_key(tenant, student_id, course_id)
        found = self._batch_get(list(wanted.values()))
        items = {name: found.get((key[keys.PK], key[keys.SK])) for name, key in wanted.items()}
        course, pair, enrollment = items.get("course"), items.get("pair"), items.get("enrollment")
        return EnrollContext(
            student_exists=items.get("student") is not None,
            course=course_from_item(tenant, course) if course else None,
            pair=_pair_from_item(tenant, pair) if pair else None,
            enrollment=self.from_item(tenant, enrollment) if enrollment else None,
        )

    def pair(self, tenant: Tenant, student_id: str, course_id: str) -> Pair | None:
        item = self._table.get_item(
            Key=_pair_key(tenant, student_id, course_id), ConsistentRead=True
        ).get("Item")
        return _pair_from_item(tenant, cast("dict[str, Any]", item)) if item else None

    # --- the pair lock ---

    def claim_pair(self, tenant: Tenant, draft: Draft, lease_until_ms: int) -> bool:
        """Lock the pair for `draft` (pending) if nobody holds it; False when somebody does."""
        try:
            self._table.put_item(
                Item=_pair_item(tenant, draft, lease_until_ms),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def renew_pair(self, tenant: Tenant, draft: Draft, lease_until_ms: int) -> bool:
        """Set the lease of `draft`'s own pending lock (0 ends it: anyone may then finish the
        draft); False when the lock is no longer the draft's."""
        return self._own_pending(
            tenant, draft, "update_item", "SET lease_until_ms = :lease", {":lease": lease_until_ms}
        )

    def release_pair(self, tenant: Tenant, draft: Draft) -> bool:
        """Remove `draft`'s pending lock (its charge was declined or refused); False when the
        lock is no longer the draft's."""
        return self._own_pending(tenant, draft, "delete_item", None, {})

    def _own_pending(
        self,
        tenant: Tenant,
        draft: Draft,
        operation: Literal["update_item", "delete_item"],
        expression: str | None,
        values: dict[str, Any],
    ) -> bool:
        enrollment = draft.enrollment
        request: dict[str, Any] = {
            "Key": _pair_key(tenant, enrollment.student_id, enrollment.course_id),
            "ConditionExpression": "enrollment_id = :me AND #status = :pending",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":me": enrollment.id, ":pending": "pending", **values},
        }
        if expression is not None:
            request["UpdateExpression"] = expression
        try:
            getattr(self._table, operation)(**request)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    # --- the commits ---

    def commit(self, tenant: Tenant, enrollment: Enrollment) -> Committed:
        """One transaction: the enrollment (active), its pair lock (active: it must be free or
        the enrollment's own), the course's `enrollment_count` + 1 and the counts.

        `exists`: an earlier run committed it already; `pair_taken`: another enrollment holds
        the pair."""
        table = self._table.name
        pair = {
            "Put": {
                "TableName": table,
                "Item": {
                    **_pair_key(tenant, enrollment.student_id, enrollment.course_id),
                    keys.TYPE_ATTRIBUTE: PAIR_TYPE,
                    "enrollment_id": enrollment.id,
                    "status": "active",
                },
                "ConditionExpression": "attribute_not_exists(PK) OR enrollment_id = :me",
                "ExpressionAttributeValues": {":me": enrollment.id},
            }
        }
        course = {"Update": {"TableName": table, **_course_count(tenant, enrollment.course_id, +1)}}
        created = self.put_new(
            tenant, self._to_item(tenant, enrollment), _counts(enrollment), also=[pair, course]
        )
        if created == "created":
            return "committed"
        if created == "exists":
            return "exists"
        if created[1] == FAILED:
            return "pair_taken"
        raise errors.resource_missing("course_id", enrollment.course_id)  # the course is gone

    def cancel(self, tenant: Tenant, before: Enrollment, after: Enrollment) -> bool:
        """One transaction: the enrollment becomes `after` (cancelled) if it is still active,
        the pair is freed, the course's `enrollment_count` - 1, the counts move; False when it
        was no longer active."""
        table = self._table.name
        deltas = _counts(after)
        deltas.subtract(_counts(before))
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": table,
                    "Item": self._to_item(tenant, after),
                    "ConditionExpression": "#status = :active",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":active": "active"},
                }
            },
            {
                "Delete": {
                    "TableName": table,
                    "Key": _pair_key(tenant, before.student_id, before.course_id),
                    "ConditionExpression": "attribute_not_exists(PK) OR enrollment_id = :me",
                    "ExpressionAttributeValues": {":me": before.id},
                }
            },
            {"Update": {"TableName": table, **_course_count(tenant, before.course_id, -1)}},
            *counters.updates(self._table, tenant, keys.ENROLLMENT, deltas, object_id=before.id),
        ]
        return write_transaction(self._table, actions) is None

    def record_payment(self, tenant: Tenant, enrollment_id: str, payment: Payment) -> None:
        """Write what the payment provider reports of an enrollment's payment (a refund made
        while another request cancelled it)."""
        self._table.update_item(
            Key=self.key(tenant, enrollment_id),
            UpdateExpression="SET payment = :payment",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":payment": _payment_item(payment)},
        )

    # --- helpers ---

    def _to_item(self, tenant: Tenant, enrollment: Enrollment) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self.key(tenant, enrollment.id),
            **self.projections(tenant, _filter_values(enrollment)),
            keys.TYPE_ATTRIBUTE: ENROLLMENTS.object,
            "account_id": tenant.account_id,
            "mode": tenant.mode,
            "id": enrollment.id,
            "status": enrollment.status,
            "student_id": enrollment.student_id,
            "course_id": enrollment.course_id,
            "enrolled_at": enrollment.enrolled_at,
            "welcome_email": enrollment.welcome_email,
            "metadata": dict(enrollment.metadata),
        }
        if enrollment.payment is not None:
            item["payment"] = _payment_item(enrollment.payment)
        if enrollment.canceled_at is not None:
            item["canceled_at"] = enrollment.canceled_at
        if enrollment.canceled_by is not None:
            item["canceled_by"] = enrollment.canceled_by
        return item

    def from_item(self, tenant: Tenant, item: dict[str, Any]) -> Enrollment:
        payment = item.get("payment")
        return Enrollment(
            id=str(item["id"]),
            status=item["status"],
            student_id=str(item["student_id"]),
            course_id=str(item["course_id"]),
            enrolled_at=str(item["enrolled_at"]),
            canceled_at=item.get("canceled_at"),
            payment=_payment_from(payment) if payment else None,
            welcome_email=item.get("welcome_email", "not_requested"),
            livemode=tenant.livemode,
            metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
            canceled_by=item.get("canceled_by"),
        )

    def _batch_get(self, wanted: Sequence[keys.Key]) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        request: Any = [*wanted]
        client = self._table.meta.client
        for _ in range(4):
            response = client.batch_get_item(
                RequestItems={self._table.name: {"Keys": request, "ConsistentRead": True}}
            )
            for item in response.get("Responses", {}).get(self._table.name, []):
                found[(str(item[keys.PK]), str(item[keys.SK]))] = dict(item)
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
            request = (unprocessed.get(self._table.name) or {}).get("Keys") or []
            if not request:
                return found
        raise errors.service_unavailable()


def _pair_key(tenant: Tenant, student_id: str, course_id: str) -> keys.Key:
    return keys.unique(tenant, PAIR_KIND, f"{student_id}#{course_id}")


def _course_count(tenant: Tenant, course_id: str, delta: int) -> dict[str, Any]:
    # Only the count: a PATCH of the course locks on `version`, which this leaves alone.
    return {
        "Key": keys.item(tenant, keys.COURSE, course_id),
        "UpdateExpression": "ADD enrollment_count :delta",
        "ConditionExpression": "attribute_exists(PK)",
        "ExpressionAttributeValues": {":delta": delta},
    }


def _filter_values(enrollment: Enrollment) -> dict[str, str]:
    return {
        "id": enrollment.id,
        "course_id": enrollment.course_id,
        "status": enrollment.status,
        "student_id": enrollment.student_id,
    }


def _counts(enrollment: Enrollment) -> Counter[str]:
    """The counts an enrollment adds one to: every combination of its filters' values."""
    values = _filter_values(enrollment)
    filters = sorted(ENROLLMENTS.filters)
    names: Counter[str] = Counter()
    for size in range(len(filters) + 1):
        for combination in itertools.combinations(filters, size):
            names[keys.counter_name(**{name: values[name] for name in combination})] += 1
    return names


def _payment_item(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "status": payment.status,
        "amount": payment.amount,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
    }


def _payment_from(value: dict[str, Any]) -> Payment:
    return Payment(
        id=str(value["id"]),
        status=value["status"],
        amount=int(value["amount"]),
        amount_refunded=int(value.get("amount_refunded", 0)),
        currency=str(value["currency"]),
    )


def _pair_item(tenant: Tenant, draft: Draft, lease_until_ms: int) -> dict[str, Any]:
    enrollment = draft.enrollment
    return {
        **_pair_key(tenant, enrollment.student_id, enrollment.course_id),
        keys.TYPE_ATTRIBUTE: PAIR_TYPE,
        "enrollment_id": enrollment.id,
        "status": "pending",
        "lease_until_ms": lease_until_ms,
        "draft": {
            "enrolled_at": enrollment.enrolled_at,
            "welcome_email": enrollment.welcome_email,
            "metadata": dict(enrollment.metadata),
            "amount": draft.amount,
            "currency": draft.currency,
            "payment_method": draft.payment_method,
        },
    }


def _pair_from_item(tenant: Tenant, item: dict[str, Any]) -> Pair:
    student_id, _, course_id = str(item[keys.SK]).partition("#")
    enrollment_id = str(item["enrollment_id"])
    saved = item.get("draft")
    draft = None
    if isinstance(saved, dict):
        draft = Draft(
            enrollment=Enrollment(
                id=enrollment_id,
                status="active",
                student_id=student_id,
                course_id=course_id,
                enrolled_at=str(saved["enrolled_at"]),
                canceled_at=None,
                payment=None,
                welcome_email=saved.get("welcome_email", "not_requested"),
                livemode=tenant.livemode,
                metadata={str(k): str(v) for k, v in (saved.get("metadata") or {}).items()},
            ),
            account_id=tenant.account_id,
            amount=int(cast("Decimal", saved["amount"])),
            currency=str(saved["currency"]),
            payment_method=saved.get("payment_method"),
        )
    return Pair(
        enrollment_id=enrollment_id,
        status=item["status"],
        lease_until_ms=int(cast("Decimal", item.get("lease_until_ms", 0))),
        draft=draft,
    )
