"""The load: clients making logical creates with retries, and list readers paging beside them."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from loadtest.accounts import Budget, Scope
from loadtest.transport import Answer, Connection, NoAnswer

CATEGORIES = ("python", "data-science", "design", "devops")
STATUSES = ("draft", "published", "archived")
PRICES = (0, 49.99, 120)  # free, cents, whole: all valid in USD
BACKOFF_BASE = 0.1  # seconds; full jitter, doubling per attempt
BACKOFF_CAP = 5.0
RETRY_AFTER_CAP = 10.0  # a 429's Retry-After may be most of a minute: come back sooner, bounded
CREATE_SHARE = 0.9  # of a scope's limit per minute: a margin for the clock and what is in flight
READ_SHARE = 0.5  # readers never take the creates' room
READ_ATTEMPTS = 5
MAX_WALKS = 10_000
MAX_PAGES = 200
IN_PROGRESS = "idempotency_request_in_progress"


def every_filter() -> list[dict[str, str]]:
    """No filter, each status, each category, and each category with each status."""
    return [
        {},
        *({"status": status} for status in STATUSES),
        *({"category": category} for category in CATEGORIES),
        *(
            {"category": category, "status": status}
            for category in CATEGORIES
            for status in STATUSES
        ),
    ]


@dataclass(frozen=True, slots=True)
class Settings:
    run_id: str
    max_attempts: int
    abandon: float  # the share of first attempts hung up on right after sending
    deadline: float  # time.monotonic() after which nothing new is sent


def _uniform(low: float, high: float) -> float:
    return random.uniform(low, high)  # noqa: S311 - jitter, not a secret


def retryable(answer: Answer) -> bool:
    """What a careful client retries with the same Idempotency-Key (docs/api.md §6, §7)."""
    if answer.status >= 500 or answer.status == 429:
        return True
    return answer.status == 409 and answer.error_code == IN_PROGRESS


def backoff(attempt: int, answer: Answer | None) -> float:
    """Full jitter (a random wait up to an exponentially growing cap), so retries of clients
    that failed together do not come back together; never shorter than a `Retry-After` (a 429's,
    or a 502/503's), capped."""
    after = None if answer is None else answer.header("Retry-After")
    if answer is not None and (answer.status == 429 or after is not None):
        try:
            wait = float(after or 1)
        except ValueError:
            wait = 1.0
        return min(max(wait, 0.0), RETRY_AFTER_CAP) + _uniform(0, 0.5)
    return _uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def pause(seconds: float, deadline: float) -> bool:
    """Sleep, but not past the deadline; False when the deadline has come."""
    time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))
    return time.monotonic() < deadline


def label(answer: Answer) -> str:
    """`201`, `201 replayed`, `409 idempotency_request_in_progress`, `502`…"""
    parts = [str(answer.status)]
    if answer.replayed:
        parts.append("replayed")
    if answer.status >= 400 and answer.error_code:
        parts.append(answer.error_code)
    return " ".join(parts)


@dataclass(slots=True)
class Create:
    """One logical create: one Idempotency-Key, one body, as many attempts as it takes."""

    client: int
    index: int
    scope: Scope
    load_key: str
    idempotency_key: str
    category: str
    body: bytes
    outcomes: list[str] = field(default_factory=list)  # every attempt's label or NoAnswer kind
    answer: Answer | None = None  # the last HTTP answer
    gave_up: str | None = None  # why retrying stopped while the answer was retryable
    seconds: float = 0.0  # first attempt to final outcome

    @property
    def path(self) -> str:
        return "/courses"

    @property
    def method(self) -> str:
        return "POST"

    @property
    def kind(self) -> str | None:
        return None  # the client's connection's: "create"

    @property
    def final(self) -> str:
        return self.outcomes[-1] if self.outcomes else "not sent"

    def course(self) -> dict[str, Any] | None:
        """The course a final 201 answered with (whoever's it is)."""
        if self.answer is None or self.answer.status != 201 or not self.final.startswith("201"):
            return None
        course = self.answer.json()
        if not isinstance(course, dict) or not isinstance(course.get("metadata"), dict):
            return None
        return course


def plan(scopes: list[Scope], clients: int, creates: int, run_id: str) -> list[list[Create]]:
    """Every client's creates. Clients are spread over the scopes in proportion to their limits,
    and categories and prices vary so that every filtered list has something in it."""
    slots = [scope for scope in scopes for _ in range(max(1, scope.limit // 60))]
    work: list[list[Create]] = []
    for client in range(clients):
        scope = slots[client % len(slots)]
        mine = []
        for index in range(creates):
            number = client * creates + index
            load_key = f"{client}.{index}"
            category = CATEGORIES[number % len(CATEGORIES)]
            body = {
                "title": f"Load {run_id} {load_key}",
                "description": "A course made by the load test.",
                "price": PRICES[number % len(PRICES)],
                "currency": "usd",
                "category": category,
                "metadata": {"load_run": run_id, "load_key": load_key},
            }
            mine.append(
                Create(
                    client=client,
                    index=index,
                    scope=scope,
                    load_key=load_key,
                    idempotency_key=f"load-{run_id}-{load_key}",
                    category=category,
                    body=json.dumps(body).encode(),
                )
            )
        work.append(mine)
    return work


class Logical(Protocol):
    """One logical request (a create, an enrollment, a racer): the same bytes and the same
    Idempotency-Key (or none) on every attempt, and what came back."""

    outcomes: list[str]
    answer: Answer | None
    gave_up: str | None
    seconds: float

    @property
    def scope(self) -> Scope: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def body(self) -> bytes: ...
    @property
    def path(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def kind(self) -> str | None: ...  # what the table counts its attempts as


def perform(
    logical: Logical,
    connection: Connection,
    budget: Budget,
    settings: Settings,
    *,
    abandon: float | None = None,
) -> None:
    """Send the same request with the same key until a final answer, bounded in attempts and
    time: retried on a 5xx, a 409 in progress, a 429, a timeout, a reset or refused connection.
    `abandon` (the settings' share unless given) of first attempts are hung up on."""
    started = time.monotonic()
    key = logical.idempotency_key
    headers = {} if key is None else {"Idempotency-Key": key}
    share = settings.abandon if abandon is None else abandon
    for attempt in range(settings.max_attempts):
        if not budget.take(logical.scope, CREATE_SHARE, settings.deadline):
            logical.gave_up = "deadline"
            break
        answer: Answer | None = None
        try:
            answer = connection.send(
                logical.method,
                logical.path,
                secret=logical.scope.secret,
                scope=logical.scope.name,
                body=logical.body,
                headers=headers,
                abandon=attempt == 0 and _uniform(0, 1) < share,
                retry=attempt > 0,
                kind=logical.kind,
            )
        except NoAnswer as failure:
            logical.outcomes.append(failure.kind)
        else:
            logical.answer = answer
            logical.outcomes.append(label(answer))
            if not retryable(answer):
                break
        if attempt + 1 == settings.max_attempts:
            logical.gave_up = f"{settings.max_attempts} attempts"
        elif not pause(backoff(attempt, answer), settings.deadline):
            logical.gave_up = "deadline"
            break
    logical.seconds = time.monotonic() - started


def run_client(
    work: Sequence[Logical],
    connection: Connection,
    budget: Budget,
    settings: Settings,
    go: threading.Event,
    *,
    started: Callable[[Logical], None] | None = None,
) -> None:
    """One client's logical requests, one after another; `started` hears of each first."""
    go.wait()
    try:
        for logical in work:
            if started is not None:
                started(logical)
            perform(logical, connection, budget, settings)
    finally:
        connection.close()


def fetch(
    connection: Connection,
    scope: Scope,
    path: str,
    *,
    budget: Budget,
    share: float,
    settings: Settings,
    attempts: int,
    stop: threading.Event | None = None,
) -> tuple[Answer | None, str]:
    """A GET with the same retries as a create; the final answer (None without one) and its
    label or NoAnswer kind."""
    answer: Answer | None = None
    outcome = "not sent"
    for attempt in range(attempts):
        if not budget.take(scope, share, settings.deadline, stop):
            if attempt == 0:
                outcome = "stopped" if stop is not None and stop.is_set() else "deadline"
            break
        try:
            answer = connection.send(
                "GET", path, secret=scope.secret, scope=scope.name, retry=attempt > 0
            )
        except NoAnswer as failure:
            answer, outcome = None, failure.kind
        else:
            outcome = label(answer)
            if not retryable(answer):
                break
        if attempt + 1 < attempts and not pause(backoff(attempt, answer), settings.deadline):
            break
    return answer, outcome


def list_path(filters: dict[str, str], limit: int, after: str | None) -> str:
    query = {"limit": str(limit), **filters}
    if after is not None:
        query["starting_after"] = after
    return "/courses?" + urlencode(query)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool
    total_count: int

    @classmethod
    def parse(cls, document: Any) -> Page | None:
        """A well-formed list object (docs/api.md §9) of items with ids, else None."""
        if not isinstance(document, dict) or document.get("object") != "list":
            return None
        items, has_more = document.get("data"), document.get("has_more")
        total = document.get("total_count")
        if not isinstance(items, list) or not isinstance(has_more, bool):
            return None
        if not isinstance(total, int) or isinstance(total, bool):
            return None
        if not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in items):
            return None
        return cls(items, has_more, total)

    @property
    def last(self) -> str:
        return str(self.items[-1]["id"])

    def problems(self, filters: dict[str, str], limit: int, after: str | None) -> list[str]:
        """What is wrong with this page, one of a walk that reached it with `after`."""
        problems = []
        for name, wanted in filters.items():
            wrong = [str(item["id"]) for item in self.items if item.get(name) != wanted]
            if wrong:
                problems.append(
                    f"{len(wrong)} item(s) with {name} other than {wanted} ({wrong[0]})"
                )
        order = ([after] if after else []) + [str(item["id"]) for item in self.items]
        if any(newer <= older for newer, older in itertools.pairwise(order)):
            problems.append("ids not strictly newest first (or a repeat of an earlier page)")
        if len(self.items) > limit or (self.has_more and len(self.items) != limit):
            problems.append(
                f"{len(self.items)} items on a page of limit {limit} with has_more={self.has_more}"
            )
        return problems


@dataclass(slots=True)
class ReaderFindings:
    walks: int = 0
    pages: int = 0
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, walks: int = 0, pages: int = 0, problem: str | None = None) -> None:
        with self.lock:
            self.walks += walks
            self.pages += pages
            if problem is not None:
                self.problems.append(problem)


def _walk(
    scope: Scope,
    filters: dict[str, str],
    *,
    limit: int,
    connection: Connection,
    budget: Budget,
    settings: Settings,
    stop: threading.Event,
    findings: ReaderFindings,
) -> None:
    after: str | None = None
    seen = 0
    for _ in range(MAX_PAGES):
        if stop.is_set():
            return
        path = list_path(filters, limit, after)
        answer, outcome = fetch(
            connection,
            scope,
            path,
            budget=budget,
            share=READ_SHARE,
            settings=settings,
            attempts=READ_ATTEMPTS,
            stop=stop,
        )
        if answer is None or answer.status != 200:
            if outcome not in ("stopped", "deadline"):
                findings.add(problem=f"GET {path} on {scope.name}: {outcome}")
            return
        page = Page.parse(answer.json())
        findings.add(pages=1)
        if page is None:
            findings.add(problem=f"GET {path} on {scope.name}: not a well-formed list")
            return
        problems = page.problems(filters, limit, after)
        # Sound while the load runs: it only creates (no delete, no status or category change),
        # and the items of earlier pages were committed before this request was sent, so the
        # count this request reads includes them. Items of this page may be newer than the count
        # it read, and are left out.
        if page.total_count < seen:
            problems.append(
                f"total_count {page.total_count} below the {seen} items of earlier pages"
            )
        if problems:
            findings.add(problem=f"GET {path} on {scope.name}: {'; '.join(problems)}")
            return
        seen += len(page.items)
        if not page.has_more:
            return
        after = page.last


def run_reader(
    number: int,
    scopes: list[Scope],
    *,
    connection: Connection,
    budget: Budget,
    settings: Settings,
    stop: threading.Event,
    findings: ReaderFindings,
) -> None:
    """Walk filtered lists, page by page, until the creates are done."""
    filters = every_filter()
    try:
        for walk in range(MAX_WALKS):
            if stop.is_set() or time.monotonic() >= settings.deadline:
                return
            scope = scopes[(number + walk) % len(scopes)]
            chosen = filters[(number * 7 + walk) % len(filters)]
            limit = (3, 10, 100)[walk % 3]  # small pages exercise the cursors
            _walk(
                scope,
                chosen,
                limit=limit,
                connection=connection,
                budget=budget,
                settings=settings,
                stop=stop,
                findings=findings,
            )
            findings.add(walks=1)
    finally:
        connection.close()
