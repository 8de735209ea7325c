"""The stream function sends one welcome e-mail per new enrollment that asked for one (moto SES)."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from learnflow.db import keys
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

SENDER = "no-reply@learnflow.com"
LoadEvent = Callable[..., dict[str, Any]]


class Context:
    function_name = "SendWelcomeEmailFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:welcome"
    aws_request_id = "ctx-1"


def _sent() -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


@pytest.fixture
def handler(table: Table, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", SENDER)
    module = importlib.import_module("functions.notifications.send_welcome_email")
    return module.lambda_handler  # type: ignore[no-any-return]


def _seed(table: Table, event: dict[str, Any]) -> None:
    image = event["Records"][0]["dynamodb"]["NewImage"]
    tenant = Tenant(image["account_id"]["S"], image["mode"]["S"])
    table.put_item(
        Item={
            **keys.item(tenant, keys.STUDENT, image["student_id"]["S"]),
            "type": "student",
            "email": "ada@example.com",
            "name": "Ada",
        }
    )
    table.put_item(
        Item={
            **keys.item(tenant, keys.COURSE, image["course_id"]["S"]),
            "type": "course",
            "title": "Intro to Python",
        }
    )


def test_sends_one_welcome_email(
    table: Table, handler: Callable[..., dict[str, Any]], load_event: LoadEvent
) -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    event = load_event("stream_enrollment_insert")
    _seed(table, event)
    result = handler(event, Context())
    assert result == {"batchItemFailures": []}
    (message,) = _sent()
    assert message.destinations["ToAddresses"] == ["ada@example.com"]
    assert message.source == SENDER
    assert "Intro to Python" in message.subject


def test_a_record_that_did_not_ask_sends_nothing(
    table: Table, handler: Callable[..., dict[str, Any]], load_event: LoadEvent
) -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    event = load_event("stream_enrollment_insert")
    _seed(table, event)
    event["Records"][0]["dynamodb"]["NewImage"]["welcome_email"] = {"S": "not_requested"}
    assert handler(event, Context()) == {"batchItemFailures": []}
    assert _sent() == []


def test_failed_send_is_reported_for_that_record_only(
    table: Table, handler: Callable[..., dict[str, Any]], load_event: LoadEvent
) -> None:
    # No verified sender identity: SES refuses, the record is reported for a retry.
    event = load_event("stream_enrollment_insert")
    _seed(table, event)
    second = copy.deepcopy(event["Records"][0])
    second["dynamodb"]["SequenceNumber"] = "999"
    second["dynamodb"]["NewImage"]["welcome_email"] = {"S": "not_requested"}
    event["Records"].append(second)
    result = handler(event, Context())
    first_sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]
    assert result == {"batchItemFailures": [{"itemIdentifier": first_sequence}]}


def test_missing_student_is_skipped_not_retried(
    table: Table, handler: Callable[..., dict[str, Any]], load_event: LoadEvent
) -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    event = load_event("stream_enrollment_insert")
    assert handler(event, Context()) == {"batchItemFailures": []}
    assert _sent() == []
