"""The money path under load: paid enrollments charged through Stripe PaymentIntents.

In every load account a published paid course and fresh students are made before the load
(`prepare`). Each client then makes `--enrollments` logical enrollments among its creates, with
an Idempotency-Key each, retried as the creates are (`workload.perform`); racer pairs send
`--racers` identical key-less requests at once for one student and course. Meanwhile `Faults`
makes the local Stripe server slow and failing for a few seconds (docs/load.md)."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loadtest.accounts import Budget, Scope, SetupError
from loadtest.transport import LOOPBACK, Answer, Base, Connection, Recorder
from loadtest.workload import Create, Logical, Settings, perform

PRICE, CURRENCY, AMOUNT = 49.99, "usd", 4999  # the paid course, and its price in minor units
PAYMENT_METHOD = "pm_card_visa"
SETUP_PARALLEL = 16
ALREADY_ENROLLED = "already_enrolled"
PROVIDER_DOWN = "payment_provider_unavailable"
WAVE_TIMEOUT = 60.0  # how long racers wait for their wave before giving up
BARRIER_TIMEOUT = 20.0
# (seconds after the enrollments begin, settings for POST /_local/faults): a slow Stripe with a
# few failures (the SDK retries once, so two failures in a row reach LearnFlow as its 502), then
# a slower one, then a healthy one.
SCHEDULE: tuple[tuple[float, dict[str, int]], ...] = (
    (0.0, {"delay_ms": 2000, "fail_next": 4, "status": 500}),
    (1.5, {"fail_next": 4, "status": 503}),
    (3.0, {"delay_ms": 3000}),
    (4.5, {"delay_ms": 0, "fail_next": 0}),
)


@dataclass(frozen=True, slots=True)
class PaidCourse:
    scope: Scope
    id: str


@dataclass(slots=True)
class Step:
    """A setup request: a course, its publication, a student."""

    scope: Scope
    method: str
    path: str
    body: bytes
    idempotency_key: str | None
    outcomes: list[str] = field(default_factory=list)
    answer: Answer | None = None
    gave_up: str | None = None
    seconds: float = 0.0

    @property
    def kind(self) -> str | None:
        return None  # the setup connection's

    def result(self, status: int) -> dict[str, Any]:
        answer = self.answer
        document = None if answer is None or answer.status != status else answer.json()
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            final = self.outcomes[-1] if self.outcomes else "not sent"
            raise SetupError(f"{self.method} {self.path} on {self.scope.name}: {final}")
        return document


@dataclass(slots=True)
class Enrollment:
    """One logical enrollment (with its own Idempotency-Key), or one racer (without one)."""

    scope: Scope
    course: PaidCourse
    student_id: str
    idempotency_key: str | None
    label: str  # "client.index", or "race pair.racer"
    outcomes: list[str] = field(default_factory=list)
    answer: Answer | None = None
    gave_up: str | None = None
    seconds: float = 0.0

    @property
    def path(self) -> str:
        return "/enrollments"

    @property
    def method(self) -> str:
        return "POST"

    @property
    def kind(self) -> str | None:
        return "enroll" if self.idempotency_key else "race"

    @property
    def body(self) -> bytes:
        return json.dumps(
            {
                "student_id": self.student_id,
                "course_id": self.course.id,
                "payment_method_id": PAYMENT_METHOD,
            }
        ).encode()

    @property
    def final(self) -> str:
        return self.outcomes[-1] if self.outcomes else "not sent"

    def enrollment(self) -> dict[str, Any] | None:
        """The enrollment a final 201 answered with."""
        if self.answer is None or self.answer.status != 201 or not self.final.startswith("201"):
            return None
        document = self.answer.json()
        return document if isinstance(document, dict) else None


@dataclass(slots=True)
class RacePair:
    scope: Scope
    course: PaidCourse
    student_id: str
    wave: int  # 0: while Stripe is slow and failing, 1: after
    racers: list[Enrollment]


@dataclass(slots=True)
class Phase:
    """The enrollment phase's plan, and what happened to it."""

    courses: list[PaidCourse]
    enrollments: list[list[Enrollment]]  # per client
    pairs: list[RacePair]
    faults: list[str] = field(default_factory=list)  # what was injected, when
    fault_problems: list[str] = field(default_factory=list)
    begun: threading.Event = field(default_factory=threading.Event)

    @property
    def every(self) -> list[Enrollment]:
        return [enrollment for mine in self.enrollments for enrollment in mine]

    def started(self, logical: Logical) -> None:
        """`run_client`'s hook: the first enrollment sent starts the faults and the racers."""
        if isinstance(logical, Enrollment):
            self.begun.set()


def _step(
    scope: Scope, method: str, path: str, body: dict[str, Any], key: str | None = None
) -> Step:
    return Step(scope, method, path, json.dumps(body).encode(), key)


def _paid_course(scope: Scope, number: int, run_id: str) -> Step:
    body = {
        "title": f"Paid {run_id} {number}",
        "description": "Load test: paid enrollments.",
        "price": PRICE,
        "currency": CURRENCY,
        "metadata": {"load_paid_run": run_id},
    }
    return _step(scope, "POST", "/courses", body, f"load-{run_id}-paid-{number}")


def prepare(
    base: Base,
    scopes: list[Scope],
    *,
    per_scope: list[int],
    recorder: Recorder,
    budget: Budget,
    settings: Settings,
) -> tuple[list[PaidCourse], list[list[str]]]:
    """In each scope a published paid course and `per_scope[i]` students (all with keys, retried
    as any create). Raises SetupError when one of them cannot be made."""
    local = threading.local()
    connections: list[Connection] = []
    lock = threading.Lock()

    def run(step: Step) -> Step:
        if not hasattr(local, "connection"):
            local.connection = Connection(base, 30.0, recorder, "setup")
            with lock:
                connections.append(local.connection)
        perform(step, local.connection, budget, settings, abandon=0.0)
        return step

    run_id = settings.run_id
    try:
        with ThreadPoolExecutor(SETUP_PARALLEL) as pool:
            made = list(pool.map(run, [_paid_course(scope, n, run_id) for n, scope in
                                       enumerate(scopes)]))  # fmt: skip
            ids = [step.result(201)["id"] for step in made]
            publish = [
                _step(
                    scope, "PATCH", f"/courses/{course}", {"status": "published"}, f"pub-{course}"
                )
                for scope, course in zip(scopes, ids, strict=True)
            ]
            for step in pool.map(run, publish):
                if step.result(200).get("status") != "published":
                    raise SetupError(f"PATCH {step.path} on {step.scope.name}: not published")
            students = [
                [
                    _step(
                        scope,
                        "POST",
                        "/students",
                        {"email": f"load-{run_id}-{n}-{s}@example.com", "name": f"Student {s}"},
                        f"load-{run_id}-stu-{n}-{s}",
                    )
                    for s in range(count)
                ]
                for n, (scope, count) in enumerate(zip(scopes, per_scope, strict=True))
            ]
            done = list(pool.map(run, [step for mine in students for step in mine]))
    finally:
        for connection in connections:
            connection.close()
    found = iter(step.result(201)["id"] for step in done)
    courses = [PaidCourse(scope, course) for scope, course in zip(scopes, ids, strict=True)]
    return courses, [[next(found) for _ in range(count)] for count in per_scope]


def plan(
    work: list[list[Create]],
    courses: list[PaidCourse],
    students: list[list[str]],
    *,
    per_client: list[int],
    pairs: int,
    racers: int,
    run_id: str,
) -> Phase:
    """Each client's enrollments in its own scope's paid course, one fresh student each, and the
    racer pairs spread over the scopes (even pairs race while Stripe is slow, odd ones after)."""
    course_of = {course.scope.name: course for course in courses}
    left = {course.scope.name: iter(mine) for course, mine in zip(courses, students, strict=True)}
    enrollments = [
        [
            Enrollment(
                scope,
                course_of[scope.name],
                next(left[scope.name]),
                f"load-{run_id}-enr-{client}.{index}",
                f"{client}.{index}",
            )
            for index in range(count)
        ]
        for client, (scope, count) in enumerate(
            zip((mine[0].scope for mine in work), per_client, strict=True)
        )
    ]
    raced = []
    for number in range(pairs):
        course = courses[number % len(courses)]
        student = next(left[course.scope.name])
        raced.append(
            RacePair(
                course.scope,
                course,
                student,
                number % 2,
                [
                    Enrollment(course.scope, course, student, None, f"race {number}.{racer}")
                    for racer in range(racers)
                ],
            )
        )
    return Phase(courses, enrollments, raced)


def students_needed(
    work: list[list[Create]], scopes: list[Scope], *, per_client: list[int], pairs: int
) -> list[int]:
    """How many students each scope needs: one per enrollment and one per racer pair."""
    counts = dict.fromkeys((scope.name for scope in scopes), 0)
    for mine, count in zip(work, per_client, strict=True):
        counts[mine[0].scope.name] += count
    for number in range(pairs):
        counts[scopes[number % len(scopes)].name] += 1
    return [counts[scope.name] for scope in scopes]


def interleave(creates: list[Create], enrollments: list[Enrollment], client: int) -> list[Logical]:
    """A client's creates with its enrollments among them, at places that differ from client to
    client, so that the enrollments are spread over the load rather than sent all at once."""
    work: list[Logical] = list(creates)
    places = len(creates) + 1
    at = sorted((client + index * places // max(1, len(enrollments))) % places
                for index in range(len(enrollments)))  # fmt: skip
    for place, enrollment in zip(reversed(at), reversed(enrollments), strict=True):
        work.insert(place, enrollment)
    return work


class Faults:
    """Drives the local Stripe server's `/_local/faults` through `SCHEDULE` once the first
    enrollment is sent, and releases the racers' waves; always leaves Stripe healthy."""

    def __init__(self, stripe_url: str | None, phase: Phase, *, deadline: float) -> None:
        self._url = stripe_url
        self._phase = phase
        self._deadline = deadline
        self.waves = (threading.Event(), threading.Event())

    def _post(self, settings: dict[str, int]) -> None:
        assert self._url is not None  # noqa: S101 - only called with a server
        parts = urlsplit(self._url)
        connection = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=5)
        try:
            connection.request(
                "POST",
                "/_local/faults",
                body=json.dumps(settings).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise OSError(f"status {response.status}")
        finally:
            connection.close()

    def run(self) -> None:
        phase = self._phase
        try:
            if not phase.begun.wait(max(0.0, self._deadline - time.monotonic())):
                return
            started = time.monotonic()
            for at, settings in SCHEDULE if self._url else ():
                wait = started + at - time.monotonic()
                if time.monotonic() + wait >= self._deadline:
                    break
                time.sleep(max(0.0, wait))
                try:
                    self._post(settings)
                except OSError as error:
                    phase.fault_problems.append(f"POST /_local/faults {settings}: {error}")
                    break
                shown = ", ".join(f"{name} {value}" for name, value in settings.items())
                phase.faults.append(f"+{time.monotonic() - started:.1f}s {shown}")
                self.waves[0].set()
        finally:
            if self._url:
                try:
                    self._post({"delay_ms": 0, "fail_next": 0})
                except OSError as error:
                    phase.fault_problems.append(f"could not clear the faults: {error}")
            for wave in self.waves:
                wave.set()

    def racer_threads(
        self,
        connection: Callable[[], Connection],
        budget: Budget,
        settings: Settings,
    ) -> list[threading.Thread]:
        """One thread per racer: each pair's racers wait for their wave, then send together."""
        threads = []
        for number, pair in enumerate(self._phase.pairs):
            barrier = threading.Barrier(len(pair.racers))
            wave = self.waves[pair.wave]
            for racer in pair.racers:
                threads.append(
                    threading.Thread(
                        target=_race,
                        args=(racer, connection(), budget, settings),
                        kwargs={"wave": wave, "barrier": barrier},
                        name=f"racer-{number}",
                        daemon=True,
                    )
                )
        return threads


def _race(
    racer: Enrollment,
    connection: Connection,
    budget: Budget,
    settings: Settings,
    *,
    wave: threading.Event,
    barrier: threading.Barrier,
) -> None:
    try:
        if not wave.wait(min(WAVE_TIMEOUT, max(0.0, settings.deadline - time.monotonic()))):
            racer.gave_up = "its wave never started"
            return
        with contextlib.suppress(threading.BrokenBarrierError):  # the others are gone: race
            barrier.wait(BARRIER_TIMEOUT)
        perform(racer, connection, budget, settings, abandon=0.0)
    finally:
        connection.close()
