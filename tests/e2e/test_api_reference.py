"""Every example of the API reference (docs/api.md) runs against the stack and gives its response.

The reference's examples (`sh example` blocks, each followed by its `json response`; the format
is described in tests/e2e/docs_runner.py and in the reference's section 1) run in document order
in one bash session, with `API` set to the stack, `KEY` to a test key of a fresh Pro account and
`LIVE_KEY` to the same account's live key. One test per example, in order; the session is shared,
and an example's test runs every earlier example first if they have not run (so the tests may be
selected or ordered freely).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.docs_runner import BashSession, Example, Outcome, differences, parse_examples

if TYPE_CHECKING:
    from tests.support.stack import Stack

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
EXAMPLES = parse_examples(REFERENCE.read_text(encoding="utf-8"))
BLOCK_TIMEOUT = 20.0


class Reference:
    """The examples run so far, in one bash session; `outcome(example)` runs every example up
    to that one. For an example that saves an id in a variable, the variable's value is read
    right after it (`saved`)."""

    def __init__(self, session: BashSession) -> None:
        self.session = session
        self.outcomes: list[Outcome] = []
        self.saved: dict[int, str | None] = {}

    def outcome(self, example: Example) -> Outcome:
        while len(self.outcomes) < example.index:
            current = EXAMPLES[len(self.outcomes)]
            self.outcomes.append(self.session.run(current.command, BLOCK_TIMEOUT))
            if current.variable is not None:
                read = self.session.run(f'printf "%s" "${{{current.variable}}}"', BLOCK_TIMEOUT)
                self.saved[current.index] = read.stdout if read.status == 0 else None
        return self.outcomes[example.index - 1]


@pytest.fixture(scope="module")
def reference(stack: Stack) -> Iterator[Reference]:
    account = stack.create_account("pro")
    session = BashSession(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "API": stack.api,
            "KEY": account.keys["test"],
            "LIVE_KEY": account.keys["live"],
        }
    )
    try:
        yield Reference(session)
    finally:
        session.close()


def test_the_reference_has_examples() -> None:
    assert len(EXAMPLES) >= 40, "the reference lost its examples (or their format changed)"
    for example in EXAMPLES:
        assert example.command.count("curl ") == 1, f"{example.title}: one curl command a block"


def test_the_comparison_is_structural_and_exact() -> None:
    """The rules of docs/api.md section 1, as the comparison applies them."""
    expected = {"id": "crs_…", "price": Decimal("49.99"), "n": 1, "ok": True, "tags": ["a"]}
    same = {"id": "crs_x1", "price": Decimal("49.99"), "n": 1, "ok": True, "tags": ["a"]}
    assert differences(expected, same) == []
    assert differences({"id": "…"}, {"id": "anything"}) == []
    for actual in (
        {**same, "id": "ins_x1"},  # another prefix
        {**same, "price": Decimal("49.990000001")},
        {**same, "price": 49.99},  # a float is not the decimal written
        {**same, "n": Decimal("1.0")},  # 1.0 is not 1
        {**same, "ok": 1},  # 1 is not true
        {**same, "tags": ["a", "b"]},
        {**same, "extra": None},
        {key: value for key, value in same.items() if key != "n"},
    ):
        assert differences(expected, actual), actual
    assert differences({"message": "The course crs_…"}, {"message": "The course crs_1 is"}) == []


def _explain(example: Example, outcome: Outcome, actual: str, found: list[str]) -> str:
    return (
        f"{example.title}\n\n"
        f"command:\n{example.command.strip()}\n\n"
        f"expected ({'standard error' if example.writes_to_stderr else 'standard output'}):\n"
        f"{example.expected_text}\n\n"
        f"actual:\n{actual if actual.strip() else '(nothing)'}\n\n"
        f"exit status {outcome.status}, {outcome.seconds:.2f} s"
        + (f"\nstandard output: {outcome.stdout!r}" if example.writes_to_stderr else "")
        + (f"\nstandard error: {outcome.stderr!r}" if not example.writes_to_stderr else "")
        + ("\n\ndifferences:\n" + "\n".join(found) if found else "")
    )


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[f"block{e.index:02d}-L{e.line}" for e in EXAMPLES]
)
def test_the_example_gives_the_documented_response(reference: Reference, example: Example) -> None:
    outcome = reference.outcome(example)
    actual = outcome.stderr if example.writes_to_stderr else outcome.stdout
    other = outcome.stdout if example.writes_to_stderr else outcome.stderr
    problems: list[str] = []
    if outcome.status is None:
        problems.append(f"the block did not finish within {BLOCK_TIMEOUT} s")
    elif outcome.status != 0:
        problems.append(f"the block exited with status {outcome.status}")
    try:
        parsed: Any = json.loads(actual, parse_float=Decimal)
    except ValueError:
        parsed = None
        problems.append("the response is not JSON")
    else:
        problems.extend(differences(example.expected, parsed))
    if other.strip():
        where = "standard output" if example.writes_to_stderr else "standard error"
        problems.append(f"the block wrote to {where} too")
    if example.variable is not None:
        saved = reference.saved.get(example.index)
        wanted = parsed.get("id") if isinstance(parsed, dict) else None
        if not saved or saved != wanted:
            problems.append(f"${example.variable} holds {saved!r}, not the response's id")
    if problems:
        pytest.fail(_explain(example, outcome, actual, problems), pytrace=False)
