"""Students and paid enrollments over real HTTP through `learnflow serve`: the money path.

Every request goes through the real authorizer and the gateway emulator to the functions, which
charge and refund at the local Stripe-compatible server (`stack.stripe_url`) with the real
`stripe` SDK; welcome e-mails go through the table's stream to the mail sink (`[mail]` lines on
the stack's console). What Stripe holds is read back from the server: `GET /_local/
payment_intents` lists every PaymentIntent with its metadata (`account_id`, `enrollment_id`,
`course_id`, `student_id`); charges and refunds are read with the SDK. Each test has a fresh Pro
account, so no rate limit and no other test's objects are in the way.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests
import stripe

from tests.e2e.client import TIMEOUT, Client, Reply

if TYPE_CHECKING:
    from tests.support.stack import Account, Stack

CONCURRENT = 12
# A request waiting for another one that is paying for the same pair gives up with a 503 before
# the function's 28 s timeout; nothing here should come near that, but nothing waits forever.
CONCURRENT_TIMEOUT = 40.0
MAIL_WAIT_SECONDS = 10.0
# After the awaited mail: time for a second copy (or a mail that should not exist) to show.
MAIL_SETTLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class School:
    """One fresh account's view in one mode, with the helpers every test needs."""

    stack: Stack
    account: Account
    secret: str
    client: Client

    @classmethod
    def of(cls, stack: Stack, account: Account, mode: str = "test") -> School:
        secret = account.keys[mode]
        return cls(stack, account, secret, Client(stack, secret))

    def student(self, name: str = "Student") -> dict[str, Any]:
        email = f"e2e-{uuid.uuid4().hex[:16]}@example.com"
        reply = self.client.post("/students", {"email": email, "name": name})
        assert reply.status == 201, reply.text
        return reply.body

    def course(
        self, price: str = "49.99", currency: str = "usd", *, status: str = "published"
    ) -> dict[str, Any]:
        """A course at `price`, a JSON number literal (sent as written, so it stays exact)."""
        title = f"Course {uuid.uuid4().hex[:10]}"
        reply = self.client.post(
            "/courses",
            f'{{"title": "{title}", "description": "D", "price": {price}, '
            f'"currency": "{currency}"}}',
        )
        assert reply.status == 201, reply.text
        course = reply.body
        steps = {"draft": [], "published": ["published"], "archived": ["published", "archived"]}
        for step in steps[status]:
            moved = self.client.patch(f"/courses/{course['id']}", {"status": step})
            assert moved.status == 200, moved.text
            course = moved.body
        return course

    def enroll(
        self,
        student: dict[str, Any],
        course: dict[str, Any],
        payment_method_id: str | None = "pm_card_visa",
        *,
        key: str | None = None,
        **extra: Any,
    ) -> Reply:
        body: dict[str, Any] = {"student_id": student["id"], "course_id": course["id"], **extra}
        if payment_method_id is not None:
            body["payment_method_id"] = payment_method_id
        return post(self.client, "/enrollments", body, key)

    def cancel(self, enrollment_id: str, *, refund: bool) -> Reply:
        return self.client.post(f"/enrollments/{enrollment_id}/cancel", {"refund": refund})

    def enrollment_count(self, course: dict[str, Any]) -> int:
        reply = self.client.get(f"/courses/{course['id']}")
        assert reply.status == 200, reply.text
        return int(reply.body["enrollment_count"])

    def enrollments_of(self, student: dict[str, Any], **query: str) -> dict[str, Any]:
        reply = self.client.get("/enrollments", student_id=student["id"], **query)
        assert reply.status == 200, reply.text
        return reply.body

    def payment_intents(self, **metadata: str) -> list[dict[str, Any]]:
        """The PaymentIntents at the Stripe server whose metadata has all of `metadata`."""
        return payment_intents(self.stack, account_id=self.account.id, **metadata)


@pytest.fixture
def school(stack: Stack) -> School:
    return School.of(stack, stack.create_account("pro"))


def post(client: Client, path: str, body: dict[str, Any], key: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.session.post(
        client.stack.url(path), data=json.dumps(body), headers=headers, timeout=TIMEOUT
    )
    return Reply(response)


def payment_intents(stack: Stack, **metadata: str) -> list[dict[str, Any]]:
    response = requests.get(f"{stack.stripe_url}/_local/payment_intents", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return [
        intent
        for intent in response.json()["data"]
        if all(intent["metadata"].get(name) == value for name, value in metadata.items())
    ]


def stripe_reader(stack: Stack, *, livemode: bool) -> stripe.StripeClient:
    """The SDK against the local server. The stack keeps the functions' Stripe secrets to itself
    (neither the keys file nor the console shows them); the local server, like stripe-mock,
    takes any well-formed secret key and tells the mode from it, which is all a read needs."""
    mode = "live" if livemode else "test"
    return stripe.StripeClient(
        f"sk_{mode}_e2eReader", base_addresses={"api": stack.stripe_url}, max_network_retries=0
    )


def faults(stack: Stack, **settings: int) -> dict[str, Any]:
    response = requests.post(f"{stack.stripe_url}/_local/faults", json=settings, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def error_of(reply: Reply) -> tuple[int, str, str, str | None]:
    error = reply.error
    return reply.status, error["type"], error["code"], error.get("param")


def burst(school: School, path: str, body: dict[str, Any], key: str | None = None) -> list[Reply]:
    """`CONCURRENT` identical POSTs at once, each on its own HTTP connection."""
    barrier = threading.Barrier(CONCURRENT, timeout=CONCURRENT_TIMEOUT)
    headers = {"Content-Type": "application/json", **school.stack.headers(school.secret)}
    if key is not None:
        headers["Idempotency-Key"] = key

    def one(_: int) -> Reply:
        with requests.Session() as session:
            barrier.wait()
            response = session.post(
                school.stack.url(path),
                data=json.dumps(body),
                headers=headers,
                timeout=CONCURRENT_TIMEOUT,
            )
            return Reply(response)

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


@pytest.fixture
def reset_faults(stack: Stack) -> Iterator[None]:
    yield
    assert faults(stack, fail_next=0, delay_ms=0)["fail_next"] == 0


# --- students ---


def test_a_student_is_unique_by_email_in_any_letter_case(school: School) -> None:
    student = school.student("Ada")
    email = student["email"]
    taken = school.client.post("/students", {"email": email.upper(), "name": "Another Ada"})
    assert error_of(taken) == (409, "invalid_request_error", "email_taken", "email")
    found = school.client.get("/students", email=email.upper())
    assert (found.body["data"], found.body["total_count"]) == ([student], 1)
    moved = school.client.patch(f"/students/{student['id']}", {"email": f"new.{email}"})
    assert (moved.status, moved.body["email"]) == (200, f"new.{email}")
    # the old address is free again; the new one is taken
    assert school.client.post("/students", {"email": email, "name": "Ada II"}).status == 201
    again = school.client.post("/students", {"email": f"NEW.{email}", "name": "Ada III"})
    assert error_of(again) == (409, "invalid_request_error", "email_taken", "email")


# --- enrolling ---


@pytest.mark.parametrize(
    ("price", "currency", "amount"),
    [("49.99", "usd", 4999), ("5000", "JPY", 5000), ("1.234", "bhd", 1234)],
)
def test_a_paid_enrollment_charges_the_price_once_in_minor_units(
    school: School, price: str, currency: str, amount: int
) -> None:
    student, course = school.student(), school.course(price, currency)
    assert school.enrollment_count(course) == 0

    reply = school.enroll(student, course, "pm_card_visa")

    assert reply.status == 201, reply.text
    enrollment = reply.body
    payment = enrollment["payment"]
    assert payment["id"].startswith("pi_")
    assert payment == {
        "id": payment["id"],
        "status": "succeeded",
        "amount": amount,
        "amount_refunded": 0,
        "currency": currency.lower(),
    }
    assert {name: enrollment[name] for name in ("object", "status", "student_id", "course_id")} == {
        "object": "enrollment",
        "status": "active",
        "student_id": student["id"],
        "course_id": course["id"],
    }
    assert (enrollment["canceled_at"], enrollment["livemode"]) == (None, False)
    assert enrollment["welcome_email"] == "not_requested"
    assert school.client.get(f"/enrollments/{enrollment['id']}").body == enrollment
    assert school.enrollment_count(course) == 1
    listed = school.client.get("/enrollments", course_id=course["id"]).body
    assert (listed["data"], listed["total_count"]) == ([enrollment], 1)

    # exactly one PaymentIntent for this enrollment, and none other for this student
    intents = school.payment_intents(enrollment_id=enrollment["id"])
    assert [intent["id"] for intent in intents] == [payment["id"]]
    assert school.payment_intents(student_id=student["id"]) == intents
    intent = intents[0]
    assert (intent["status"], intent["amount"], intent["currency"], intent["livemode"]) == (
        "succeeded",
        amount,
        currency.lower(),
        False,
    )
    assert intent["amount_received"] == amount
    assert intent["metadata"] == {
        "account_id": school.account.id,
        "enrollment_id": enrollment["id"],
        "course_id": course["id"],
        "student_id": student["id"],
    }


def test_a_free_enrollment_has_no_payment_and_no_payment_intent(school: School) -> None:
    student, course = school.student(), school.course("0")
    # a payment method on a free course is ignored, even one that would be declined
    reply = school.enroll(student, course, "pm_card_chargeDeclined")
    assert reply.status == 201, reply.text
    assert (reply.body["status"], reply.body["payment"]) == ("active", None)
    assert school.enrollment_count(course) == 1
    assert school.payment_intents(student_id=student["id"]) == []
    # refund: true on a free enrollment cancels it: there is nothing to refund
    canceled = school.cancel(reply.body["id"], refund=True)
    assert (canceled.status, canceled.body["status"], canceled.body["payment"]) == (
        200,
        "canceled",
        None,
    )
    assert school.enrollment_count(course) == 0


def test_declined_cards_enroll_nothing_then_a_good_card_enrolls(school: School) -> None:
    student, course = school.student(), school.course("49.99")
    declines = [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_authenticationRequired", "authentication_required", None),
    ]
    for card, code, decline_code in declines:
        reply = school.enroll(student, course, card)
        assert (reply.status, reply.error["type"], reply.error["code"]) == (
            402,
            "card_error",
            code,
        ), reply.text
        if decline_code is not None:
            assert reply.error["decline_code"] == decline_code
        # nothing enrolled, nothing counted, nothing charged
        listed = school.enrollments_of(student)
        assert (listed["data"], listed["total_count"]) == ([], 0)
        assert school.enrollment_count(course) == 0
    attempts = school.payment_intents(student_id=student["id"])
    assert len(attempts) == len(declines)
    assert all(intent["status"] != "succeeded" for intent in attempts)
    assert all(intent["amount_received"] == 0 for intent in attempts)

    enrolled = school.enroll(student, course, "pm_card_mastercard")

    assert enrolled.status == 201, enrolled.text
    assert enrolled.body["payment"]["status"] == "succeeded"
    assert school.enrollment_count(course) == 1
    assert school.enrollments_of(student)["total_count"] == 1
    paid = [
        intent
        for intent in school.payment_intents(student_id=student["id"])
        if intent["status"] == "succeeded"
    ]
    assert [intent["id"] for intent in paid] == [enrolled.body["payment"]["id"]]
    assert paid[0]["metadata"]["enrollment_id"] == enrolled.body["id"]


def test_a_second_enrollment_of_the_same_pair_is_409_already_enrolled(school: School) -> None:
    student, course = school.student(), school.course("25")
    assert school.enroll(student, course).status == 201
    again = school.enroll(student, course, "pm_card_mastercard")
    assert error_of(again) == (409, "invalid_request_error", "already_enrolled", None)
    assert school.enrollment_count(course) == 1
    assert len(school.payment_intents(student_id=student["id"])) == 1


@pytest.mark.parametrize("status", ["draft", "archived"])
def test_a_course_that_is_not_published_is_400_course_not_published(
    school: School, status: str
) -> None:
    student, course = school.student(), school.course("25", status=status)
    assert course["status"] == status
    reply = school.enroll(student, course)
    assert error_of(reply) == (400, "invalid_request_error", "course_not_published", "course_id")
    assert school.enrollments_of(student)["total_count"] == 0
    assert school.payment_intents(student_id=student["id"]) == []


def test_a_paid_course_without_a_payment_method_is_400_parameter_missing(school: School) -> None:
    student, course = school.student(), school.course("25")
    reply = school.enroll(student, course, None)
    assert error_of(reply) == (
        400,
        "invalid_request_error",
        "parameter_missing",
        "payment_method_id",
    )
    assert school.enrollment_count(course) == 0
    assert school.payment_intents(student_id=student["id"]) == []


# --- concurrency ---


def test_concurrent_identical_requests_without_a_key_enroll_and_charge_once(
    school: School,
) -> None:
    student, course = school.student(), school.course("25")
    body = {"student_id": student["id"], "course_id": course["id"]}
    body["payment_method_id"] = "pm_card_visa"

    replies = burst(school, "/enrollments", body)

    created = [reply for reply in replies if reply.status == 201]
    assert len(created) == 1, [reply.text for reply in replies]
    others = {error_of(reply) for reply in replies if reply.status != 201}
    assert others <= {
        (409, "invalid_request_error", "already_enrolled", None),
        (503, "api_error", "service_unavailable", None),
    }, others
    enrollment = created[0].body
    intents = school.payment_intents(student_id=student["id"])
    assert [(i["id"], i["status"]) for i in intents] == [(enrollment["payment"]["id"], "succeeded")]
    assert school.enrollment_count(course) == 1
    assert school.enrollments_of(student)["data"] == [enrollment]


def test_concurrent_requests_with_one_key_charge_once_and_replay_the_201(school: School) -> None:
    student, course = school.student(), school.course("25")
    body = {"student_id": student["id"], "course_id": course["id"]}
    body["payment_method_id"] = "pm_card_visa"
    key = f"e2e-{uuid.uuid4()}"

    replies = burst(school, "/enrollments", body, key)

    created = [reply for reply in replies if reply.status == 201]
    assert created, [reply.text for reply in replies]
    enrollment = created[0].body
    assert all(reply.body == enrollment for reply in created)
    # the request that did the work answers as itself; every other 201 is its replay
    assert [reply.headers.get("Idempotent-Replayed") for reply in created].count(None) == 1
    assert {reply.headers.get("Idempotent-Replayed") for reply in created} <= {None, "true"}
    others = {error_of(reply) for reply in replies if reply.status != 201}
    assert others <= {(409, "idempotency_error", "idempotency_request_in_progress", None)}
    intents = school.payment_intents(student_id=student["id"])
    assert [(i["id"], i["status"]) for i in intents] == [(enrollment["payment"]["id"], "succeeded")]
    assert school.enrollment_count(course) == 1

    later = school.enroll(student, course, key=key)
    assert (later.status, later.headers.get("Idempotent-Replayed")) == (201, "true")
    assert later.body == enrollment
    assert len(school.payment_intents(student_id=student["id"])) == 1
    assert school.enrollment_count(course) == 1


# --- cancelling and refunding ---


def test_cancel_with_refund_then_reenroll_is_a_second_separate_charge(
    stack: Stack, school: School
) -> None:
    student, course = school.student(), school.course("49.99")
    first = school.enroll(student, course)
    assert first.status == 201, first.text
    paid = first.body["payment"]

    canceled = school.cancel(first.body["id"], refund=True)

    assert canceled.status == 200, canceled.text
    assert canceled.body["status"] == "canceled"
    assert canceled.body["canceled_at"] is not None
    assert canceled.body["payment"] == {**paid, "status": "refunded", "amount_refunded": 4999}
    assert school.client.get(f"/enrollments/{first.body['id']}").body == canceled.body
    assert school.enrollment_count(course) == 0
    # at Stripe: the PaymentIntent's charge is refunded in full
    reader = stripe_reader(stack, livemode=False)
    intent = reader.v1.payment_intents.retrieve(paid["id"])
    charge = reader.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (4999, 4999, True)

    again = school.enroll(student, course)

    assert again.status == 201, again.text
    assert again.body["id"] != first.body["id"]
    assert again.body["payment"]["id"] != paid["id"]
    assert again.body["payment"]["status"] == "succeeded"
    assert school.enrollment_count(course) == 1
    intents = {i["id"]: i for i in school.payment_intents(student_id=student["id"])}
    assert set(intents) == {paid["id"], again.body["payment"]["id"]}
    assert intents[again.body["payment"]["id"]]["metadata"]["enrollment_id"] == again.body["id"]
    second_charge = reader.v1.charges.retrieve(
        str(intents[again.body["payment"]["id"]]["latest_charge"])
    )
    assert (second_charge.amount, second_charge.amount_refunded) == (4999, 0)
    active = school.enrollments_of(student, status="active")
    assert (active["data"], active["total_count"]) == ([again.body], 1)
    ended = school.enrollments_of(student, status="canceled")
    assert (ended["data"], ended["total_count"]) == ([canceled.body], 1)

    for refund in (True, False):
        twice = school.cancel(first.body["id"], refund=refund)
        assert error_of(twice) == (
            400,
            "invalid_request_error",
            "invalid_status_transition",
            None,
        )
    assert school.client.get(f"/enrollments/{first.body['id']}").body == canceled.body
    assert reader.v1.charges.retrieve(charge.id).amount_refunded == 4999


def test_cancel_without_refund_keeps_the_payment(stack: Stack, school: School) -> None:
    student, course = school.student(), school.course("25")
    enrolled = school.enroll(student, course)
    canceled = school.cancel(enrolled.body["id"], refund=False)
    assert (canceled.status, canceled.body["status"]) == (200, "canceled")
    assert canceled.body["payment"] == enrolled.body["payment"]
    assert school.enrollment_count(course) == 0
    reader = stripe_reader(stack, livemode=False)
    intent = reader.v1.payment_intents.retrieve(enrolled.body["payment"]["id"])
    assert reader.v1.charges.retrieve(str(intent.latest_charge)).amount_refunded == 0


def test_concurrent_cancels_with_refund_cancel_and_refund_once(
    stack: Stack, school: School
) -> None:
    student, course = school.student(), school.course("25")
    enrolled = school.enroll(student, course)
    assert enrolled.status == 201, enrolled.text

    replies = burst(school, f"/enrollments/{enrolled.body['id']}/cancel", {"refund": True})

    canceled = [reply for reply in replies if reply.status == 200]
    assert len(canceled) == 1, [reply.text for reply in replies]
    others = {error_of(reply) for reply in replies if reply.status != 200}
    assert others == {(400, "invalid_request_error", "invalid_status_transition", None)}
    assert canceled[0].body["payment"]["amount_refunded"] == 2500
    assert school.client.get(f"/enrollments/{enrolled.body['id']}").body == canceled[0].body
    assert school.enrollment_count(course) == 0
    reader = stripe_reader(stack, livemode=False)
    intent = reader.v1.payment_intents.retrieve(enrolled.body["payment"]["id"])
    charge = reader.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.amount, charge.amount_refunded) == (2500, 2500)


# --- a Stripe outage ---


@pytest.mark.usefixtures("reset_faults")
def test_a_stripe_outage_is_retryable_and_the_retry_charges_once(
    stack: Stack, school: School
) -> None:
    student, course = school.student(), school.course("25")
    key = f"e2e-{uuid.uuid4()}"
    # the next two Stripe calls fail: the charge and the SDK's one retry of it
    assert faults(stack, fail_next=2, status=500)["fail_next"] == 2

    failed = school.enroll(student, course, key=key)

    assert failed.status in (502, 503), failed.text
    assert (failed.error["type"], failed.error["code"]) == (
        "api_error",
        "payment_provider_unavailable",
    )
    assert int(failed.headers["Retry-After"]) > 0
    assert school.enrollment_count(course) == 0
    assert school.enrollments_of(student)["total_count"] == 0
    assert faults(stack)["fail_next"] == 0  # both faults were spent on this request

    retried = school.enroll(student, course, key=key)

    assert retried.status == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers  # a 5xx is not saved
    intents = school.payment_intents(student_id=student["id"])
    assert [(i["id"], i["status"]) for i in intents] == [
        (retried.body["payment"]["id"], "succeeded")
    ]
    assert intents[0]["metadata"]["enrollment_id"] == retried.body["id"]
    assert school.enrollment_count(course) == 1


# --- welcome e-mails ---


def _mail_lines(stack: Stack, email: str) -> list[str]:
    return [line for line in stack.log().splitlines() if "[mail]" in line and f" {email}" in line]


def test_a_welcome_email_is_sent_once_and_only_when_asked(stack: Stack, school: School) -> None:
    course = school.course("25")
    quiet, declined, welcomed = school.student(), school.student(), school.student()
    # the two that must not be mailed go first: once the third one's mail shows, the stream has
    # delivered their records too
    assert school.enroll(quiet, course).body["welcome_email"] == "not_requested"
    refused = school.enroll(declined, course, "pm_card_chargeDeclined", send_welcome_email=True)
    assert refused.status == 402, refused.text
    enrolled = school.enroll(welcomed, course, send_welcome_email=True)
    assert (enrolled.status, enrolled.body["welcome_email"]) == (201, "requested")

    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while not _mail_lines(stack, welcomed["email"]):
        assert time.monotonic() < deadline, f"no [mail] line for {welcomed['email']}"
        time.sleep(0.1)
    time.sleep(MAIL_SETTLE_SECONDS)

    lines = _mail_lines(stack, welcomed["email"])
    assert len(lines) == 1, lines
    assert course["title"] in lines[0]
    assert _mail_lines(stack, quiet["email"]) == []
    assert _mail_lines(stack, declined["email"]) == []


# --- live mode ---


def test_a_live_key_pays_in_live_mode(stack: Stack, school: School) -> None:
    live = School.of(stack, school.account, "live")
    student, course = live.student(), live.course("49.99")

    reply = live.enroll(student, course)

    assert reply.status == 201, reply.text
    assert (reply.body["livemode"], reply.body["payment"]["amount"]) == (True, 4999)
    intents = live.payment_intents(enrollment_id=reply.body["id"])
    assert [(i["id"], i["status"], i["livemode"]) for i in intents] == [
        (reply.body["payment"]["id"], "succeeded", True)
    ]
    # the PaymentIntent lives in Stripe's live mode only
    found = stripe_reader(stack, livemode=True).v1.payment_intents.retrieve(intents[0]["id"])
    assert found.livemode is True
    with pytest.raises(stripe.InvalidRequestError):
        stripe_reader(stack, livemode=False).v1.payment_intents.retrieve(intents[0]["id"])
    # and the enrollment in LearnFlow's: the test key does not see it
    assert school.client.get(f"/enrollments/{reply.body['id']}").status == 404
    assert live.enrollment_count(course) == 1
