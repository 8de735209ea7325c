"""The OpenAPI document against the running API: schemathesis on every operation, then over links.

The document is the one the stack serves (`GET /v2/openapi.json`), loaded with
`schemathesis.openapi.from_dict` (`from_url` would leave out the very operation that served it)
and aimed at `stack.api`. Requests carry the test key of a fresh enterprise account with its own
limit of 60,000 requests a minute, so what is tested is never a 429.

Each operation gets `POSITIVE_EXAMPLES` generated requests that the document says are valid and
`NEGATIVE_EXAMPLES` that it says are not, and every response must pass the document's own checks:
no 5xx, a documented status code, a documented content type, a body that conforms to the
documented schema and documented headers that conform to theirs. A failing check fails the test
of that operation with schemathesis' report (the check, the response, a curl command that
reproduces it); every failure of the operation is collected, without shrinking, before the test
fails. Then the document's links (each create's 201 links to the get, update or cancel of what
it made): each is walked once from a valid create, with the link's own expressions as
schemathesis reads them, to the object the create made; and schemathesis' state machine runs
random scenarios over them, with the same checks on every step.

Bounded: a fixed number of examples per operation, a time budget per operation and for the
stateful run, a timeout per request, no example database (nothing is kept between runs), and a
fixed seed (derandomized) so a run is reproducible.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.generation.stateful.state_machine import APIStateMachine, StepInput, StepOutput
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.stateful.links import OpenApiLink

if TYPE_CHECKING:
    from schemathesis import Response
    from schemathesis.specs.openapi.schemas import OpenApiSchema

    from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "functions" / "openapi" / "openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
POSITIVE_EXAMPLES = 15
NEGATIVE_EXAMPLES = 8
OPERATION_BUDGET = 6.0  # seconds of requests per operation and mode, beyond the first few
MIN_EXAMPLES = 3  # requests every operation gets whatever the budget says
STATEFUL_SCENARIOS = 30
STATEFUL_STEPS = 6
STATEFUL_BUDGET = 45.0
REQUEST_TIMEOUT = 10
ENTERPRISE_LIMIT = 60_000
PAID_PRICE = 49.99


def _labels(document: dict[str, Any]) -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]


# The operations of the document in the repository, one test each; the served document must
# have exactly these (test_the_served_document_has_exactly_the_operations_tested).
OPERATIONS = _labels(json.loads(DOCUMENT.read_text(encoding="utf-8")))


def _links(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source operation label, status, link name) for every link the document declares."""
    found: list[tuple[str, str, str]] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation.get("responses", {}).items():
                found.extend(
                    (f"{method.upper()} {path}", status, name) for name in response.get("links", {})
                )
    return found


@dataclass
class Tally:
    """What was run, for the summary line and the failure messages."""

    examples: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    checks: int = 0
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)
    budget_cut: list[str] = field(default_factory=list)
    stateful_links: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def record(self, label: str, response: Response, phase: str) -> None:
        self.examples[label] += 1
        self.phases[phase] += 1
        self.statuses[(label, response.status_code)] += 1
        self.checks += len(CHECKS)

    def fail(self, label: str, group: FailureGroup) -> None:
        for failure in group.exceptions:
            # One report per operation and kind of failure (status, schema, ...): the first seen
            self.failures.setdefault((label, failure.title), group.message.strip())

    def summary(self) -> str:
        links = ", ".join(f"{name} {n}" for name, n in sorted(self.stateful_links.items()))
        return (
            f"schemathesis {schemathesis.__version__}: {len(self.examples)} operations, "
            f"{sum(self.examples.values())} requests ({self.phases['fuzzing']} generated for "
            f"single operations, {self.phases['links']} walking each link once, "
            f"{self.phases['stateful']} stateful steps following links: {links or 'none'}), "
            f"{self.checks} checks, "
            f"{len(self.failures)} distinct failures"
            + (f", budget cut {self.budget_cut}" if self.budget_cut else "")
            + f", {self.seconds:.1f} s"
        )

    def failures_of(self, label: str) -> list[str]:
        return [
            f"{title}\n{report}"
            for (where, title), report in self.failures.items()
            if where == label
        ]


@dataclass
class Fuzz:
    stack: Stack
    schema: OpenApiSchema
    document: dict[str, Any]
    secret: str
    tally: Tally

    @property
    def auth(self) -> dict[str, str]:
        """For cases made by hand (generated ones get the config's headers)."""
        return {"Authorization": f"Bearer {self.secret}"}

    def operation(self, label: str) -> Any:
        method, path = label.split(" ", 1)
        return self.schema[path][method]

    def call(self, case: Case[Any], phase: str = "fuzzing") -> Response:
        """The request, with CHECKS on its response (a failure is collected, not raised)."""
        label = case.operation.label
        response = case.call(timeout=REQUEST_TIMEOUT)
        self.tally.record(label, response, phase)
        try:
            case.validate_response(
                response,
                checks=CHECKS,
                headers=dict(response.request.headers),
                transport_kwargs={"timeout": REQUEST_TIMEOUT},
            )
        except FailureGroup as group:
            self.tally.fail(label if phase == "fuzzing" else f"{phase} {label}", group)
        return response


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts for the whole module, written to the terminal when the module is done."""
    counts = Tally()
    yield counts
    if counts.examples:
        _report(request.config, counts.summary())


def _report(config: pytest.Config, line: str) -> None:
    """A line on the terminal after the module's tests (teardown output is captured otherwise)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def fuzz(stack: Stack, tally: Tally) -> Fuzz:
    """The served document, loaded by schemathesis and aimed at the stack with a fresh key."""
    account = stack.admin().create_account("e2e schemathesis", "enterprise", ENTERPRISE_LIMIT)
    secret = str(stack.create_key(str(account["id"]), "test")["secret"])
    response = requests.get(stack.url("/openapi.json"), timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    config = schemathesis.Config.from_dict(
        {
            "base-url": stack.api,
            "headers": {"Authorization": f"Bearer {secret}"},
            "request-timeout": REQUEST_TIMEOUT,
            "cache": {"enabled": False},
            "generation": {"database": "none"},
            # only the links the document declares, none that schemathesis would infer
            "phases": {"stateful": {"inference": {"algorithms": []}}},
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    return Fuzz(stack=stack, schema=schema, document=document, secret=secret, tally=tally)


def test_the_served_document_has_exactly_the_operations_tested(fuzz: Fuzz) -> None:
    served = sorted(_labels(fuzz.document))
    loaded = sorted(
        result.ok().label for result in fuzz.schema.get_all_operations() if isinstance(result, Ok)
    )
    assert served == sorted(OPERATIONS), "the served document is not the repository's"
    assert loaded == served, "schemathesis did not load every operation"


def _run(fuzz: Fuzz, label: str, mode: GenerationMode, examples: int) -> None:
    started = time.monotonic()
    counted = {"n": 0}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected instead
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=fuzz.operation(label).as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        if counted["n"] >= MIN_EXAMPLES and time.monotonic() - started > OPERATION_BUDGET:
            if f"{label} {mode.value}" not in fuzz.tally.budget_cut:
                fuzz.tally.budget_cut.append(f"{label} {mode.value}")
            return
        counted["n"] += 1
        fuzz.call(case)

    try:
        run()
    except Unsatisfiable:
        # e.g. a lone string path parameter: there is no request the document calls invalid
        if mode is not GenerationMode.NEGATIVE:
            raise
        fuzz.tally.unsatisfiable.append(label)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_response_conforms_to_the_document(fuzz: Fuzz, label: str) -> None:
    started = time.monotonic()
    _run(fuzz, label, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)
    _run(fuzz, label, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)
    fuzz.tally.seconds += time.monotonic() - started
    assert fuzz.tally.examples[label] >= 1, f"{label}: no request was made"
    failures = fuzz.tally.failures_of(label)
    statuses = {
        status: n for (where, status), n in sorted(fuzz.tally.statuses.items()) if where == label
    }
    if failures:
        pytest.fail(
            f"{label}: {len(failures)} kind(s) of failure in {fuzz.tally.examples[label]} "
            f"requests (statuses {statuses}):\n\n" + "\n\n".join(failures),
            pytrace=False,
        )


# --- stateful: the document's links ---


def _link_name(transition: str) -> str:
    """`GetCourse` from schemathesis' transition id `POST /courses -> [201] GetCourse -> GET …`."""
    return transition.split(" -> ")[1].split("] ", 1)[-1]


class _Valid:
    """Valid creates, which random bodies almost never are (an e-mail, a known currency, a
    published course and a card are needed); the enrollment's course is made once, published."""

    def __init__(self, fuzz: Fuzz) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {fuzz.secret}"
        self.api = fuzz.stack.api
        self._course_id: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.session.post(f"{self.api}{path}", json=body, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def course(self) -> dict[str, Any]:
        return {
            "title": "Linked course",
            "description": "Made by the stateful test.",
            "price": PAID_PRICE,
            "currency": "usd",
        }

    def student(self) -> dict[str, Any]:
        name = uuid.uuid4().hex[:12]
        return {"email": f"{name}@example.com", "name": f"Student {name}"}

    def instructor(self) -> dict[str, Any]:
        return {"name": "Linked instructor"}

    def enrollment(self) -> dict[str, Any]:
        if self._course_id is None:
            course_id = str(self._post("/courses", self.course())["id"])
            response = self.session.patch(
                f"{self.api}/courses/{course_id}",
                json={"status": "published"},
                timeout=REQUEST_TIMEOUT,
            )
            assert response.status_code == 200, response.text
            self._course_id = course_id
        return {
            "student_id": str(self._post("/students", self.student())["id"]),
            "course_id": self._course_id,
            "payment_method_id": "pm_card_visa",
        }

    def body_for(self, label: str) -> Callable[[], dict[str, Any]]:
        return {
            "POST /courses": self.course,
            "POST /students": self.student,
            "POST /instructors": self.instructor,
            "POST /enrollments": self.enrollment,
        }[label]


def _declared_links() -> list[tuple[str, str, str]]:
    return _links(json.loads(DOCUMENT.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("source", "status", "name"),
    _declared_links(),
    ids=[f"{source} {status} {name}" for source, status, name in _declared_links()],
)
def test_each_link_leads_from_a_create_to_what_it_made(
    fuzz: Fuzz, source: str, status: str, name: str
) -> None:
    """The link as schemathesis reads it: a valid create, the linked request built from its
    201 by the link's own expressions, and the linked operation answers with that object."""
    method, path = source.split(" ", 1)
    definition = fuzz.document["paths"][path][method.lower()]["responses"][status]["links"][name]
    create = fuzz.operation(source)
    link = OpenApiLink(name, status, definition, create)
    case = create.Case(
        body=_Valid(fuzz).body_for(source)(),
        headers={**fuzz.auth, "Idempotency-Key": f"link-{uuid.uuid4()}"},
        media_type="application/json",
    )
    response = fuzz.call(case, "links")
    assert response.status_code == int(status), response.text
    transition = link.extract(StepOutput(response, case))
    values: dict[str, dict[str, Any]] = {}
    for container, parameters in transition.parameters.items():
        for parameter, extracted in parameters.items():
            assert isinstance(extracted.value, Ok), (
                f"{name}: {extracted.definition} names nothing in {response.text}"
            )
            values.setdefault(container, {})[parameter] = extracted.value.ok()
    target = link.target
    linked = target.Case(
        headers=fuzz.auth,
        path_parameters=values.get("path_parameters"),
        query=values.get("query"),
        body={} if target.body else NOT_SET,
        media_type="application/json" if target.body else None,
    )
    answer = fuzz.call(linked, "links")
    assert answer.status_code == 200, f"{linked.as_curl_command()}\n{answer.text}"
    assert answer.json()["id"] == response.json()["id"]
    failures = fuzz.tally.failures_of(f"links {source}") + fuzz.tally.failures_of(
        f"links {target.label}"
    )
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


class _LinkMachine(APIStateMachine):
    """Runs CHECKS on every step and counts the links followed; a failed check is collected,
    not raised (so Hypothesis does not shrink). Every other create gets a valid body."""

    fuzz: ClassVar[Fuzz]
    valid: ClassVar[_Valid]
    followed: ClassVar[Counter[tuple[str, int]]]
    deadline: ClassVar[float]
    creates: Counter[str]

    def setup(self) -> None:
        self.creates = Counter()  # per scenario, so that a scenario replays the same way

    def step(self, input: StepInput) -> StepOutput:
        label = input.case.operation.label
        if "Idempotency-Key" in input.case.headers:
            # a key of its own per request: a generated key ("0") would be shared by unrelated
            # requests of different scenarios, and a scenario would not replay the same way
            input.case.headers["Idempotency-Key"] = f"stateful-{uuid.uuid4()}"
        if input.transition is None and input.case.operation.method.upper() == "POST":
            self.creates[label] += 1
            if self.creates[label] % 2:
                input.case.body = self.valid.body_for(label)()
        output = super().step(input)
        if input.transition is not None and input.is_applied:
            self.followed[(input.transition.id, output.response.status_code)] += 1
        return output

    def call(self, case: Case[Any], **kwargs: Any) -> Response:
        if time.monotonic() > self.deadline:
            pytest.fail(f"the stateful run took more than {STATEFUL_BUDGET} s")
        return case.call(**{"timeout": REQUEST_TIMEOUT, **kwargs})

    def validate_response(
        self,
        response: Response,
        case: Case[Any],
        additional_checks: list[CheckFunction] | None = None,
        **kwargs: Any,
    ) -> None:
        label = case.operation.label
        self.fuzz.tally.record(label, response, "stateful")
        try:
            case.validate_response(
                response,
                checks=CHECKS,
                headers=dict(response.request.headers),
                transport_kwargs=kwargs or None,
                recorder=getattr(self, "recorder", None),
            )
        except FailureGroup as group:
            self.fuzz.tally.fail(f"stateful {label}", group)


def test_stateful_runs_over_the_links_conform_to_the_document(fuzz: Fuzz) -> None:
    """Schemathesis' state machine over the document's links (none inferred): random scenarios
    of creates and the operations their links lead to, every response checked."""
    started = time.monotonic()
    followed: Counter[tuple[str, int]] = Counter()
    machine = type(
        "LearnFlowLinks",
        (_LinkMachine, fuzz.schema.as_state_machine()),
        {
            "fuzz": fuzz,
            "valid": _Valid(fuzz),
            "followed": followed,
            "deadline": started + STATEFUL_BUDGET,
        },
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        ),
    )
    fuzz.tally.seconds += time.monotonic() - started
    for (transition, _answer), n in followed.items():
        fuzz.tally.stateful_links[_link_name(transition)] += n
    assert followed, "the state machine followed no link"
    failures = [
        f"{where}: {title}\n{report}"
        for (where, title), report in fuzz.tally.failures.items()
        if where.startswith("stateful ")
    ]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
