"""The stream function sends one welcome e-mail per new enrollment that asked for one (moto SES)."""

from __future__ import annotations

import copy
import importlib
import time
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from learnflow import clients
from learnflow.db import keys
from learnflow.notifications import RecipientUnavailableError, WelcomeInProgressError
from learnflow.tenancy import Tenant
from tests.support.aws import SENDER, SESSION, recipients, sent_emails
from tests.support.events import LoadEvent
from tests.support.handlers import Context, Handler

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


@pytest.fixture
def handler(table: Table, monkeypatch: pytest.MonkeyPatch) -> Handler:
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", SENDER)
    module = importlib.import_module("functions.notifications.send_welcome_email")
    return module.lambda_handler  # type: ignore[no-any-return]


@pytest.fixture
def verified_sender(table: Table) -> None:
    SESSION.client("sesv2").create_email_identity(EmailIdentity=SENDER)


def _image(record: dict[str, Any]) -> dict[str, Any]:
    image: dict[str, Any] = record["dynamodb"]["NewImage"]
    return image


def _tenant(record: dict[str, Any]) -> Tenant:
    image = _image(record)
    return Tenant(image["account_id"]["S"], image["mode"]["S"])


def _seed(
    table: Table,
    record: dict[str, Any],
    email: str = "ada@example.com",
    *,
    student: bool = True,
) -> None:
    image, tenant = _image(record), _tenant(record)
    if student:
        table.put_item(
            Item={
                **keys.item(tenant, keys.STUDENT, image["student_id"]["S"]),
                "type": "student",
                "email": email,
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


def _claim_key(record: dict[str, Any]) -> keys.Key:
    return keys.welcome_email(_tenant(record), _image(record)["id"]["S"])


def _claim(table: Table, record: dict[str, Any]) -> dict[str, Any] | None:
    item = table.get_item(Key=_claim_key(record), ConsistentRead=True).get("Item")
    return dict(item) if item is not None else None


def _another_enrollment(record: dict[str, Any], n: int) -> dict[str, Any]:
    """A copy of `record` for another enrollment by another student, later in the shard."""
    other = copy.deepcopy(record)
    image = _image(other)
    enrollment_id = f"enr_0UmrkCOW3J3mjSOMavUzkv{n:02d}"
    image["id"] = image["SK"] = {"S": enrollment_id}
    image["student_id"] = {"S": f"stu_0UmgIFkGPpigTso0PRnaYG{n:02d}"}
    other["dynamodb"]["Keys"]["SK"] = {"S": enrollment_id}
    other["dynamodb"]["SequenceNumber"] = str(int(record["dynamodb"]["SequenceNumber"]) + n)
    return other


def _failures(result: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in result["batchItemFailures"]]


def _whole_batch_error(handler: Handler, event: dict[str, Any]) -> BaseException | None:
    """A batch whose every record failed raises (Lambda retries it whole): the record's error."""
    with pytest.raises(BatchProcessingError) as raised:
        handler(event, Context(10_000))
    ((_, error, _),) = raised.value.child_exceptions
    return error


def _sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def test_sends_one_welcome_email(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0])
    result = handler(event, Context(10_000))
    assert result == {"batchItemFailures": []}
    (message,) = sent_emails()
    assert message.destinations["ToAddresses"] == ["ada@example.com"]
    assert message.source == SENDER
    assert "Intro to Python" in message.subject
    claim = _claim(table, event["Records"][0])
    assert claim is not None
    assert (claim["type"], claim["status"], claim["message_id"]) == (
        "welcome_email",
        "sent",
        message.id,
    )
    assert claim["expires_at"] > time.time() + 6 * 24 * 3600


def test_a_record_that_did_not_ask_sends_nothing(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0])
    _image(event["Records"][0])["welcome_email"] = {"S": "not_requested"}
    assert handler(event, Context(10_000)) == {"batchItemFailures": []}
    assert sent_emails() == []
    assert _claim(table, event["Records"][0]) is None


def test_the_same_record_delivered_twice_sends_one_email(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0])
    assert handler(event, Context(10_000)) == {"batchItemFailures": []}
    assert handler(copy.deepcopy(event), Context(10_000)) == {"batchItemFailures": []}
    assert recipients() == ["ada@example.com"]


def test_redelivered_batch_after_a_failed_record_mails_each_student_once(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    first = event["Records"][0]
    second, third = _another_enrollment(first, 2), _another_enrollment(first, 3)
    event["Records"] += [second, third]
    for record, email in ((first, "ada@"), (second, "bob@"), (third, "cy@")):
        _seed(table, record, f"{email}example.com")
    # SES (the outer edge) throttles bob's mail once.
    refusals = ["bob@example.com"]

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params["Destination"]["ToAddresses"][0] in refusals:
            refusals.clear()
            raise ClientError(
                {"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}},
                "SendEmail",
            )

    clients.ses().meta.events.register("before-parameter-build.sesv2.SendEmail", throttle)

    assert _failures(handler(event, Context(10_000))) == [_sequence(second)]
    assert recipients() == ["ada@example.com", "cy@example.com"]
    # Lambda resumes from the failed record; delivering the whole batch again is the harder case.
    assert handler(copy.deepcopy(event), Context(10_000)) == {"batchItemFailures": []}
    assert recipients() == ["ada@example.com", "bob@example.com", "cy@example.com"]


def test_failed_send_is_reported_for_that_record_only(
    table: Table, handler: Handler, load_event: LoadEvent
) -> None:
    # No verified sender identity: SES refuses, the record is reported for a retry.
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0])
    second = copy.deepcopy(event["Records"][0])
    second["dynamodb"]["SequenceNumber"] = "999"
    _image(second)["welcome_email"] = {"S": "not_requested"}
    event["Records"].append(second)
    result = handler(event, Context(10_000))
    assert _failures(result) == [_sequence(event["Records"][0])]


def test_failed_send_releases_the_claim_so_the_retry_sends(
    table: Table, handler: Handler, load_event: LoadEvent
) -> None:
    event = load_event("stream_enrollment_insert")
    record = event["Records"][0]
    _seed(table, record)
    error = _whole_batch_error(handler, event)
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == "MessageRejected"
    assert _claim(table, record) is None

    SESSION.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    assert handler(copy.deepcopy(event), Context(10_000)) == {"batchItemFailures": []}
    assert recipients() == ["ada@example.com"]
    claim = _claim(table, record)
    assert claim is not None
    assert claim["status"] == "sent"


def _leave_keys_unprocessed(times: int) -> None:
    """DynamoDB (the outer edge) hands back every key of the next `times` BatchGetItems unread:
    moto answers, and the parsed answer is rewritten the way a throttled table answers."""
    table_name = clients.table().name
    remaining = [times]

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        if remaining[0] <= 0:
            return
        remaining[0] -= 1
        items = parsed.get("Responses", {}).get(table_name, [])
        parsed["Responses"] = {table_name: []}
        parsed["UnprocessedKeys"] = {
            table_name: {"Keys": [{k: item[k] for k in (keys.PK, keys.SK)} for item in items]}
        }

    clients.dynamodb().meta.client.meta.events.register(
        "after-call.dynamodb.BatchGetItem", unprocess
    )


def test_unprocessed_keys_fail_the_record_instead_of_skipping_it(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    record = event["Records"][0]
    _seed(table, record)
    _leave_keys_unprocessed(times=100)
    assert isinstance(_whole_batch_error(handler, event), RecipientUnavailableError)
    assert sent_emails() == []
    assert _claim(table, record) is None


def test_unprocessed_keys_are_asked_for_again(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0])
    _leave_keys_unprocessed(times=1)
    assert handler(event, Context(10_000)) == {"batchItemFailures": []}
    assert recipients() == ["ada@example.com"]


def _put_sending_claim(table: Table, record: dict[str, Any], *, lease_until: int) -> None:
    now = int(time.time())
    table.put_item(
        Item={
            **_claim_key(record),
            "type": "welcome_email",
            "status": "sending",
            "claim_token": "other-invocation",
            "claimed_at": now - 600,
            "lease_until": lease_until,
            "expires_at": now + 7 * 24 * 3600,
        }
    )


def test_stale_sending_claim_is_taken_over_and_sent(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    record = event["Records"][0]
    _seed(table, record)
    _put_sending_claim(table, record, lease_until=int(time.time()) - 60)
    assert handler(event, Context(10_000)) == {"batchItemFailures": []}
    (message,) = sent_emails()
    claim = _claim(table, record)
    assert claim is not None
    assert (claim["status"], claim["message_id"]) == ("sent", message.id)
    assert claim["claim_token"] != "other-invocation"


def test_live_sending_claim_fails_the_record_without_sending(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    record = event["Records"][0]
    _seed(table, record)
    _put_sending_claim(table, record, lease_until=int(time.time()) + 60)
    assert isinstance(_whole_batch_error(handler, event), WelcomeInProgressError)
    assert sent_emails() == []
    claim = _claim(table, record)
    assert claim is not None
    assert (claim["status"], claim["claim_token"]) == ("sending", "other-invocation")


def test_missing_student_is_skipped_not_retried(
    table: Table, handler: Handler, load_event: LoadEvent, verified_sender: None
) -> None:
    event = load_event("stream_enrollment_insert")
    _seed(table, event["Records"][0], student=False)
    assert handler(event, Context(10_000)) == {"batchItemFailures": []}
    assert sent_emails() == []
    assert _claim(table, event["Records"][0]) is None
