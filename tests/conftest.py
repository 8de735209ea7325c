"""Shared test set-up: fake AWS settings and fresh caches per test, the fixtures every kind of test
reads (events, moto's table, the local Stripe server), and the markers that say what each test
needs (pyproject.toml lists them; `-m "not e2e and not browser"` runs without the local stack).

The harness itself lives in tests/support/: `events` (events/ as API Gateway sends them),
`handlers` (a caller running route handlers, Lambda contexts, replies), `school` (the objects an
enrollment needs), `pages` (walking a list), `aws` (moto's table, what SES sent), `payments`
(the local Stripe server), `cli` (the admin CLI through click), `stack` (`learnflow serve` for
the end-to-end tests), `dynamo_calls` (what a call read), `iam` and `sam` (roles and policies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from moto import mock_aws
from moto.core.models import MockAWS

from learnflow import clients, deps
from learnflow_cli.local.stripe_server import StripeServer
from learnflow_cli.template import TableDefinition, load_template, table_definition
from tests.support.aws import FAKE_ENV, create_table, moto_table, set_fake_env
from tests.support.events import load_event
from tests.support.payments import SECRETS, faults

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["FAKE_ENV", "load_event"]  # still importable from here

# What a test needs, read from the fixtures it uses (directly, through another fixture, or with
# `pytest.mark.usefixtures`); a test that needs one in another way is marked by hand.
NEEDS = {
    "stack": "e2e",
    "aws": "aws",
    "table": "aws",
    "module_table": "aws",
    "class_table": "aws",
    "stripe_server": "stripe",
}
_moto_starts: list[None] = []  # one per `mock_aws()` started (pytest_configure counts them)


def pytest_configure(config: pytest.Config) -> None:
    """moto in this process as the local stack runs it: a TransactWriteItems saves and restores
    only the items it names (moto deep-copies every table per item of each transaction, a cost
    that grows with the table and made a module's later tests several times slower), and moto
    keeps no copy of every object it ever made."""
    del config
    from learnflow_cli.local.moto_server import Limits, install_bounds  # noqa: PLC0415

    install_bounds(Limits())
    start = MockAWS.start

    def counted_start(self: MockAWS, reset: bool = True) -> None:
        _moto_starts.append(None)
        start(self, reset=reset)

    MockAWS.start = counted_start  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with what it needs (NEEDS), before `-m` selects by those marks.

    Under pytest-xdist's `--dist loadgroup` (the Makefile's), each module runs in one worker,
    so its shared fixtures (moto's table, a Stripe server, a catalogue) are built once, and
    every module with a test of the local stack runs in the same worker, so one `learnflow
    serve` serves them all while the other workers run everything else."""
    on_stack: set[str] = set()  # the modules with a test of the local stack
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in NEEDS.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        if "stack" in names:
            on_stack.add(_module(item))
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            module = _module(item)
            item.add_marker(pytest.mark.xdist_group("stack" if module in on_stack else module))


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that runs on moto in this process (its fixtures' or its own) must say so."""
    starts = len(_moto_starts)
    mocked = MockAWS._nested_count > 0
    result = yield
    if (mocked or len(_moto_starts) > starts) and item.get_closest_marker("aws") is None:
        pytest.fail("this test runs on moto: mark it `aws` (or use the `table` fixture)")
    return result


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test ever reaches a real AWS account or a developer's own configuration."""
    set_fake_env(monkeypatch)
    deps.reset()
    yield
    deps.reset()


@pytest.fixture(name="load_event")
def _load_event() -> Callable[..., dict[str, Any]]:
    return load_event


@pytest.fixture(scope="session")
def table_spec() -> TableDefinition:
    """The table exactly as template.yaml declares it (so code and template cannot drift)."""
    return table_definition(load_template())


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's in-memory AWS for the length of one test."""
    with mock_aws():
        yield


@pytest.fixture
def table(aws: None, table_spec: TableDefinition) -> Table:
    """The single table, created in moto from template.yaml's definition, as the code sees it."""
    create_table(table_spec)
    return clients.table()


@pytest.fixture(scope="module")
def module_table(table_spec: TableDefinition) -> Iterator[Table]:
    """moto and the table for a whole module (`pytestmark = pytest.mark.usefixtures(
    "module_table")`), built once instead of once per test: its tests keep apart by account."""
    with moto_table(table_spec) as shared:
        yield shared


@pytest.fixture(scope="class")
def class_table(table_spec: TableDefinition) -> Iterator[Table]:
    """moto and the table for one class of tests (`@pytest.mark.usefixtures("class_table")`)."""
    with moto_table(table_spec) as shared:
        yield shared


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[StripeServer]:
    """The local Stripe-compatible server (the one `learnflow serve` runs), on a free port, for
    a module; every PaymentIntent carries the account in its metadata, so tests keep apart."""
    server = StripeServer(port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_stripe(stripe_server: StripeServer, monkeypatch: pytest.MonkeyPatch) -> StripeServer:
    """The payment code pointed at the module's Stripe server with a secret key per mode, and
    no fault left from an earlier test."""
    monkeypatch.setenv("LEARNFLOW_STRIPE_API_BASE", stripe_server.url)
    for mode, secret in SECRETS.items():
        monkeypatch.setenv(f"LEARNFLOW_STRIPE_SECRET_KEY_{mode.upper()}", secret)
    faults(stripe_server, fail_next=0, delay_ms=0)
    deps.reset()
    return stripe_server
