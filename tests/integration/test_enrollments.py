"""Enrollments in-process: handlers over moto's table, payments through the real `stripe` SDK
over HTTP to the local Stripe-compatible server (never a mocked SDK)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from functions.courses import get_course
from functions.enrollments import (
    cancel_enrollment,
    create_enrollment,
    get_enrollment,
    list_enrollments,
)
from learnflow import deps, payments
from learnflow.db.enrollments import EnrollmentRepository
from learnflow.db.students import StudentRepository
from learnflow.tenancy import Mode
from learnflow_cli.local.stripe_server import StripeServer
from learnflow_cli.template import load_template, stream_functions
from tests.support.aws import SESSION, TABLE, sent_emails
from tests.support.handlers import Context, Reply, container_copy, parse, separate_containers
from tests.support.payments import faults
from tests.support.school import School as BaseSchool

pytestmark = pytest.mark.usefixtures("module_table", "local_stripe")


class Crash(BaseException):
    """The invocation dies here (a timeout, out of memory): nothing after it runs, nothing is
    settled, no answer is sent."""


@dataclass
class School(BaseSchool):
    """A tenant with a catalogue, calling the enrollment routes."""

    def set_status(self, course_id: str, status: str) -> None:
        self.patch_course(course_id, {"status": status})

    def email_of(self, student_id: str) -> str:
        found = deps.repository(StudentRepository).get(self.tenant, student_id)
        return found.email

    def cancel(
        self, enrollment_id: str, *, refund: bool | None = None, key: str | None = None
    ) -> Reply:
        return self.call(
            cancel_enrollment.lambda_handler,
            "cancel_enrollment",
            path=f"/enrollments/{enrollment_id}/cancel",
            path_params={"enrollment_id": enrollment_id},
            body={} if refund is None else {"refund": refund},
            key=key,
        )

    def get(self, enrollment_id: str) -> Reply:
        return self.call(
            get_enrollment.lambda_handler,
            "get_enrollment",
            path=f"/enrollments/{enrollment_id}",
            path_params={"enrollment_id": enrollment_id},
        )

    def list(self, **query: str) -> Reply:
        return self.call(list_enrollments.lambda_handler, "list_enrollments", query=query)

    def enrollment_count(self, course_id: str) -> int:
        reply = self.call(
            get_course.lambda_handler,
            "get_course",
            path=f"/courses/{course_id}",
            path_params={"course_id": course_id},
        )
        return int(reply.body["enrollment_count"])


@pytest.fixture
def school() -> School:
    return School()


def intents(server: StripeServer, school: School) -> list[dict[str, Any]]:
    """The PaymentIntents this school's enrollments made at the payments server."""
    return [
        pi
        for pi in server.payment_intents()
        if pi["metadata"].get("account_id") == school.account_id
    ]


def succeeded(server: StripeServer, school: School) -> list[dict[str, Any]]:
    return [pi for pi in intents(server, school) if pi["status"] == "succeeded"]


# --------------------------------------------------------------------------- paid, free, declined


def test_paid_enrollment_charges_the_price_once_and_counts_one(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course("1.13"), school.student()
    reply = school.enroll(student, course, metadata={"order": "42"})
    assert reply.status == 201, reply.body
    enrollment = reply.body
    assert enrollment["id"].startswith("enr_")
    assert (enrollment["object"], enrollment["status"], enrollment["livemode"]) == (
        "enrollment",
        "active",
        False,
    )
    assert (enrollment["student_id"], enrollment["course_id"]) == (student, course)
    assert enrollment["canceled_at"] is None
    assert enrollment["welcome_email"] == "not_requested"
    assert enrollment["metadata"] == {"order": "42"}
    payment = enrollment["payment"]
    assert (payment["status"], payment["amount"], payment["amount_refunded"]) == (
        "succeeded",
        113,  # exactly, not the float artefact 112
        0,
    )
    assert payment["currency"] == "usd"
    (pi,) = intents(stripe_server, school)
    assert (pi["id"], pi["status"], pi["amount"], pi["currency"]) == (
        payment["id"],
        "succeeded",
        113,
        "usd",
    )
    assert pi["metadata"] == {
        "account_id": school.account_id,
        "enrollment_id": enrollment["id"],
        "course_id": course,
        "student_id": student,
    }
    assert school.enrollment_count(course) == 1
    assert school.get(enrollment["id"]).body == enrollment


def test_zero_decimal_currency_is_charged_in_whole_units(
    school: School, stripe_server: StripeServer
) -> None:
    reply = school.enroll(school.student(), school.course("5000", "JPY"))
    assert (reply.body["payment"]["amount"], reply.body["payment"]["currency"]) == (5000, "jpy")


def test_free_course_needs_no_payment_method_and_ignores_one(
    school: School, stripe_server: StripeServer
) -> None:
    course = school.course("0")
    without = school.enroll(school.student(), course, pm=None, send_welcome_email=True)
    with_pm = school.enroll(school.student(), course, pm="pm_card_chargeDeclined")
    assert (without.status, with_pm.status) == (201, 201)
    assert (without.body["payment"], with_pm.body["payment"]) == (None, None)
    assert without.body["welcome_email"] == "requested"
    assert intents(stripe_server, school) == []
    assert school.enrollment_count(course) == 2


@pytest.mark.parametrize(
    ("pm", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_authenticationRequired", "authentication_required", "authentication_required"),
    ],
)
def test_a_decline_is_402_and_nothing_is_enrolled_stored_or_counted(
    school: School, stripe_server: StripeServer, pm: str, code: str, decline_code: str
) -> None:
    course, student = school.course(), school.student()
    reply = school.enroll(student, course, pm=pm)
    assert reply.status == 402
    assert (reply.error["type"], reply.error["code"], reply.error["decline_code"]) == (
        "card_error",
        code,
        decline_code,
    )
    assert school.enrollment_count(course) == 0
    listed = school.list(student_id=student)
    assert (listed.body["data"], listed.body["total_count"]) == ([], 0)
    assert succeeded(stripe_server, school) == []
    # and the pair is free again: a good card enrolls
    retry = school.enroll(student, course, pm="pm_card_mastercard")
    assert retry.status == 201
    assert len(succeeded(stripe_server, school)) == 1
    assert school.enrollment_count(course) == 1


def test_mastercard_succeeds(school: School) -> None:
    assert school.enroll(school.student(), school.course(), pm="pm_card_mastercard").status == 201


# --------------------------------------------------------------------------- the rules


def test_second_active_enrollment_is_409_already_enrolled(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    assert school.enroll(student, course).status == 201
    again = school.enroll(student, course)
    assert (again.status, again.error["type"], again.error["code"]) == (
        409,
        "invalid_request_error",
        "already_enrolled",
    )
    assert len(succeeded(stripe_server, school)) == 1
    assert school.enrollment_count(course) == 1


@pytest.mark.parametrize("status", ["draft", "archived"])
def test_unpublished_course_is_400_course_not_published(school: School, status: str) -> None:
    course = school.course(publish=False)
    if status == "archived":
        school.set_status(course, "archived")
    reply = school.enroll(school.student(), course)
    assert (reply.status, reply.error["code"], reply.error["param"]) == (
        400,
        "course_not_published",
        "course_id",
    )


def test_paid_course_without_a_payment_method_is_400_parameter_missing(school: School) -> None:
    reply = school.enroll(school.student(), school.course(), pm=None)
    assert (reply.status, reply.error["code"], reply.error["param"]) == (
        400,
        "parameter_missing",
        "payment_method_id",
    )


@pytest.mark.parametrize("field", ["student_id", "course_id"])
def test_missing_or_foreign_ids_in_the_body_are_400_resource_missing(
    school: School, field: str
) -> None:
    other = School()
    theirs = {"student_id": other.student(), "course_id": other.course()}
    live = School(school.account_id, "live")
    live_ids = {"student_id": live.student(), "course_id": live.course()}
    ours = {"student_id": school.student(), "course_id": school.course()}
    for bad in (theirs[field], live_ids[field], "stu_nope", f"{field[:3]}_" + "0" * 24):
        body = {**ours, field: bad}
        reply = school.enroll(body["student_id"], body["course_id"])
        assert (reply.status, reply.error["code"], reply.error["param"]) == (
            400,
            "resource_missing",
            field,
        ), bad


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"course_id": "crs_x"}, "student_id"),
        ({"student_id": "stu_x"}, "course_id"),
    ],
)
def test_required_fields(school: School, body: dict[str, Any], param: str) -> None:
    reply = school.call(create_enrollment.lambda_handler, "create_enrollment", body=body)
    assert (reply.status, reply.error["code"], reply.error["param"]) == (
        400,
        "parameter_missing",
        param,
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"send_welcome_email": "yes"}, "send_welcome_email"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"refund": True}, "refund"),
        ({"payment_method_id": "pm_card\u0000visa"}, "payment_method_id"),
    ],
)
def test_bad_fields_name_their_param(school: School, extra: dict[str, Any], param: str) -> None:
    reply = school.enroll(school.student(), school.course(), **extra)
    assert (reply.status, reply.error["param"]) == (400, param)


def test_an_unknown_payment_method_is_400_naming_it(school: School) -> None:
    course, student = school.course(), school.student()
    reply = school.enroll(student, course, pm="pm_nonexistent")
    assert (reply.status, reply.error["param"]) == (400, "payment_method_id")
    assert school.enroll(student, course).status == 201  # nothing held the pair


# --------------------------------------------------------------------------- cancel and refund


def test_cancel_with_refund_then_reenroll_is_a_second_separate_charge(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    first = school.enroll(student, course).body
    canceled = school.cancel(first["id"], refund=True)
    assert canceled.status == 200, canceled.body
    assert canceled.body["status"] == "canceled"
    assert canceled.body["canceled_at"] is not None
    assert (canceled.body["payment"]["status"], canceled.body["payment"]["amount_refunded"]) == (
        "refunded",
        4999,
    )
    assert school.enrollment_count(course) == 0
    (refund,) = [
        r for r in stripe_server.refunds() if r["payment_intent"] == first["payment"]["id"]
    ]
    assert refund["amount"] == 4999
    again = school.enroll(student, course)
    assert again.status == 201
    assert again.body["payment"]["id"] != first["payment"]["id"]
    assert len(succeeded(stripe_server, school)) == 2
    assert school.enrollment_count(course) == 1
    assert school.get(first["id"]).body["status"] == "canceled"


def test_cancel_without_refund_keeps_the_payment(
    school: School, stripe_server: StripeServer
) -> None:
    enrollment = school.enroll(school.student(), school.course()).body
    canceled = school.cancel(enrollment["id"])
    assert (canceled.status, canceled.body["payment"]) == (200, enrollment["payment"])
    assert stripe_server.refunds() == [] or all(
        r["payment_intent"] != enrollment["payment"]["id"] for r in stripe_server.refunds()
    )


def test_cancel_twice_is_400_invalid_status_transition(school: School) -> None:
    enrollment = school.enroll(school.student(), school.course()).body
    assert school.cancel(enrollment["id"]).status == 200
    again = school.cancel(enrollment["id"], refund=True)
    assert (again.status, again.error["code"]) == (400, "invalid_status_transition")


def test_cancel_unknown_or_foreign_is_404(school: School) -> None:
    enrollment = School().enroll(School().student(), School().course())
    assert enrollment.status == 400  # another school's ids: not even enrolled
    reply = school.cancel("enr_" + "0" * 24)
    assert (reply.status, reply.error["code"]) == (404, "resource_missing")


def test_refund_on_a_free_enrollment_just_cancels(school: School) -> None:
    enrollment = school.enroll(school.student(), school.course("0"), pm=None).body
    canceled = school.cancel(enrollment["id"], refund=True)
    assert (canceled.status, canceled.body["payment"]) == (200, None)


# --------------------------------------------------------------------------- exactly once


def race(school: School, student: str, course: str, key: str | None) -> list[Reply]:
    """Twelve identical enrollment requests at once, each in its own container."""
    handlers = [container_copy(create_enrollment, n) for n in range(12)]
    body = {"student_id": student, "course_id": course, "payment_method_id": "pm_card_visa"}
    events = [school.event("create_enrollment", body=body, key=key) for _ in handlers]
    with separate_containers(), ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda n: handlers[n](events[n], Context()), range(12)))
    return [parse(result) for result in results]


def test_twelve_concurrent_identical_requests_without_a_key_charge_once(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    replies = race(school, student, course, None)
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [201] + [409] * 11, [r.body for r in replies]
    assert {r.error["code"] for r in replies if r.status == 409} == {"already_enrolled"}
    assert len(succeeded(stripe_server, school)) == 1
    assert len(intents(stripe_server, school)) == 1
    assert school.enrollment_count(course) == 1


def test_twelve_concurrent_requests_with_one_key_charge_once_and_replay(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    replies = race(school, student, course, "order-1")
    created = [r for r in replies if r.status == 201]
    assert created, [r.body for r in replies]
    assert {r.body["id"] for r in created} == {created[0].body["id"]}
    assert {r.error["code"] for r in replies if r.status != 201} <= {
        "idempotency_request_in_progress"
    }
    assert len(intents(stripe_server, school)) == 1
    later = school.enroll(student, course, key="order-1")
    assert (later.status, later.replayed, later.body["id"]) == (201, True, created[0].body["id"])
    assert school.enrollment_count(course) == 1


def crash_before_commit(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next commit dies before it writes (after the charge): returns what it would have
    committed."""
    original = EnrollmentRepository.commit
    crashed: list[str] = []

    def commit(self: EnrollmentRepository, tenant: Any, enrollment: Any) -> Any:
        if not crashed:
            crashed.append(enrollment.id)
            raise Crash
        return original(self, tenant, enrollment)

    monkeypatch.setattr(EnrollmentRepository, "commit", commit)
    return crashed


def test_a_crash_after_the_charge_then_a_retry_with_the_key_completes_without_charging_again(
    school: School, stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    course, student = school.course(), school.student()
    crashed = crash_before_commit(monkeypatch)
    with pytest.raises(Crash):
        school.enroll(student, course, key="order-7", context=Context(remaining_ms=50))
    assert len(succeeded(stripe_server, school)) == 1  # charged, never committed
    assert school.enrollment_count(course) == 0
    time.sleep(0.1)  # the crashed invocation's lease (its remaining time) runs out
    retry = school.enroll(student, course, key="order-7")
    assert retry.status == 201, retry.body
    assert retry.body["id"] == crashed[0]
    assert len(intents(stripe_server, school)) == 1
    assert retry.body["payment"]["id"] == succeeded(stripe_server, school)[0]["id"]
    assert school.enrollment_count(course) == 1
    assert school.enroll(student, course, key="order-7").replayed


def test_a_crash_after_the_charge_then_another_request_finishes_the_first_and_charges_nothing(
    school: School, stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    course, student = school.course(), school.student()
    crashed = crash_before_commit(monkeypatch)
    with pytest.raises(Crash):
        school.enroll(student, course, context=Context(remaining_ms=50))
    time.sleep(0.1)
    other = school.enroll(student, course, pm="pm_card_mastercard")
    assert (other.status, other.error["code"]) == (409, "already_enrolled")
    assert len(intents(stripe_server, school)) == 1
    assert school.get(crashed[0]).body["status"] == "active"
    assert school.enrollment_count(course) == 1


def test_a_stripe_outage_is_503_and_a_retry_uses_the_same_payment_intent(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    faults(stripe_server, fail_next=2, status=500)  # the first try and the SDK's own retry
    first = school.enroll(student, course, key="order-9")
    assert first.status in (502, 503)
    assert (first.error["type"], first.error["code"]) == (
        "api_error",
        "payment_provider_unavailable",
    )
    assert first.headers["Retry-After"]
    assert school.enrollment_count(course) == 0
    retry = school.enroll(student, course, key="order-9")
    assert retry.status == 201, retry.body
    assert len(intents(stripe_server, school)) == 1
    assert school.enrollment_count(course) == 1


def test_a_stripe_timeout_after_it_charged_then_a_retry_charges_nothing_more(
    school: School, stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe makes the charge but its answer comes after the client gave up (the SDK's one
    retry, with the same idempotency key, meets the first still in progress: a 409)."""
    monkeypatch.setattr(payments, "READ_TIMEOUT_SECONDS", 0.3)
    deps.reset()
    course, student = school.course(), school.student()
    faults(stripe_server, delay_ms=1500)
    first = school.enroll(student, course, key="order-10")
    assert first.status in (502, 503), first.body
    assert first.error["code"] == "payment_provider_unavailable"
    faults(stripe_server, delay_ms=0)
    time.sleep(1.6)  # the slow request finishes at the server: the charge is made
    retry = school.enroll(student, course, key="order-10")
    assert retry.status == 201, retry.body
    assert len(succeeded(stripe_server, school)) == 1
    assert retry.body["payment"]["id"] == succeeded(stripe_server, school)[0]["id"]
    assert school.enrollment_count(course) == 1


def test_a_decline_with_a_key_is_replayed_and_a_new_key_with_a_good_card_enrolls(
    school: School, stripe_server: StripeServer
) -> None:
    course, student = school.course(), school.student()
    declined = school.enroll(student, course, pm="pm_card_chargeDeclined", key="try-1")
    again = school.enroll(student, course, pm="pm_card_chargeDeclined", key="try-1")
    assert (declined.status, again.status, again.replayed) == (402, 402, True)
    other_card = school.enroll(student, course, pm="pm_card_visa", key="try-1")
    assert other_card.error["code"] == "idempotency_key_reused"
    good = school.enroll(student, course, pm="pm_card_visa", key="try-2")
    assert good.status == 201
    assert len(succeeded(stripe_server, school)) == 1


def test_a_cancel_retried_after_a_crash_finishes_once_and_refunds_once(
    school: School, stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = school.course()
    enrollment = school.enroll(school.student(), course).body
    original = EnrollmentRepository.cancel
    calls: list[str] = []

    def cancel(self: EnrollmentRepository, tenant: Any, before: Any, after: Any) -> bool:
        done = original(self, tenant, before, after)
        calls.append(before.id)
        if len(calls) == 1:
            raise Crash  # after the write, before the answer
        return done

    monkeypatch.setattr(EnrollmentRepository, "cancel", cancel)
    path = {"refund": True, "key": "cancel-1"}
    with pytest.raises(Crash):
        school.call(
            cancel_enrollment.lambda_handler,
            "cancel_enrollment",
            path=f"/enrollments/{enrollment['id']}/cancel",
            path_params={"enrollment_id": enrollment["id"]},
            body={"refund": path["refund"]},
            key=str(path["key"]),
            context=Context(remaining_ms=50),
        )
    time.sleep(0.1)
    retry = school.cancel(enrollment["id"], refund=True, key="cancel-1")
    assert retry.status == 200, retry.body
    assert (retry.body["status"], retry.body["payment"]["status"]) == ("canceled", "refunded")
    refunds = [
        r for r in stripe_server.refunds() if r["payment_intent"] == enrollment["payment"]["id"]
    ]
    assert len(refunds) == 1
    assert school.enrollment_count(course) == 0
    # without the key, a second cancel is what it is: a 400
    assert school.cancel(enrollment["id"]).error["code"] == "invalid_status_transition"


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", ["test", "live"])
def test_each_mode_pays_with_its_own_stripe_secret(stripe_server: StripeServer, mode: Mode) -> None:
    school = School(mode=mode)
    reply = school.enroll(school.student(), school.course())
    assert reply.status == 201
    assert reply.body["livemode"] is (mode == "live")
    (pi,) = intents(stripe_server, school)
    assert pi["livemode"] is (mode == "live")


# --------------------------------------------------------------------------- lists and counts


def test_every_filter_combination_lists_exact_pages_and_counts(school: School) -> None:
    courses = [school.course("0"), school.course("0")]
    students = [school.student() for _ in range(3)]
    made: list[dict[str, Any]] = []
    for student in students:
        for course in courses:
            made.append(school.enroll(student, course, pm=None).body)
    for enrollment in made[::3]:
        assert school.cancel(enrollment["id"]).status == 200
    current = {e["id"]: school.get(e["id"]).body for e in made}
    for student_filter in [None, *students]:
        for course_filter in [None, *courses]:
            for status in [None, "active", "canceled"]:
                query: dict[str, str] = {
                    name: value
                    for name, value in (
                        ("student_id", student_filter),
                        ("course_id", course_filter),
                        ("status", status),
                    )
                    if value is not None
                }
                expected = sorted(
                    (
                        e["id"]
                        for e in current.values()
                        if all(e[name] == value for name, value in query.items())
                    ),
                    reverse=True,
                )
                first = school.list(limit="2", **query)
                assert first.status == 200, first.body
                assert first.body["total_count"] == len(expected), query
                listed = [e["id"] for e in first.body["data"]]
                assert listed == expected[:2], query
                assert first.body["has_more"] is (len(expected) > 2)
                if first.body["has_more"]:
                    rest = school.list(limit="100", starting_after=listed[-1], **query)
                    assert [e["id"] for e in rest.body["data"]] == expected[2:]
    assert school.enrollment_count(courses[0]) == 2  # 3 students, 1 cancelled


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"student_id": "crs_" + "0" * 24}, "student_id"),
        ({"course_id": "nope"}, "course_id"),
        ({"status": "pending"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"limit": "0"}, "limit"),
        ({"starting_after": "enr_" + "0" * 24}, "starting_after"),
    ],
)
def test_bad_list_queries_are_400_naming_the_param(
    school: School, query: dict[str, str], param: str
) -> None:
    reply = school.list(**query)
    assert (reply.status, reply.error["param"]) == (400, param)


def test_other_accounts_and_modes_see_nothing(school: School) -> None:
    enrollment = school.enroll(school.student(), school.course()).body
    for other in (School(), school.as_mode("live")):
        assert other.get(enrollment["id"]).status == 404
        assert other.cancel(enrollment["id"]).status == 404
        listed = other.list()
        assert (listed.body["data"], listed.body["total_count"]) == ([], 0)


@pytest.mark.parametrize(
    ("permissions", "read", "write"),
    [
        ("enrollments:read", 200, 403),
        ("enrollments:write", 200, None),
        ("courses:write,students:write", 403, 403),
    ],
)
def test_restricted_keys_are_held_to_their_permissions(
    school: School, permissions: str, read: int, write: int | None
) -> None:
    course, student = school.course(), school.student()
    enrollment = school.enroll(student, course).body
    restricted = School(school.account_id, permissions=permissions)
    assert restricted.get(enrollment["id"]).status == read
    assert restricted.list().status == read
    cancel = restricted.cancel(enrollment["id"])
    created = restricted.enroll(school.student(), course)
    if write is None:
        assert (cancel.status, created.status) == (200, 201)
    else:
        assert (cancel.status, cancel.error["code"]) == (403, "insufficient_permissions")
        assert created.status == 403


# --------------------------------------------------------------------------- the welcome e-mail


def stream_records() -> list[dict[str, Any]]:
    """Every record of the table's stream so far, shaped as Lambda delivers them."""
    table = SESSION.client("dynamodb").describe_table(TableName=TABLE)
    streams = SESSION.client("dynamodbstreams")
    arn = table["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(100):  # bounded: a shard of a test's writes
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend({**record, "eventSourceARN": arn} for record in page["Records"])
            if not page["Records"] or "NextShardIterator" not in page:
                break
            iterator = page["NextShardIterator"]
    return records


def test_one_welcome_email_through_the_stream_however_often_it_is_delivered(
    school: School, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.notifications import send_welcome_email  # noqa: PLC0415
    from learnflow_cli.local.services import matches_pattern  # noqa: PLC0415

    sender = "welcome@learnflow.com"
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", sender)
    deps.reset()
    SESSION.client("sesv2").create_email_identity(EmailIdentity=sender)
    (function,) = stream_functions(load_template())
    course = school.course()
    asked = school.enroll(school.student(), course, send_welcome_email=True).body
    school.enroll(school.student(), course)  # did not ask
    declined = school.enroll(school.student(), course, pm="pm_card_chargeDeclined")
    assert declined.status == 402
    mine = [
        record
        for record in stream_records()
        if record["dynamodb"].get("NewImage", {}).get("account_id", {}).get("S")
        == school.account_id
        and any(matches_pattern(pattern, record) for pattern in function.filter_patterns)
    ]
    assert [r["dynamodb"]["NewImage"]["id"]["S"] for r in mine] == [asked["id"]]
    before = len(sent_emails())
    for _ in range(3):  # the stream delivers at least once
        result = send_welcome_email.lambda_handler({"Records": mine}, Context())  # type: ignore[arg-type]
        assert result == {"batchItemFailures": []}
    (message,) = sent_emails()[before:]
    assert message.destinations["ToAddresses"] == [school.email_of(asked["student_id"])]
    assert "Course" in message.subject
