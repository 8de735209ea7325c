"""`python -m loadtest` (`make load`): options, the stack under load, and one run end to end."""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest import burst, checks, enrollment_checks, enrollments, report
from loadtest.accounts import PLAN_LIMITS, Admin, Budget, KeysFile, Scope, SetupError
from loadtest.stack import MemorySampler, listening_pid, own_stack
from loadtest.transport import LOOPBACK, Base, Connection, Recorder
from loadtest.workload import (
    CREATE_SHARE,
    Create,
    Logical,
    ReaderFindings,
    Settings,
    every_filter,
    fetch,
    plan,
    run_client,
    run_reader,
)

PROBE_ATTEMPTS = 5
SETUP_TIMEOUT = 120.0  # for the key probes; the CLI calls have their own bound
CHECK_SHARE_OF_TIMEOUT = 1 / 3  # the load stops early enough to leave the checks this much
JOIN_SLACK = 5.0


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="A hostile load test of the LearnFlow API, with invariants checked at the "
        "end. Without --api and --keys-file it starts its own `learnflow serve`.",
    )
    add = parser.add_argument
    add("--api", metavar="URL", help="the API base URL (default: the keys file's)")
    add("--keys-file", type=Path, metavar="PATH", help="`learnflow serve --keys-file` output")
    add("--clients", type=_positive(int), default=100, help="concurrent clients (100)")
    add("--creates", type=_positive(int), default=5, help="logical creates per client (5)")
    add("--readers", type=int, default=4, help="list readers beside them (4)")
    add("--clients-per-account", type=_positive(int), default=10, help="(10)")
    add("--timeout", type=_positive(float), default=300.0, help="overall deadline, s (300)")
    add("--request-timeout", type=_positive(float), default=30.0, help="per request, s (30)")
    add("--max-attempts", type=_positive(int), default=20, help="per request (20)")
    add("--abandon", type=float, default=0.05, help="share of creates hung up on once (0.05)")
    add("--enrollments", type=int, default=1, help="paid enrollments per client, 0: none (1)")
    add("--enroll-share", type=float, default=0.5, help="share of clients that enroll (0.5)")
    add("--race-pairs", type=int, default=4, help="student-course pairs raced key-less (4)")
    add("--racers", type=_positive(int), default=8, help="identical requests per pair (8)")
    add("--stripe-url", metavar="URL", help="the stack's local Stripe server (own stack: known)")
    add("--no-faults", action="store_true", help="leave the local Stripe server healthy")
    add("--burst-key", metavar="SECRET", help="a Pro key nothing else uses, for the burst")
    add("--burst-margin", type=float, default=20.0, help="seconds a minute must have left (20)")
    add("--no-burst", action="store_true", help="skip the Pro burst")
    add("--stack-pid", type=int, metavar="PID", help="the serve process, for its memory")
    add("--allow-remote", action="store_true", help="allow a host other than 127.0.0.1")
    add("--no-admin", action="store_true", help="use the keys file's keys, not fresh accounts")
    add("--settle", type=float, default=0.0, help="seconds to wait before the checks (0)")
    add("--json", type=Path, metavar="PATH", dest="json_path", help="write the figures here")
    return parser.parse_args(argv)


def _say(text: str) -> None:
    print(f"load: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """0 when every invariant holds, 1 when one breaks, 2 when the run could not start."""
    options = _options(argv)
    try:
        if options.api is None and options.keys_file is None:
            _say("starting learnflow serve --port 0 ...")
            with own_stack() as stack:
                if options.stripe_url is None:
                    options.stripe_url = stack.stripe_url
                code = _run(options, stack.keys_file, stack.process.pid)
                stack.keep_log = code != 0
            _say(
                f"learnflow serve stopped with status {stack.exit_code}"
                + (f"; its console log is kept at {stack.log}" if stack.keep_log else "")
            )
            return code
        if options.keys_file is None:
            raise SetupError("--api needs --keys-file (the keys to load it with)")
        return _run(options, KeysFile.read(options.keys_file), options.stack_pid)
    except SetupError as error:
        _say(str(error))
        return 2


@dataclass(slots=True)
class _Plan:
    scopes: list[Scope]
    burst: Scope | None
    skipped: str  # why there is no burst
    described: str  # the load accounts, for the table


def _given_burst(options: argparse.Namespace) -> Scope | None:
    """--burst-key, taken to be a Pro key (the burst checks its X-RateLimit-Limit)."""
    if options.no_burst or not options.burst_key:
        return None
    mode = "live" if "_live_" in options.burst_key else "test"
    return Scope("--burst-key", mode, options.burst_key, PLAN_LIMITS["pro"], "pro")


def _fallback(options: argparse.Namespace, keys: KeysFile, notes: list[str]) -> _Plan:
    """The keys file's own keys, where fresh accounts cannot be made (a remote API)."""
    every = keys.scopes()
    chosen = _given_burst(options)
    skipped = "--no-burst" if options.no_burst else ""
    if chosen is None and not options.no_burst:
        chosen = next((s for s in every if s.plan == "pro" and s.mode == "live"), None)
        if chosen is None:
            skipped = "the keys file has no Pro live key to burst"
        else:
            notes.append(
                "the burst uses the keys file's Pro live key: nothing else in this run uses it, "
                "but anyone else using it in the same minute breaks the count"
            )
    scopes = [scope for scope in every if chosen is None or scope.secret != chosen.secret]
    if not scopes:
        raise SetupError("the keys file leaves no key for the load")
    limits = ", ".join(f"{s.plan} {s.mode} {s.limit}" for s in scopes)
    paced = sum(int(s.limit * CREATE_SHARE) for s in scopes)
    needed = options.clients * options.creates + len(scopes) * len(every_filter())
    notes.append(
        f"no fresh accounts: the keys file's {len(scopes)} keys allow "
        f"{sum(s.limit for s in scopes)} requests a minute ({limits}); the clients pace "
        f"themselves to {paced} a minute, and the run needs at least {needed} requests "
        f"(about {math.ceil(needed / paced)} minute(s))"
    )
    return _Plan(scopes, chosen, skipped, f"{len(scopes)} keys of the keys file")


def _fresh(options: argparse.Namespace, keys: KeysFile, run_id: str) -> _Plan:
    """Fresh Pro accounts from the admin CLI: rate limits nothing else touches."""
    admin = Admin(keys.env)
    count = math.ceil(options.clients / options.clients_per_account)
    _say(f"creating {count} Pro account(s) and test keys with the learnflow CLI ...")
    scopes = admin.pro_scopes(count, run_id)
    chosen = _given_burst(options)
    if chosen is None and not options.no_burst:
        chosen = admin.pro_scope(f"load {run_id} burst")
    skipped = "--no-burst" if options.no_burst else ""
    return _Plan(scopes, chosen, skipped, f"{count} fresh Pro account(s) in test mode")


def _probe(
    base: Base, scopes: list[Scope], recorder: Recorder, budget: Budget, settings: Settings
) -> list[Scope]:
    """One list request per key: it must work, and it tells the key's real limit."""

    def one(scope: Scope) -> Scope:
        connection = Connection(base, 30.0, recorder, "setup")
        try:
            answer, outcome = fetch(
                connection,
                scope,
                "/courses?limit=1",
                budget=budget,
                share=1.0,
                settings=settings,
                attempts=PROBE_ATTEMPTS,
            )
        finally:
            connection.close()
        if answer is None or answer.status != 200:
            raise SetupError(f"the key for {scope.name} does not work: {outcome}")
        limit = answer.header("X-RateLimit-Limit") or ""
        return replace(scope, limit=int(limit)) if limit.isdigit() else scope

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, scopes))


def _stack_pid(base: Base, given: int | None, notes: list[str]) -> int | None:
    if given is not None:
        return given
    if not base.local:
        return None
    found = listening_pid(base.port)
    if found is None:
        notes.append(f"no process found listening on port {base.port}: memory not measured")
    return found


@dataclass(slots=True)
class _Load:
    findings: ReaderFindings
    burst: burst.Burst | None
    burst_error: str
    seconds: float


def _join(threads: list[threading.Thread], until: float) -> int:
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    return sum(1 for thread in threads if thread.is_alive())


def _load(
    base: Base,
    options: argparse.Namespace,
    *,
    work: list[list[Logical]],
    phase: enrollments.Phase,
    chosen: _Plan,
    recorder: Recorder,
    budget: Budget,
    settings: Settings,
    notes: list[str],
) -> _Load:
    go, stop = threading.Event(), threading.Event()
    result = _Load(ReaderFindings(), None, "", 0.0)

    def connection(kind: str) -> Connection:
        return Connection(base, options.request_timeout, recorder, kind)

    clients = [
        threading.Thread(
            target=run_client,
            args=(mine, connection("create"), budget, settings, go),
            kwargs={"started": phase.started},
            name=f"client-{number}",
            daemon=True,
        )
        for number, mine in enumerate(work)
    ]
    readers = [
        threading.Thread(
            target=run_reader,
            args=(number, chosen.scopes),
            kwargs={
                "connection": connection("list"),
                "budget": budget,
                "settings": settings,
                "stop": stop,
                "findings": result.findings,
            },
            name=f"reader-{number}",
            daemon=True,
        )
        for number in range(options.readers)
    ]

    def bursting(scope: Scope) -> None:
        try:
            result.burst = burst.run(
                base,
                scope,
                recorder=recorder,
                margin=options.burst_margin,
                timeout=options.request_timeout,
                deadline=settings.deadline,
            )
        except Exception as error:  # whatever it is, it is the burst's verdict, not a crash
            result.burst_error = f"the burst failed: {type(error).__name__}: {error}"

    faults = enrollments.Faults(
        None if options.no_faults else options.stripe_url, phase, deadline=settings.deadline
    )
    others = [threading.Thread(target=faults.run, name="faults", daemon=True), *readers]
    others += faults.racer_threads(lambda: connection("race"), budget, settings)
    if not phase.every:
        phase.begun.set()  # no enrollment to wait for: the racers go at once
    if chosen.burst is not None:
        others.append(threading.Thread(target=bursting, args=(chosen.burst,), daemon=True))
    started = time.monotonic()
    for thread in [*clients, *others]:
        thread.start()
    go.set()  # every client starts at once
    until = settings.deadline + options.request_timeout + JOIN_SLACK
    if left := _join(clients, until):
        notes.append(f"{left} client(s) still running at the deadline: their creates are cut short")
    stop.set()
    _join(others, until)
    result.seconds = time.monotonic() - started
    return result


def _phase(  # noqa: PLR0917 - the run's parts the enrollment phase is made of
    base: Base,
    options: argparse.Namespace,
    work: list[list[Create]],
    scopes: list[Scope],
    recorder: Recorder,
    budget: Budget,
    setup: Settings,
) -> enrollments.Phase:
    """The paid courses and students (made now, before any list reader walks), and the plan."""
    if options.enrollments < 0 or options.race_pairs < 0:
        raise SetupError("--enrollments and --race-pairs cannot be negative")
    if options.stripe_url is not None and Base.parse(options.stripe_url).host != LOOPBACK:
        raise SetupError("--stripe-url must be the local Stripe server on 127.0.0.1")
    if not options.enrollments and not options.race_pairs:
        return enrollments.Phase([], [[] for _ in work], [])
    used = list({mine[0].scope.name: mine[0].scope for mine in work}.values())
    share = min(1.0, max(0.0, options.enroll_share))
    shares = [int((n + 1) * share) - int(n * share) for n in range(len(work))]
    per_scope = enrollments.students_needed(
        work,
        used,
        per_client=[options.enrollments * enrolling for enrolling in shares],
        pairs=options.race_pairs,
    )
    _say(f"making {len(used)} paid course(s) and {sum(per_scope)} students ...")
    deadline = time.monotonic() + SETUP_TIMEOUT
    courses, students = enrollments.prepare(
        base,
        used,
        per_scope=per_scope,
        recorder=recorder,
        budget=budget,
        settings=replace(setup, deadline=deadline),
    )
    return enrollments.plan(
        work,
        courses,
        students,
        per_client=[options.enrollments * enrolling for enrolling in shares],
        pairs=options.race_pairs,
        racers=options.racers,
        run_id=setup.run_id,
    )


def _run(options: argparse.Namespace, keys: KeysFile, pid: int | None) -> int:
    try:
        base = Base.parse(options.api or keys.api)
    except ValueError as error:
        raise SetupError(str(error)) from None
    if not base.local and not options.allow_remote:
        raise SetupError(
            f"refusing to load {base.host}: only 127.0.0.1 is load-tested unless --allow-remote"
        )
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)
    setup = Settings(
        run_id, options.max_attempts, options.abandon, time.monotonic() + SETUP_TIMEOUT
    )
    recorder, budget, notes = Recorder(), Budget(), list[str]()
    pid = _stack_pid(base, pid, notes)
    sampler = MemorySampler(pid) if pid is not None else None
    with sampler or nullcontext():
        if keys.env and base.local and not options.no_admin:
            chosen = _fresh(options, keys, run_id)
        else:
            chosen = _fallback(options, keys, notes)
        chosen.scopes = _probe(base, chosen.scopes, recorder, budget, setup)
        work = plan(chosen.scopes, options.clients, options.creates, run_id)
        phase = _phase(base, options, work, chosen.scopes, recorder, budget, setup)
        mixed = [
            enrollments.interleave(mine, enrolling, client)
            for client, (mine, enrolling) in enumerate(zip(work, phase.enrollments, strict=True))
        ]
        # --timeout bounds the load and the checks together; the load stops early enough to
        # leave the checks a third of it (they get whatever the load leaves unused too)
        settings = replace(setup, deadline=time.monotonic() + options.timeout)
        load_settings = replace(
            settings, deadline=settings.deadline - options.timeout * CHECK_SHARE_OF_TIMEOUT
        )
        _say(
            f"run {run_id}: {options.clients} clients x {options.creates} creates and "
            f"{options.enrollments} paid enrollments, {len(phase.pairs)} racer pairs x "
            f"{options.racers}, {options.readers} readers"
            + (", Pro burst" if chosen.burst else "")
            + " ..."
        )
        load = _load(
            base,
            options,
            work=mixed,
            phase=phase,
            chosen=chosen,
            recorder=recorder,
            budget=budget,
            settings=load_settings,
            notes=notes,
        )
        time.sleep(options.settle)
        _say("checking ...")
        started = time.monotonic()
        used = list(
            {create.scope.name: create.scope for creates in work for create in creates}.values()
        )
        listings = checks.list_everything(
            base,
            used,
            recorder=recorder,
            budget=budget,
            settings=settings,
            timeout=options.request_timeout,
        )
        findings = enrollment_checks.gather(
            base,
            phase,
            stripe_url=options.stripe_url,
            recorder=recorder,
            budget=budget,
            settings=settings,
            timeout=options.request_timeout,
        )
        check_seconds = time.monotonic() - started
    creates = [create for creates in work for create in creates]
    paying = [*phase.every, *(racer for pair in phase.pairs for racer in pair.racers)]
    for what, logical in (("logical create", creates), ("enrollment or racer", paying)):
        if cut := sum(1 for one in logical if one.gave_up == "deadline" or not one.outcomes):
            notes.append(
                f"{cut} {what}(s) cut short by --timeout {options.timeout:.0f}: "
                "they fail the invariants; give a run of this size a longer --timeout"
            )
    burst_verdict = burst.verdict(load.burst, chosen.skipped)
    if load.burst_error:
        burst_verdict = checks.Verdict(burst_verdict.name, False, load.burst_error)
    verdicts = [
        checks.exactly_once(creates, listings, run_id),
        checks.counts_match(listings),
        burst_verdict,
        checks.final_answers(creates),
        checks.readers(load.findings),
    ]
    if phase.courses:
        verdicts += [
            enrollment_checks.exactly_once(phase, findings),
            enrollment_checks.one_charge_each(phase, findings),
            enrollment_checks.counts_agree(phase, findings),
            enrollment_checks.final_answers(phase),
            enrollment_checks.racers(phase),
        ]
    notes += [f"Stripe faults: {problem}" for problem in phase.fault_problems]
    busiest_name, busiest_count = budget.busiest()
    limits = {scope.name: scope.limit for scope in chosen.scopes}
    figures = report.figures(
        header={
            "run": run_id,
            "api": base.url,
            "clients": options.clients,
            "creates": options.creates,
            "enrollments": options.enrollments,
            "readers": options.readers,
            "load_accounts": chosen.described,
            "burst_scope": chosen.burst.name if chosen.burst else None,
            "load_seconds": round(load.seconds, 2),
            "check_seconds": round(check_seconds, 2),
        },
        attempts=recorder.attempts(),
        creates=creates,
        phase=phase,
        verdicts=verdicts,
        memory=sampler.figures if sampler else None,
        examples=recorder.examples(),
        busiest=(busiest_name, busiest_count, limits.get(busiest_name, 0)),
        notes=notes,
    )
    print(report.table(figures), flush=True)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["passed"] else 1
