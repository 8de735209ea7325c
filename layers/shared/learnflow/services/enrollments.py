"""Enrolling and cancelling, exactly once: the pair lock, the charge, the commit, the refund.

Enrolling (docs/enrollments.md has the whole story):
1. One BatchGetItem: the student, the course, the pair's lock and the enrollment itself (an
   earlier run of this request may have committed it: then it is the answer).
2. A free course commits at once: one transaction puts the enrollment, locks the pair and adds
   one to the course's `enrollment_count` and to the counts.
3. A paid course first locks the pair as `pending` with a draft of the enrollment (amount,
   currency, payment method: everything needed to finish it), then charges through a
   PaymentIntent whose idempotency key is derived from the enrollment id, then commits as above.
   A decline or a refused request releases the lock; no answer from the provider keeps it, with
   its lease ended, so a retry (or anyone else) can finish the draft: replaying the charge with
   the same idempotency key returns the first charge, never a second one.
4. A pair locked by someone else: active → 409 `already_enrolled`; pending with a live lease →
   wait for it (a transient conflict, 503 if it outlasts the wait); pending with its lease over
   (its request crashed or gave up) → finish that draft first, then look again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from learnflow import errors, money
from learnflow.db.enrollments import Draft, EnrollmentRepository, Pair
from learnflow.jsonio import iso
from learnflow.models.courses import Course
from learnflow.models.enrollments import Enrollment, EnrollmentCancel, EnrollmentCreate, Payment
from learnflow.observability import NONE, metrics
from learnflow.payments import (
    ChargeRequest,
    PaymentDeclinedError,
    PaymentGateway,
    PaymentRejectedError,
    PaymentUnavailableError,
    declined,
    rejected,
    unavailable,
)
from learnflow.tenancy import Mode, Tenant

# Time kept back from the invocation's budget for the commit and the answer.
_RESERVE_SECONDS: Final = 3.0
_POLL_SECONDS: Final = 0.1
_ROUNDS: Final = 1000  # bounds the loop; the deadline ends it long before


@dataclass(frozen=True, slots=True)
class Budget:
    """How long this request may still run: pair locks last as long, waits end before it."""

    deadline: float  # time.monotonic()
    lease_until_ms: int  # the same moment in epoch milliseconds, for locks others read

    @classmethod
    def of(cls, remaining_ms: int) -> Budget:
        return cls(
            deadline=time.monotonic() + remaining_ms / 1000 - _RESERVE_SECONDS,
            lease_until_ms=int(time.time() * 1000) + remaining_ms,
        )

    def left(self) -> float:
        return self.deadline - time.monotonic()


class EnrollmentService:
    """POST /enrollments and POST /enrollments/{id}/cancel over a repository and the payment
    gateway of each mode."""

    def __init__(
        self,
        repository: EnrollmentRepository,
        gateway: Callable[[Mode], PaymentGateway],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repository = repository
        self._gateway = gateway
        self._sleep = sleep

    # --- enrolling ---

    def enroll(
        self, tenant: Tenant, data: EnrollmentCreate, *, enrollment_id: str, budget: Budget
    ) -> Enrollment:
        """The enrollment `enrollment_id` of `data`, made (and paid for) exactly once."""
        repository = self._repository
        found = repository.context(tenant, data.student_id, data.course_id, enrollment_id)
        if found.enrollment is not None:
            return found.enrollment  # an earlier run of this request committed it
        if not found.student_exists:
            raise errors.resource_missing("student_id", data.student_id)
        if found.course is None:
            raise errors.resource_missing("course_id", data.course_id)
        pair = found.pair
        if pair is not None and pair.enrollment_id == enrollment_id and pair.draft is not None:
            draft = pair.draft  # resume this request's own draft, as it was first made
        else:
            draft = self._draft(tenant, data, enrollment_id, found.course)
        for _ in range(_ROUNDS):
            enrollment = self._step(tenant, draft, pair, budget)
            if enrollment is not None:
                return enrollment
            pair = repository.pair(tenant, data.student_id, data.course_id)
        raise errors.service_unavailable()

    def _step(
        self, tenant: Tenant, draft: Draft, pair: Pair | None, budget: Budget
    ) -> Enrollment | None:
        """One look at the pair's lock: the enrollment once made, None to look again."""
        mine = draft.enrollment.id
        if pair is None:
            return self._begin(tenant, draft, budget)
        if pair.enrollment_id == mine:
            if pair.status == "active":
                return self._repository.get(tenant, mine)
            if self._repository.renew_pair(tenant, draft, budget.lease_until_ms):
                return self._pay_and_commit(tenant, draft, budget)
            return None
        if pair.status == "active":
            raise _already_enrolled()
        if pair.lease_until_ms > time.time() * 1000:
            if budget.left() <= 0:
                raise errors.service_unavailable(
                    "Another request is enrolling this student in this course. Retry."
                )
            # Jitter spreads the waiters' reads; it is not a secret.
            self._sleep(_POLL_SECONDS * random.uniform(0.5, 1.5))  # noqa: S311
        elif pair.draft is not None:
            self._finish_abandoned(tenant, pair.draft)
        return None

    def _draft(
        self, tenant: Tenant, data: EnrollmentCreate, enrollment_id: str, course: Course
    ) -> Draft:
        """A new enrollment of `data` in `course`, checked against the course's rules."""
        if course.status != "published":
            raise errors.InvalidRequestError(
                f"The course {course.id} is not published.",
                code="course_not_published",
                param="course_id",
            )
        amount = money.to_minor_units(course.price, course.currency)
        if amount > 0 and data.payment_method_id is None:
            raise errors.parameter_missing("payment_method_id")
        enrollment = Enrollment(
            id=enrollment_id,
            status="active",
            student_id=data.student_id,
            course_id=data.course_id,
            enrolled_at=_now(),
            canceled_at=None,
            payment=None,
            welcome_email="requested" if data.send_welcome_email else "not_requested",
            livemode=tenant.livemode,
            metadata=data.stored_metadata(),
        )
        return Draft(
            enrollment=enrollment,
            account_id=tenant.account_id,
            amount=amount,
            currency=money.stripe_currency(course.currency),
            payment_method=data.payment_method_id if amount > 0 else None,
        )

    def _begin(self, tenant: Tenant, draft: Draft, budget: Budget) -> Enrollment | None:
        """Take the free pair for `draft`: a free enrollment commits at once, a paid one locks
        the pair, pays and commits. None when another request took the pair first."""
        if draft.amount == 0:
            return self._commit(tenant, draft.enrollment)
        if not self._repository.claim_pair(tenant, draft, budget.lease_until_ms):
            return None
        return self._pay_and_commit(tenant, draft, budget)

    def _pay_and_commit(self, tenant: Tenant, draft: Draft, budget: Budget) -> Enrollment:
        try:
            payment = self._charge(tenant, draft)
        except PaymentDeclinedError as error:
            raise declined(error) from None
        except PaymentRejectedError as error:
            raise rejected(error) from None
        except PaymentUnavailableError as error:
            raise unavailable(error) from None
        committed = self._commit(tenant, replace(draft.enrollment, payment=payment))
        if committed is None:  # the pair lock is this draft's: nobody else can hold it
            raise errors.service_unavailable()
        return committed

    def _charge(self, tenant: Tenant, draft: Draft) -> Payment:
        """Charge `draft` (or get its first charge back). A decline or a refused request frees
        the pair; no answer keeps the lock with its lease ended (the error says which)."""
        repository = self._repository
        enrollment = draft.enrollment
        request = ChargeRequest(
            enrollment_id=enrollment.id,
            account_id=draft.account_id,
            student_id=enrollment.student_id,
            course_id=enrollment.course_id,
            amount=draft.amount,
            currency=draft.currency,
            payment_method=str(draft.payment_method),
        )
        try:
            charged = self._gateway(tenant.mode).charge(request)
            if charged.status == "requires_action":
                raise PaymentDeclinedError(
                    "The card needs its holder to authenticate, and none is present.",
                    code="authentication_required",
                    decline_code="authentication_required",
                )
            if charged.status != "succeeded":
                raise PaymentUnavailableError("The payment is still processing.", status=503)
        except PaymentDeclinedError:
            metrics.add("PaymentsDeclined", mode=tenant.mode)
            repository.release_pair(tenant, draft)
            raise
        except PaymentRejectedError:
            repository.release_pair(tenant, draft)
            raise
        except PaymentUnavailableError:
            repository.renew_pair(tenant, draft, 0)  # any retry may finish it now
            raise
        return Payment(
            id=charged.payment_intent_id,
            status="succeeded",
            amount=charged.amount,
            amount_refunded=0,
            currency=charged.currency,
        )

    def _commit(self, tenant: Tenant, enrollment: Enrollment) -> Enrollment | None:
        outcome = self._repository.commit(tenant, enrollment)
        if outcome == "committed":
            # Counted here, where each enrollment is written exactly once, not at the charge,
            # which a retry replays (Stripe answers the same PaymentIntent again).
            metrics.add("EnrollmentsCreated", mode=tenant.mode)
            if enrollment.payment is not None:
                payment = enrollment.payment
                _count_money("AmountCharged", tenant, payment.amount, payment.currency)
            return enrollment
        if outcome == "exists":
            return self._repository.get(tenant, enrollment.id)
        return None

    def _finish_abandoned(self, tenant: Tenant, draft: Draft) -> None:
        """Finish a draft whose request gave up (crashed, timed out, or got no answer from the
        provider and was never retried): replay its charge (the provider returns the first
        charge, or makes it now: the draft was a request to pay), then commit it; a decline
        frees the pair. Afterwards the pair is active or free."""
        try:
            payment = self._charge(tenant, draft)
        except (PaymentDeclinedError, PaymentRejectedError):
            return  # refused: `_charge` freed the pair
        except PaymentUnavailableError as error:
            raise unavailable(error) from None
        self._commit(tenant, replace(draft.enrollment, payment=payment))

    # --- cancelling ---

    def cancel(
        self, tenant: Tenant, enrollment_id: str, data: EnrollmentCancel, *, token: str | None
    ) -> Enrollment:
        """Cancel an active enrollment, refunding its payment in full first when asked.

        `token` (the same in every run of one request with an Idempotency-Key) marks the
        cancellation, so a retry recognises its own and answers it instead of a 400."""
        repository = self._repository
        current = repository.get(tenant, enrollment_id)
        if current.status == "canceled":
            if token is not None and current.canceled_by == token:
                return current
            raise _already_canceled(current.id)
        payment = current.payment
        if data.refund and payment is not None and payment.status == "succeeded":
            payment = self._refund(tenant, current, payment)
        after = replace(
            current, status="canceled", canceled_at=_now(), payment=payment, canceled_by=token
        )
        refunded = payment is not None and payment is not current.payment
        if repository.cancel(tenant, current, after):
            if refunded and payment is not None:
                _count_money("AmountRefunded", tenant, payment.amount_refunded, payment.currency)
            return after
        # Cancelled meanwhile by another request: keep the refund this one made, then say so.
        now = repository.get(tenant, enrollment_id)
        if token is not None and now.canceled_by == token:
            return now
        if payment is not None and payment != now.payment and payment.status == "refunded":
            repository.record_payment(tenant, enrollment_id, payment)
            _count_money("AmountRefunded", tenant, payment.amount_refunded, payment.currency)
        raise _already_canceled(now.id)

    def _refund(self, tenant: Tenant, enrollment: Enrollment, payment: Payment) -> Payment:
        try:
            refunded = self._gateway(tenant.mode).refund(
                payment.id, idempotency_key=f"{enrollment.id}-refund"
            )
        except PaymentUnavailableError as error:
            raise unavailable(error) from None
        except PaymentRejectedError as error:
            raise rejected(error) from None
        return replace(payment, status="refunded", amount_refunded=refunded.amount)


def _count_money(name: str, tenant: Tenant, amount: int, currency: str) -> None:
    """An amount in minor units (4999 for 49.99 USD), by currency and mode: test-mode money is
    not money, and amounts in different currencies do not add up."""
    metrics.add(name, amount, NONE, currency=currency.lower(), mode=tenant.mode)


def _already_enrolled() -> errors.ConflictError:
    return errors.ConflictError(
        "The student is already enrolled in this course.", code="already_enrolled"
    )


def _already_canceled(enrollment_id: str) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(
        f"The enrollment {enrollment_id} is already canceled.", code="invalid_status_transition"
    )


def _now() -> str:
    return iso(datetime.now(UTC))
