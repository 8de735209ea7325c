"""The money path's invariants, checked after the load: every enrollment once, one charge each
and no charge without one, counts that agree, no final 5xx, one winner per racer pair."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import stripe

from loadtest.accounts import Budget, Scope
from loadtest.checks import Verdict, examples
from loadtest.enrollments import (
    ALREADY_ENROLLED,
    AMOUNT,
    CURRENCY,
    Enrollment,
    PaidCourse,
    Phase,
)
from loadtest.transport import Base, Connection, Recorder
from loadtest.workload import Page, Settings, fetch

CHECK_SHARE = 0.9
CHECK_PARALLEL = 8
MAX_PAGES = 100
MAX_INTENTS = 100_000
STRIPE_KEY = "sk_test_loadtestlister"  # the local server has one account per mode: any test key


@dataclass(slots=True)
class Listed:
    """Every item of one `GET /enrollments` list, paged through."""

    path: str
    items: list[dict[str, Any]] = field(default_factory=list)
    total_counts: set[int] = field(default_factory=set)
    failure: str | None = None


@dataclass(slots=True)
class Findings:
    pairs: dict[tuple[str, str], Listed]  # (course, student) → its enrollments
    courses: dict[str, tuple[int | None, Listed]]  # course → enrollment_count, active ones
    intents: list[dict[str, Any]] | None  # every PaymentIntent of the Stripe server's test mode
    stripe_failure: str


def _list(
    connection: Connection, scope: Scope, query: dict[str, str], run: Callable[..., Any]
) -> Listed:
    listed = Listed("/enrollments?" + urlencode(query))
    after: str | None = None
    for _ in range(MAX_PAGES):
        path = "/enrollments?" + urlencode(
            {**query, **({"starting_after": after} if after else {})}
        )
        answer, outcome = run(connection, scope, path)
        page = Page.parse(answer.json()) if answer is not None and answer.status == 200 else None
        if page is None:
            listed.failure = f"GET {path}: {outcome}"
            return listed
        listed.items += page.items
        listed.total_counts.add(page.total_count)
        if not page.has_more or not page.items:
            return listed
        after = page.last
    listed.failure = f"more than {MAX_PAGES} pages"
    return listed


def _intents(stripe_url: str) -> list[dict[str, Any]]:
    """Through the real SDK: `GET /v1/payment_intents`, every page."""
    client = stripe.StripeClient(
        STRIPE_KEY,
        base_addresses={"api": stripe_url},
        max_network_retries=2,
    )
    pages = client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return [intent.to_dict() for intent in itertools.islice(pages, MAX_INTENTS)]


def gather(
    base: Base,
    phase: Phase,
    *,
    stripe_url: str | None,
    recorder: Recorder,
    budget: Budget,
    settings: Settings,
    timeout: float,
) -> Findings:
    """Each pair's enrollments, each paid course's count and active enrollments, and Stripe's
    PaymentIntents."""

    def run(connection: Connection, scope: Scope, path: str) -> Any:
        return fetch(
            connection,
            scope,
            path,
            budget=budget,
            share=CHECK_SHARE,
            settings=settings,
            attempts=settings.max_attempts,
        )

    def pair(job: tuple[Scope, str, str]) -> tuple[tuple[str, str], Listed]:
        scope, course, student = job
        connection = Connection(base, timeout, recorder, "check")
        try:
            query = {"student_id": student, "course_id": course, "limit": "10"}
            return (course, student), _list(connection, scope, query, run)
        finally:
            connection.close()

    def course(paid: PaidCourse) -> tuple[str, tuple[int | None, Listed]]:
        connection = Connection(base, timeout, recorder, "check")
        try:
            answer, _ = run(connection, paid.scope, f"/courses/{paid.id}")
            document = answer.json() if answer is not None and answer.status == 200 else None
            count = document.get("enrollment_count") if isinstance(document, dict) else None
            query = {"course_id": paid.id, "status": "active", "limit": "100"}
            active = _list(connection, paid.scope, query, run)
            return paid.id, (count if isinstance(count, int) else None, active)
        finally:
            connection.close()

    jobs = {(e.course.id, e.student_id): e.scope for e in phase.every}
    jobs.update({(p.course.id, p.student_id): p.scope for p in phase.pairs})
    with ThreadPoolExecutor(CHECK_PARALLEL) as pool:
        pairs = dict(pool.map(pair, [(scope, c, s) for (c, s), scope in jobs.items()]))
        courses = dict(pool.map(course, phase.courses))
    intents, failure = None, "no local Stripe server (--stripe-url)"
    if stripe_url is not None:
        try:
            intents, failure = _intents(stripe_url), ""
        except stripe.StripeError as error:
            failure = f"listing PaymentIntents failed: {type(error).__name__}: {error}"
    return Findings(pairs, courses, intents, failure)


def _key(enrollment: Enrollment) -> tuple[str, str]:
    return enrollment.course.id, enrollment.student_id


def exactly_once(phase: Phase, findings: Findings) -> Verdict:
    """(a) Every logical enrollment and racer pair: exactly one active enrollment for its student
    and course, the one its 201 named."""
    name = "every logical enrollment exists exactly once (one active per student and course)"
    problems: list[str] = []
    for key, listed in findings.pairs.items():
        if listed.failure:
            problems.append(f"{listed.path}: {listed.failure}")
            continue
        active = [item for item in listed.items if item.get("status") == "active"]
        if len(active) != 1 or len(listed.items) != 1 or listed.total_counts != {1}:
            ids = ", ".join(f"{i.get('id')} {i.get('status')}" for i in listed.items)
            problems.append(f"{listed.path}: {len(listed.items)} listed ({ids or 'none'})")
        elif (active[0].get("course_id"), active[0].get("student_id")) != key:
            problems.append(f"{listed.path}: lists {active[0].get('id')} of another pair")
    for enrollment in phase.every:
        made = enrollment.enrollment()
        found = findings.pairs.get(_key(enrollment))
        items = found.items if found is not None else []
        if made is not None and items and made.get("id") != items[0].get("id"):
            problems.append(
                f"{enrollment.label}: answered {made.get('id')}, listed {items[0].get('id')}"
            )
    detail = (
        f"{len(phase.every)} logical enrollments and {len(phase.pairs)} racer pairs, "
        f"{len(findings.pairs) - len(problems)} of {len(findings.pairs)} pairs with exactly one"
    )
    if problems:
        detail += f"; {len(problems)} wrong: {examples(problems)}"
    return Verdict(name, not problems, detail)


def one_charge_each(phase: Phase, findings: Findings) -> Verdict:
    """(b) Each enrollment's PaymentIntent succeeded for the course's price and names it in its
    metadata; no succeeded PaymentIntent of the run's paid courses without its enrollment."""
    name = "one charge per enrollment, no charge without one (Stripe's PaymentIntents)"
    if findings.intents is None:
        return Verdict(name, None, findings.stripe_failure)
    # The run's own paid courses, made fresh each run: an account reused from a keys file may
    # hold earlier runs' charges, which are none of this run's business.
    courses = {course.id for course in phase.courses}
    ours = [pi for pi in findings.intents if (pi.get("metadata") or {}).get("course_id") in courses]
    by_id = {str(pi["id"]): pi for pi in ours}
    enrollments = [item for listed in findings.pairs.values() for item in listed.items]
    problems: list[str] = []
    for enrollment in enrollments:
        eid, payment = enrollment.get("id"), enrollment.get("payment") or {}
        pi = by_id.get(str(payment.get("id")))
        metadata = (pi or {}).get("metadata") or {}
        wanted = {
            "status": "succeeded", "amount": AMOUNT, "currency": CURRENCY,
            "enrollment_id": eid, "student_id": enrollment.get("student_id"),
            "course_id": enrollment.get("course_id"),
        }  # fmt: skip
        got = {
            "status": (pi or {}).get("status"), "amount": (pi or {}).get("amount"),
            "currency": (pi or {}).get("currency"), **{k: metadata.get(k) for k in
            ("enrollment_id", "student_id", "course_id")},
        }  # fmt: skip
        if pi is None:
            problems.append(f"{eid}: its payment {payment.get('id')} is not at Stripe")
        elif got != wanted or payment.get("amount") != AMOUNT:
            wrong = {k: v for k, v in got.items() if v != wanted[k]}
            problems.append(f"{eid}: {payment.get('id')} {wrong or payment}")
    succeeded = [pi for pi in ours if pi.get("status") == "succeeded"]
    named = [(pi, pi.get("metadata") or {}) for pi in succeeded]
    per_enrollment = Counter(str(metadata.get("enrollment_id")) for _, metadata in named)
    per_pair = Counter((m.get("course_id"), m.get("student_id")) for _, m in named)
    known = {str(item.get("id")) for item in enrollments}
    orphans = [
        f"{pi['id']} ({metadata.get('enrollment_id')})"
        for pi, metadata in named
        if str(metadata.get("enrollment_id")) not in known
    ]
    doubled = [f"{eid} x{n}" for eid, n in per_enrollment.items() if n > 1]
    doubled += [f"{pair} x{n}" for pair, n in per_pair.items() if n > 1]
    statuses = Counter(str(pi.get("status")) for pi in ours)
    detail = (
        f"{len(ours)} PaymentIntents of the run's paid courses "
        f"({', '.join(f'{n} {s}' for s, n in statuses.most_common())}) for "
        f"{len(enrollments)} enrollments"
    )
    for title, found in (("wrong", problems), ("double charges", doubled), ("orphans", orphans)):
        if found:
            detail += f"; {len(found)} {title}: {examples(found)}"
    return Verdict(name, not (problems or doubled or orphans), detail)


def counts_agree(phase: Phase, findings: Findings) -> Verdict:
    """(c) Each paid course's `enrollment_count` = `total_count` of its active enrollments = the
    number listed = the student-course pairs the run enrolled in it."""
    name = "enrollment_count = total_count (course_id, active) = listed = enrolled pairs"
    expected = Counter(course for course, _ in findings.pairs)
    problems: list[str] = []
    shown = []
    for course, (count, listed) in findings.courses.items():
        if count is None or listed.failure:
            problems.append(f"{course}: {listed.failure or 'GET /courses/{id} failed'}")
            continue
        figures = (count, *sorted(listed.total_counts), len(listed.items), expected[course])
        shown.append("=".join(str(n) for n in dict.fromkeys(figures)))
        if len(set(figures)) != 1:
            problems.append(
                f"{course}: enrollment_count {count}, total_count "
                f"{sorted(listed.total_counts)}, listed {len(listed.items)}, "
                f"pairs {expected[course]}"
            )
    detail = f"{len(findings.courses)} paid courses ({', '.join(shown)})"
    if problems:
        detail += f"; {len(problems)} drifted: {examples(problems)}"
    return Verdict(name, not problems, detail)


def final_answers(phase: Phase) -> Verdict:
    """(d) No logical enrollment ends on a 5xx; each ends on its 201 (or a replay of it)."""
    name = "no final 5xx: every logical enrollment ends on its 201 (or a replay of it)"
    every = phase.every
    finals = Counter(_final(e) for e in every)
    wrong = [e for e in every if not _ours(e)]
    detail = ", ".join(f"{n} x {final}" for final, n in finals.most_common()) or "none"
    if wrong:
        detail += f"; not their 201: {examples([f'{e.label} {e.final}' for e in wrong])}"
    return Verdict(name, not wrong, detail)


def _ours(enrollment: Enrollment) -> bool:
    made = enrollment.enrollment()
    return made is not None and (
        str(made.get("id", "")).startswith("enr_")
        and (made.get("course_id"), made.get("student_id")) == _key(enrollment)
        and made.get("status") == "active"
    )


def _final(enrollment: Enrollment) -> str:
    return enrollment.final + (f" (gave up: {enrollment.gave_up})" if enrollment.gave_up else "")


def racers(phase: Phase) -> Verdict:
    """(e) Key-less racers: every racer ends on 201 or 409 `already_enrolled`, exactly one 201
    per pair; none only where a racer got a 5xx (a Stripe failure, the gateway's 504) or no
    answer: another request then finishes its draft and answers 409, as docs/enrollments.md
    says."""
    name = "racers: exactly one 201 per pair, the others 409 already_enrolled"
    problems, excused = [], 0
    finals: Counter[str] = Counter()
    for number, pair in enumerate(phase.pairs):
        finals.update(_final(r) for r in pair.racers)
        won = sum(1 for r in pair.racers if _ours(r))
        lost = sum(1 for r in pair.racers if r.final == f"409 {ALREADY_ENROLLED}")
        failed = any(
            outcome.startswith("5") or not outcome[:1].isdigit()
            for r in pair.racers
            for outcome in r.outcomes
        )
        if won + lost != len(pair.racers) or won > 1 or (won == 0 and not failed):
            ends = Counter(_final(r) for r in pair.racers)
            problems.append(f"pair {number} (wave {pair.wave}): {dict(ends)}")
        excused += won == 0 and failed
    detail = (
        f"{len(phase.pairs)} pairs x {len(phase.pairs[0].racers) if phase.pairs else 0}: "
        + ", ".join(f"{n} x {final}" for final, n in finals.most_common())
    )
    if excused:
        detail += f"; {excused} pair(s) without a 201 after a 5xx (documented)"
    if problems:
        detail += f"; {len(problems)} wrong: {examples(problems)}"
    return Verdict(name, not problems, detail)
