"""moto in this process: the fake AWS settings, the table from template.yaml, what SES sent.

The fixtures that use these are in tests/conftest.py: `aws` and `table` (one test),
`module_table` and `class_table` (a module or a class of tests that keep apart by account).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.ses.models import ses_backends

from learnflow import clients, deps

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from learnflow_cli.template import TableDefinition

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
# Never reach a real AWS account, a developer's own configuration or a real payments API.
UNSET_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LEARNFLOW_STRIPE_API_BASE")
TABLE = FAKE_ENV["LEARNFLOW_TABLE"]
SENDER = "no-reply@learnflow.com"  # the address the welcome e-mails come from
# The tests' own boto3 session: botocore loads each service's model once, not for each test
# (boto3's default session is a new one in each `mock_aws()`: some 50 ms a client).
SESSION = boto3.session.Session()


def set_fake_env(env: pytest.MonkeyPatch) -> None:
    for name in UNSET_ENV:
        env.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        env.setenv(name, value)


def create_table(table_spec: TableDefinition, name: str = TABLE) -> None:
    """The single table in moto, exactly as template.yaml declares it (TTL included)."""
    client = SESSION.client("dynamodb")
    client.create_table(**table_spec.create_table_kwargs(name))
    if table_spec.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table_spec.ttl_attribute},
        )


@contextmanager
def moto_table(table_spec: TableDefinition) -> Iterator[Table]:
    """moto and the table for longer than one test (a module, a class): the fake settings are
    set here too, since the per-test ones come later and go sooner. Tests sharing it keep apart
    by account (each `Caller()` is a new one)."""
    with pytest.MonkeyPatch.context() as env:
        set_fake_env(env)
        with mock_aws():
            deps.reset()
            create_table(table_spec)
            yield clients.table()
    deps.reset()


def sent_emails() -> list[Any]:
    """What moto's SES accepted, oldest first."""
    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def recipients() -> list[str]:
    """Every address an e-mail was sent to, sorted."""
    return sorted(to for message in sent_emails() for to in message.destinations["ToAddresses"])


def stored_items(name: str = TABLE) -> list[dict[str, Any]]:
    """Every item of moto's table as boto3's Table returns them, read straight from moto (no
    Scan: a big table's pages cost seconds to serialise and parse, and each holds 1 MB only)."""
    deserialize = TypeDeserializer().deserialize
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(name)
    return [
        {key: deserialize(value) for key, value in item.to_json()["Attributes"].items()}
        for item in table.all_items()
    ]
