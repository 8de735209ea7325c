"""The Pro burst: its limit plus 20 requests, 16 at a time, at a key nothing else uses.

Windows are fixed and aligned to the UTC minute, and every answer says which one counted it
(`X-RateLimit-Reset`, the window's end). So the answers are grouped by that header, and in every
window exactly min(requests, limit) must pass. That is sound only when (1) nothing else uses the
key, so each window's count starts at zero; (2) every request got an answer carrying the header
(a timed-out request may or may not have been counted, so one unanswered request makes the burst
inconclusive, reported as a failure); (3) some window received more than the limit, else nothing
was refused and the limit went untested. The burst therefore starts with at least `margin`
seconds left in the minute; should it still cross into the next minute, it tops that window up
until one window holds limit + 20 requests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from loadtest.accounts import WINDOW, Scope
from loadtest.checks import Verdict
from loadtest.transport import Base, Connection, NoAnswer, Recorder

PARALLEL = 16
OVER = 20  # requests beyond the limit: these must be refused
MAX_ROUNDS = 4  # the first burst and up to three top-ups
PATH = "/courses?limit=1"


@dataclass(frozen=True, slots=True)
class Shot:
    outcome: str  # the status, or the NoAnswer kind
    status: int | None
    limit: str | None
    remaining: str | None
    reset: int | None
    retry_after: str | None


@dataclass(slots=True)
class Burst:
    scope: Scope
    shots: list[Shot]
    waited: float  # seconds spent waiting for a fresh window
    rounds: int

    @property
    def target(self) -> int:
        return self.scope.limit + OVER


def _reset(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _fire(
    base: Base, scope: Scope, count: int, *, timeout: float, recorder: Recorder, deadline: float
) -> list[Shot]:
    lock = threading.Lock()
    connections: dict[int, Connection] = {}

    def one(_: int) -> Shot:
        if time.monotonic() >= deadline:  # not sent: the burst is then inconclusive
            return Shot("deadline", None, None, None, None, None)
        with lock:
            connection = connections.setdefault(
                threading.get_ident(), Connection(base, timeout, recorder, "burst")
            )
        try:
            answer = connection.send("GET", PATH, secret=scope.secret, scope=scope.name)
        except NoAnswer as failure:
            return Shot(failure.kind, None, None, None, None, None)
        return Shot(
            outcome=str(answer.status),
            status=answer.status,
            limit=answer.header("X-RateLimit-Limit"),
            remaining=answer.header("X-RateLimit-Remaining"),
            reset=_reset(answer.header("X-RateLimit-Reset")),
            retry_after=answer.header("Retry-After"),
        )

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for connection in connections.values():
            connection.close()


def _windows(shots: list[Shot]) -> dict[int, list[Shot]]:
    windows: dict[int, list[Shot]] = {}
    for shot in shots:
        if shot.reset is not None:
            windows.setdefault(shot.reset, []).append(shot)
    return windows


def run(
    base: Base, scope: Scope, *, recorder: Recorder, margin: float, timeout: float, deadline: float
) -> Burst:
    """Wait for a minute with `margin` seconds left, burst, and top up a window if needed."""
    left = WINDOW - time.time() % WINDOW
    waited = 0.0
    if left < margin:
        waited = left + 0.25  # just past the boundary, so the whole burst has the new minute
        time.sleep(waited)
    shots = _fire(
        base, scope, scope.limit + OVER, timeout=timeout, recorder=recorder, deadline=deadline
    )
    burst = Burst(scope, shots, waited, 1)
    while burst.rounds < MAX_ROUNDS and time.monotonic() < deadline:
        windows = _windows(burst.shots)
        if len(windows) == 0 or any(shot.reset is None for shot in burst.shots):
            break  # inconclusive whatever follows
        if max(len(group) for group in windows.values()) >= burst.target:
            break
        top_up = burst.target - len(windows[max(windows)])
        burst.shots += _fire(
            base, scope, top_up, timeout=timeout, recorder=recorder, deadline=deadline
        )
        burst.rounds += 1
    return burst


def _window_problems(reset: int, shots: list[Shot], limit: int) -> list[str]:
    at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%SZ")
    passed = [shot for shot in shots if shot.status == 200]
    refused = [shot for shot in shots if shot.status == 429]
    others = Counter(shot.outcome for shot in shots if shot.status not in (200, 429))
    problems = []
    if others:
        problems.append(f"window to {at}: answers other than 200 or 429: {dict(others)}")
    if len(passed) != min(len(shots), limit):
        problems.append(
            f"window to {at}: {len(passed)} of {len(shots)} passed, "
            f"expected {min(len(shots), limit)}"
        )
    remaining = [shot.remaining for shot in passed]
    if len(set(remaining)) != len(remaining):
        problems.append(
            f"window to {at}: {len(set(remaining))} distinct X-RateLimit-Remaining "
            f"among {len(passed)} passes"
        )
    if any(shot.limit != str(limit) for shot in shots):
        problems.append(f"window to {at}: X-RateLimit-Limit missing or not {limit}")
    bad = [
        shot for shot in refused if not (shot.retry_after or "").isdigit() or shot.remaining != "0"
    ]
    if bad:
        problems.append(
            f"window to {at}: {len(bad)} 429(s) without Retry-After or with "
            "X-RateLimit-Remaining other than 0"
        )
    return problems


def verdict(burst: Burst | None, skipped: str) -> Verdict:
    name = "Pro burst: exactly the limit (300) passes in a window of limit + 20 requests"
    if burst is None:
        return Verdict(name, None, f"skipped ({skipped})")
    limit, shots = burst.scope.limit, burst.shots
    blind = Counter(shot.outcome for shot in shots if shot.reset is None)
    if blind:
        return Verdict(
            name,
            False,
            f"{sum(blind.values())} of {len(shots)} requests got no answer with "
            f"X-RateLimit-Reset ({dict(blind)}): which window counted them cannot be told",
        )
    windows = _windows(shots)
    problems = [
        problem
        for reset, group in sorted(windows.items())
        for problem in _window_problems(reset, group, limit)
    ]
    full = [group for group in windows.values() if len(group) >= burst.target]
    if not full:
        sizes = ", ".join(str(len(group)) for _, group in sorted(windows.items()))
        problems.append(
            f"no window received {burst.target} requests (windows got {sizes}): "
            "the limit was never reached"
        )
    passed = sum(1 for group in full for shot in group if shot.status == 200)
    refused = sum(1 for group in full for shot in group if shot.status == 429)
    detail = f"{len(shots)} requests in {len(windows)} window(s)"
    if full:
        detail += f"; in the one of {len(full[0])}: {passed} passed, {refused} refused 429"
    if burst.waited:
        detail += f" (waited {burst.waited:.0f} s for a fresh minute)"
    if problems:
        detail += "; " + "; ".join(problems)
    return Verdict(name, not problems, detail)
