"""The invariants checked after the load, each a `Verdict`."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loadtest.accounts import Budget, Scope
from loadtest.transport import Base, Connection, Recorder
from loadtest.workload import (
    Create,
    Page,
    ReaderFindings,
    Settings,
    every_filter,
    fetch,
    list_path,
)

PAGE = 100
MAX_PAGES = 1_000
CHECK_SHARE = 0.9
CHECK_PARALLEL = 8
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    passed: bool | None  # None: not checked (skipped)
    detail: str


def examples(values: list[str]) -> str:
    shown = ", ".join(values[:EXAMPLES])
    return shown + (f" (+{len(values) - EXAMPLES} more)" if len(values) > EXAMPLES else "")


@dataclass(slots=True)
class Listing:
    """Every item of one list (one scope, one filter), paged through with `starting_after`."""

    scope: Scope
    filters: dict[str, str]
    items: list[dict[str, Any]] = field(default_factory=list)
    total_counts: set[int] = field(default_factory=set)  # as the pages reported it
    problems: list[str] = field(default_factory=list)  # pages that break docs/api.md §9
    failure: str | None = None  # why the listing stopped short

    @property
    def name(self) -> str:
        shown = "&".join(f"{key}={value}" for key, value in sorted(self.filters.items()))
        return f"{self.scope.name} ?{shown or '(no filter)'}"


@dataclass(frozen=True, slots=True)
class _Context:
    budget: Budget
    settings: Settings
    timeout: float


def _list_all(
    base: Base, scope: Scope, filters: dict[str, str], recorder: Recorder, context: _Context
) -> Listing:
    listing = Listing(scope, filters)
    connection = Connection(base, context.timeout, recorder, "check")
    after: str | None = None
    try:
        for _ in range(MAX_PAGES):
            path = list_path(filters, PAGE, after)
            answer, outcome = fetch(
                connection,
                scope,
                path,
                budget=context.budget,
                share=CHECK_SHARE,
                settings=context.settings,
                attempts=context.settings.max_attempts,
            )
            if answer is None or answer.status != 200:
                listing.failure = f"GET {path}: {outcome}"
                return listing
            page = Page.parse(answer.json())
            if page is None:
                listing.failure = f"GET {path}: not a well-formed list"
                return listing
            listing.problems += [
                f"GET {path}: {text}" for text in page.problems(filters, PAGE, after)
            ]
            listing.items += page.items
            listing.total_counts.add(page.total_count)
            if not page.has_more or not page.items:
                return listing
            after = page.last
        listing.failure = f"more than {MAX_PAGES} pages"
        return listing
    finally:
        connection.close()


def list_everything(
    base: Base,
    scopes: list[Scope],
    *,
    recorder: Recorder,
    budget: Budget,
    settings: Settings,
    timeout: float,
) -> list[Listing]:
    """Every scope's courses under every filter combination, in parallel."""
    context = _Context(budget, settings, timeout)
    jobs = [(scope, filters) for scope in scopes for filters in every_filter()]
    with ThreadPoolExecutor(CHECK_PARALLEL) as pool:
        return list(pool.map(lambda job: _list_all(base, job[0], job[1], recorder, context), jobs))


def exactly_once(creates: list[Create], listings: list[Listing], run_id: str) -> Verdict:
    """Every logical create is listed exactly once, as the course its final 201 named."""
    name = "every logical create exists exactly once"
    unfiltered = [listing for listing in listings if not listing.filters]
    broken = [f"{listing.name}: {listing.failure}" for listing in unfiltered if listing.failure]
    if broken:
        return Verdict(name, False, f"could not list every course: {examples(broken)}")
    found: dict[str, list[str]] = {}
    for listing in unfiltered:
        for item in listing.items:
            metadata = item.get("metadata") or {}
            if metadata.get("load_run") == run_id:
                found.setdefault(str(metadata.get("load_key")), []).append(str(item["id"]))
    expected = {create.load_key: create for create in creates}
    missing = sorted(key for key in expected if key not in found)
    duplicated = sorted(key for key, ids in found.items() if len(ids) > 1)
    unknown = sorted(key for key in found if key not in expected)
    mismatched = []
    for key, create in expected.items():
        course = create.course()
        if course is not None and len(found.get(key, [])) == 1 and found[key] != [course["id"]]:
            mismatched.append(f"{key}: answered {course['id']}, listed {found[key][0]}")
    detail = (
        f"{len(expected) - len(missing)} of {len(expected)} listed, {len(missing)} missing, "
        f"{len(duplicated)} duplicated"
    )
    problems = [
        (f"missing: {examples(missing)}", bool(missing)),
        (
            "duplicated: "
            + examples(
                [f"{key} x{len(found[key])} ({', '.join(found[key])})" for key in duplicated]
            ),
            bool(duplicated),
        ),
        (f"not ours: {examples(unknown)}", bool(unknown)),
        (f"listed course is not the one answered: {examples(mismatched)}", bool(mismatched)),
    ]
    shown = [text for text, present in problems if present]
    return Verdict(name, not shown, "; ".join([detail, *shown]))


def _matches(item: dict[str, Any], filters: dict[str, str]) -> bool:
    return all(item.get(key) == value for key, value in filters.items())


def counts_match(listings: list[Listing]) -> Verdict:
    """For every filter, total_count is the number of items paged through, and those items are
    exactly the matching ones of the unfiltered list."""
    name = "total_count = items paged through, for every filter"
    everything = {listing.scope.name: listing.items for listing in listings if not listing.filters}
    problems: list[str] = []
    for listing in listings:
        if listing.failure:
            problems.append(f"{listing.name}: {listing.failure}")
            continue
        problems += [f"{listing.name}: {text}" for text in listing.problems]
        ids = [str(item["id"]) for item in listing.items]
        if listing.total_counts != {len(ids)}:
            counts = ", ".join(str(count) for count in sorted(listing.total_counts))
            problems.append(f"{listing.name}: total_count {counts}, listed {len(ids)}")
        wanted = {
            str(item["id"])
            for item in everything.get(listing.scope.name, [])
            if _matches(item, listing.filters)
        }
        if listing.filters and set(ids) != wanted:
            problems.append(
                f"{listing.name}: {len(set(ids) - wanted)} listed that do not match, "
                f"{len(wanted - set(ids))} matching not listed"
            )
    scopes = len(everything)
    detail = f"{len(listings)} lists on {scopes} account(s)"
    if problems:
        detail += f", {len(problems)} wrong: {examples(problems)}"
    return Verdict(name, not problems, detail)


def final_answers(creates: list[Create]) -> Verdict:
    """No logical create ends on a 5xx; every one ends on its 201 (or a replay of it)."""
    name = "no final 5xx: every logical create ends on its 201 (or a replay of it)"
    finals = Counter(_final(create) for create in creates)
    wrong = [create for create in creates if create.course() is None or not _ours(create)]
    server_errors = sum(1 for create in creates if create.final[:1] == "5")
    detail = ", ".join(f"{count} x {final}" for final, count in finals.most_common())
    if server_errors:
        detail += f"; {server_errors} final 5xx"
    return Verdict(name, not wrong and not server_errors, detail)


def _final(create: Create) -> str:
    final = create.final
    if create.course() is not None and not _ours(create):
        final += " with another create's body"
    if create.gave_up:
        final += f" (gave up: {create.gave_up})"
    return final


def _ours(create: Create) -> bool:
    course = create.course()
    if course is None:
        return False
    metadata = course["metadata"]
    return bool(
        metadata.get("load_key") == create.load_key
        and str(course.get("id", "")).startswith("crs_")
        and course.get("category") == create.category
    )


def readers(findings: ReaderFindings) -> Verdict:
    name = "list readers: no failed page, every page well-formed"
    detail = f"{findings.walks} walks, {findings.pages} pages"
    if findings.problems:
        detail += f", {len(findings.problems)} problem(s): {examples(findings.problems)}"
    return Verdict(name, not findings.problems, detail)
