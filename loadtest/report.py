"""The run's figures: as a table on standard output, and as JSON."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from typing import Any

from loadtest.checks import Verdict
from loadtest.enrollments import Phase
from loadtest.stack import MemoryFigures
from loadtest.transport import Attempt
from loadtest.workload import Create

KINDS = {
    "setup": "setup (keys, students)",
    "create": "creates",
    "enroll": "enrollments",
    "race": "key-less racers",
    "list": "list readers",
    "burst": "Pro burst",
    "check": "checks (listing)",
}


def percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _row(attempts: list[Attempt]) -> dict[str, Any]:
    outcomes = Counter(attempt.outcome for attempt in attempts)
    answered = [attempt.ms for attempt in attempts if attempt.outcome.isdigit()]
    classes = Counter(
        outcome[0] + "xx" if outcome.isdigit() and outcome != "429" else outcome
        for outcome in (attempt.outcome for attempt in attempts)
    )
    p50, p99 = percentile(answered, 0.50), percentile(answered, 0.99)
    return {
        "sent": len(attempts),
        "retries": sum(1 for attempt in attempts if attempt.retry),
        "2xx": classes["2xx"],
        "4xx": classes["4xx"],
        "429": classes["429"],
        "5xx": classes["5xx"],
        "no_answer": sum(count for name, count in outcomes.items() if not name.isdigit()),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
        "statuses": dict(sorted(outcomes.items())),
    }


def figures(
    *,
    header: dict[str, Any],
    attempts: list[Attempt],
    creates: list[Create],
    phase: Phase,
    verdicts: list[Verdict],
    memory: MemoryFigures | None,
    examples: dict[str, list[str]],
    busiest: tuple[str, int, int],
    notes: list[str],
) -> dict[str, Any]:
    rows = {kind: _row([a for a in attempts if a.kind == kind]) for kind in KINDS}
    rows["total"] = _row(attempts)
    outcomes = Counter(attempt.outcome for attempt in attempts)
    seconds = [create.seconds * 1000 for create in creates if create.outcomes]
    finals = Counter(create.final for create in creates)
    enrolled = [e.seconds * 1000 for e in phase.every if e.outcomes]
    return {
        **header,
        "requests": rows,
        "logical_creates": {
            "count": len(creates),
            "final": dict(finals.most_common()),
            "p50_ms": percentile(seconds, 0.50),
            "p99_ms": percentile(seconds, 0.99),
        },
        "logical_enrollments": {
            "count": len(phase.every),
            "final": dict(Counter(e.final for e in phase.every).most_common()),
            "p50_ms": percentile(enrolled, 0.50),
            "p99_ms": percentile(enrolled, 0.99),
        },
        "racers": {
            "pairs": len(phase.pairs),
            "final": dict(
                Counter(r.final for pair in phase.pairs for r in pair.racers).most_common()
            ),
        },
        "stripe_faults": phase.faults,
        "retries": rows["total"]["retries"],
        "connection_resets": outcomes["reset"],
        "connections_refused": outcomes["refused"],
        "timeouts": outcomes["timeout"],
        "abandoned": outcomes["abandoned"],
        "rate_limited_load_requests": sum(
            1 for a in attempts if a.outcome == "429" and a.kind != "burst"
        ),
        "busiest_account_minute": {
            "scope": busiest[0],
            "requests": busiest[1],
            "limit": busiest[2],
        },
        "stack_memory": None if memory is None or not memory.samples else asdict(memory),
        "failure_examples": examples,
        "invariants": [asdict(verdict) for verdict in verdicts],
        "passed": all(verdict.passed is not False for verdict in verdicts),
        "notes": notes,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _s(milliseconds: float | None) -> str:
    return "-" if milliseconds is None else f"{milliseconds / 1000:.1f} s"


def _finals(part: dict[str, Any]) -> str:
    return ", ".join(f"{count} x {name}" for name, count in part["final"].items()) or "none"


def table(data: dict[str, Any]) -> str:
    lines = [
        f"LearnFlow load test, run {data['run']}, against {data['api']}",
        f"{data['clients']} clients x {data['creates']} creates and {data['enrollments']} paid "
        f"enrollments on {data['load_accounts']}, "
        f"{data['readers']} list readers; load {data['load_seconds']:.1f} s, "
        f"checks {data['check_seconds']:.1f} s",
        "",
        f"  {'':<20}{'sent':>7}{'2xx':>7}{'4xx':>6}{'429':>6}{'5xx':>6}{'no answer':>11}"
        f"{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for kind, title in [*KINDS.items(), ("total", "total")]:
        row = data["requests"][kind]
        lines.append(
            f"  {title:<20}{row['sent']:>7}{row['2xx']:>7}{row['4xx']:>6}{row['429']:>6}"
            f"{row['5xx']:>6}{row['no_answer']:>11}{_ms(row['p50_ms']):>9}{_ms(row['p99_ms']):>9}"
        )
    total = data["requests"]["total"]["statuses"]
    statuses = ", ".join(f"{name} x {count}" for name, count in total.items())
    logical = data["logical_creates"]
    finals = ", ".join(f"{count} x {name}" for name, count in logical["final"].items())
    busiest = data["busiest_account_minute"]
    enrolling = data["logical_enrollments"]
    lines += [
        "",
        f"  statuses            {statuses}",
        f"  logical creates     {logical['count']}: {finals}; first attempt to final answer "
        f"p50 {_s(logical['p50_ms'])}, p99 {_s(logical['p99_ms'])}",
        f"  logical enrollments {enrolling['count']}: {_finals(enrolling)}; first attempt to "
        f"final answer p50 {_s(enrolling['p50_ms'])}, p99 {_s(enrolling['p99_ms'])}",
        f"  racers              {data['racers']['pairs']} pairs: {_finals(data['racers'])}",
        f"  Stripe faults       {'; '.join(data['stripe_faults']) or 'none injected'}",
        f"  retries             {data['retries']} (creates "
        f"{data['requests']['create']['retries']}, enrollments "
        f"{data['requests']['enroll']['retries']}, racers {data['requests']['race']['retries']}"
        f", readers {data['requests']['list']['retries']}"
        f", checks {data['requests']['check']['retries']})",
        f"  connection resets   {data['connection_resets']}   refused "
        f"{data['connections_refused']}   timeouts {data['timeouts']}   "
        f"hung up on purpose {data['abandoned']}",
        f"  rate limit          busiest account-minute {busiest['requests']} of "
        f"{busiest['limit']}; {data['rate_limited_load_requests']} x 429 outside the burst",
    ]
    memory = data["stack_memory"]
    if memory is None:
        lines.append(
            "  stack memory        not measured (the stack's process is not on this machine)"
        )
    else:
        lines.append(
            f"  stack memory        peak {memory['peak_mib']:.1f} MiB RSS over "
            f"{memory['processes_at_peak']} processes (start {memory['first_mib']:.1f}, end "
            f"{memory['last_mib']:.1f}; serve pid {memory['pid']}, {memory['samples']} samples)"
        )
    for outcome, details in sorted(data["failure_examples"].items()):
        lines += [f"  e.g. {outcome:<14} {detail}" for detail in details]
    lines += [f"  note                {note}" for note in data["notes"]]
    lines += ["", "Invariants"]
    for verdict in data["invariants"]:
        mark = {True: "PASS", False: "FAIL", None: "SKIP"}[verdict["passed"]]
        lines.append(f"  {mark}  {verdict['name']}: {verdict['detail']}")
    lines.append("")
    lines.append("every invariant holds" if data["passed"] else "AN INVARIANT IS BROKEN")
    return "\n".join(lines)
