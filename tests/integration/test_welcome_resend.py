"""`learnflow welcome resend` and `learnflow keys revoke --flush-cache`, through click's CliRunner
against moto (S3 for the failure bucket, DynamoDB, SES, CloudFormation for --stack)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from learnflow import clients
from learnflow.db import keys
from learnflow.tenancy import Tenant
from learnflow_cli.admin.service import Admin
from tests.support.aws import SENDER, SESSION, recipients, sent_emails
from tests.support.cli import run, run_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

BUCKET = "learnflow-welcome-failures"
TENANT = Tenant("acct_0Vc6yUrMOxvHfKBXzkSl1tWx", "test")


@pytest.fixture
def bucket(table: Table, monkeypatch: pytest.MonkeyPatch) -> str:
    # The command sets these for the stream function's code; monkeypatch restores them.
    monkeypatch.setenv("LEARNFLOW_SENDER_EMAIL", SENDER)
    monkeypatch.setenv("LEARNFLOW_TABLE", table.name)
    SESSION.client("s3").create_bucket(Bucket=BUCKET)
    SESSION.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    return BUCKET


def _enrollment(table: Table, n: int, *, status: str = "active") -> dict[str, Any]:
    """A student, a course and an enrollment that asked for the welcome e-mail."""
    student_id, course_id = f"stu_{n:024d}", f"crs_{n:024d}"
    enrollment_id = f"enr_{n:024d}"
    table.put_item(
        Item={
            **keys.item(TENANT, keys.STUDENT, student_id),
            "type": "student",
            "email": f"student{n}@example.com",
            "name": "Ada",
        }
    )
    table.put_item(
        Item={**keys.item(TENANT, keys.COURSE, course_id), "type": "course", "title": "Python"}
    )
    item = {
        **keys.item(TENANT, keys.ENROLLMENT, enrollment_id),
        "type": "enrollment",
        "account_id": TENANT.account_id,
        "mode": TENANT.mode,
        "id": enrollment_id,
        "status": "active",
        "student_id": student_id,
        "course_id": course_id,
        "welcome_email": "requested",
    }
    table.put_item(Item={**item, "status": status})
    return item


def _failure(records: list[dict[str, Any]], *, as_text: bool = True) -> dict[str, Any]:
    """What Lambda writes to an S3 on-failure destination for a stream batch."""
    serializer = TypeSerializer()
    event = {
        "Records": [
            {
                "eventID": str(n),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"PK": {"S": image["PK"]}, "SK": {"S": image["SK"]}},
                    "NewImage": {k: serializer.serialize(v) for k, v in image.items()},
                    "SequenceNumber": str(100 + n),
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
            for n, image in enumerate(records)
        ]
    }
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "DDBStreamBatchInfo": {"shardId": "shardId-1", "batchSize": len(records)},
        "payload": json.dumps(event) if as_text else event,
    }


def _put(name: str, document: dict[str, Any] | bytes) -> str:
    key = f"aws/lambda/0b5c3e2a-uuid/shardId-1/2026/11/29/{name}"
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    SESSION.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def _files() -> list[str]:
    listed = SESSION.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return [str(item["Key"]) for item in listed]


def test_resends_each_failed_record_once_and_deletes_the_file(table: Table, bucket: str) -> None:
    first, second = _enrollment(table, 1), _enrollment(table, 2)
    _put("a", _failure([first, second]))
    _put("b", _failure([second], as_text=False))  # the same record failed twice

    report = run_json("welcome", "resend", "--bucket", bucket)

    assert recipients() == ["student1@example.com", "student2@example.com"]
    assert [r["outcome"] for r in report["records"]] == ["sent", "sent", "already_sent"]
    assert report["outcomes"] == {"sent": 2, "already_sent": 1}
    assert _files() == []
    assert sorted(report["deleted"]) == sorted(report["files"])
    # Run again: nothing left, nothing sent.
    assert run_json("welcome", "resend", "--bucket", bucket)["files"] == []
    assert len(recipients()) == 2


def test_a_mail_the_stream_function_already_sent_is_not_sent_again(
    table: Table, bucket: str
) -> None:
    enrollment = _enrollment(table, 3)
    table.put_item(
        Item={
            **keys.welcome_email(TENANT, enrollment["id"]),
            "type": "welcome_email",
            "status": "sent",
        }
    )
    _put("c", _failure([enrollment]))

    report = run_json("welcome", "resend", "--bucket", bucket)

    assert report["outcomes"] == {"already_sent": 1}
    assert recipients() == []
    assert _files() == []


def test_a_cancelled_enrollment_gets_no_welcome(table: Table, bucket: str) -> None:
    _put("d", _failure([_enrollment(table, 4, status="canceled")]))

    report = run_json("welcome", "resend", "--bucket", bucket)

    assert report["outcomes"] == {"not_active": 1}
    assert recipients() == []


def test_dry_run_sends_and_deletes_nothing(table: Table, bucket: str) -> None:
    key = _put("e", _failure([_enrollment(table, 5)]))

    report = run_json("welcome", "resend", "--bucket", bucket, "--dry-run")

    assert report["outcomes"] == {"would_send": 1}
    assert recipients() == []
    assert _files() == [key]


def test_a_record_that_fails_again_keeps_its_file_and_fails_the_command(
    table: Table, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _put("f", _failure([_enrollment(table, 6)]))
    unreadable = _put("g", b"not json")
    original = vars(BaseClient)["_make_api_call"]

    def refuse(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "SendEmail":
            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse)
    report = run_json("welcome", "resend", "--bucket", bucket, code=1)

    assert report["outcomes"] == {"failed": 1, "unreadable": 1}
    assert sorted(_files()) == sorted([key, unreadable])
    # The claim was released: the next run sends it.
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    clients.reset()
    assert run_json("welcome", "resend", "--bucket", bucket, code=1)["outcomes"] == {
        "sent": 1,
        "unreadable": 1,
    }
    assert _files() == [unreadable]


@pytest.mark.filterwarnings("ignore::UserWarning")  # moto does not model the placeholder resource
def test_bucket_table_and_sender_come_from_the_stack(
    table: Table, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    SESSION.client("sesv2").create_email_identity(EmailIdentity="hello@learnflow.com")
    template = {
        "Parameters": {"SenderEmail": {"Type": "String"}},
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {
            "WelcomeFailureBucketName": {"Value": bucket},
            "TableName": {"Value": table.name},
        },
    }
    SESSION.client("cloudformation").create_stack(
        StackName="learnflow",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "SenderEmail", "ParameterValue": "hello@learnflow.com"}],
    )
    monkeypatch.delenv("LEARNFLOW_SENDER_EMAIL")
    _put("h", _failure([_enrollment(table, 7)]))

    result = run("welcome", "resend", "--stack", "learnflow")

    assert result.exit_code == 0, result.output
    assert "sent" in result.stdout
    assert [m.source for m in sent_emails()] == ["hello@learnflow.com"]


def test_without_a_bucket_it_is_a_clean_error(table: Table) -> None:
    result = run("welcome", "resend")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no failure bucket")


# --- keys revoke --flush-cache ---


def test_revoke_with_flush_cache_flushes_the_stage_authorizer_cache(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = Admin(table, None, {})
    key = admin.create_key(admin.create_account("Acme", "standard")["id"], "test")
    flushed: list[dict[str, Any]] = []
    original = vars(BaseClient)["_make_api_call"]

    def flush(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "FlushStageAuthorizersCache":  # moto does not implement it
            flushed.append(params)
            return {}
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", flush)
    revoked = run_json("keys", "revoke", key["id"], "--flush-cache", "--api-id", "abc123")

    assert revoked["status"] == "revoked"
    assert revoked["authorizer_cache_flushed"] == "abc123"
    assert flushed == [{"restApiId": "abc123", "stageName": "v2"}]


def test_flush_cache_without_an_api_is_a_clean_error(table: Table) -> None:
    admin = Admin(table, None, {})
    key = admin.create_key(admin.create_account("Acme", "standard")["id"], "test")

    result = run("keys", "revoke", key["id"], "--flush-cache")

    assert result.exit_code == 1
    assert "--api-id or --stack" in result.stderr
