"""Shared test set-up: fake AWS settings, fresh caches per test, and `load_event` over events/."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from learnflow import clients, deps
from learnflow_cli.template import TableDefinition, load_template, table_definition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

EVENTS = Path(__file__).resolve().parent.parent / "events"


def pytest_configure(config: pytest.Config) -> None:
    """moto in this process as the local stack runs it: a TransactWriteItems saves and restores
    only the items it names (moto deep-copies every table per item of each transaction, a cost
    that grows with the table and made a module's later tests several times slower), and moto
    keeps no copy of every object it ever made."""
    del config
    from learnflow_cli.local.moto_server import Limits, install_bounds  # noqa: PLC0415

    install_bounds(Limits())


FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # moto does not answer boto3's account-based DynamoDB endpoints
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "LEARNFLOW_TABLE": "learnflow-test",
    "POWERTOOLS_SERVICE_NAME": "learnflow",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "LearnFlowTest",
}


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test ever reaches a real AWS account or a developer's own configuration."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LEARNFLOW_STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    deps.reset()
    yield
    deps.reset()


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of `events/<name>.json` with top-level fields replaced.

    Conveniences: `body` may be a dict (it is JSON-encoded), `query` sets both query-string maps,
    `authorizer` updates `requestContext.authorizer`, `path_params` sets `pathParameters`.
    """
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if "body" in overrides and isinstance(overrides["body"], dict):
        overrides["body"] = json.dumps(overrides["body"])
    if "query" in overrides:
        query = overrides.pop("query")
        event["queryStringParameters"] = dict(query) or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    if "authorizer" in overrides:
        event["requestContext"]["authorizer"].update(overrides.pop("authorizer"))
    if "path_params" in overrides:
        event["pathParameters"] = overrides.pop("path_params")
    event.update(overrides)
    return event


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
    client = boto3.client("dynamodb")
    client.create_table(**table_spec.create_table_kwargs(FAKE_ENV["LEARNFLOW_TABLE"]))
    if table_spec.ttl_attribute:
        client.update_time_to_live(
            TableName=FAKE_ENV["LEARNFLOW_TABLE"],
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table_spec.ttl_attribute},
        )
    return clients.table()
