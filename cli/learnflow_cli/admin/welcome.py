"""`learnflow welcome resend`: send the welcome e-mails of stream records the function gave up on.

The stream function's event source keeps what it could not deliver after its retries in the
failure bucket (template.yaml's WelcomeFailureBucket): one JSON object per failed batch, with the
batch itself (`payload`: the stream event, each record's new image). For each record this finds
the enrollment as it is now, and if it is still active, calls `learnflow.notifications.welcome`,
the stream function's own code: it claims the e-mail per enrollment, so a mail already sent (by a
retry, or by an earlier resend) is never sent twice. A file whose records all came to an end
(sent, already sent, nothing to send) is then deleted, so the bucket holds only what still needs
attention; a record that fails again keeps its file for the next run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from learnflow_cli.admin.commands import (
    TABLE_ENV,
    AdminGroup,
    _clean_errors,
    _emit,
    _session,
    _setup_logging,
)
from learnflow_cli.admin.service import AdminError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudformation.client import CloudFormationClient

BUCKET_ENV = "LEARNFLOW_WELCOME_FAILURE_BUCKET"
SENDER_ENV = "LEARNFLOW_SENDER_EMAIL"
# Where Lambda writes a stream mapping's failures: aws/lambda/<mapping uuid>/<shard>/<date>/…
FAILURE_PREFIX = "aws/lambda/"
# Outcomes that settle a record; any other ("failed", "unreadable") keeps its file.
SETTLED = ("sent", "already_sent", "recipient_gone", "not_requested", "not_active")


@dataclass(frozen=True, slots=True)
class Target:
    bucket: str
    table: str
    sender: str | None


def _stack(session: boto3.session.Session, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's outputs and parameters."""
    client: CloudFormationClient = session.client("cloudformation")
    stacks = client.describe_stacks(StackName=stack)["Stacks"]
    if not stacks:
        raise AdminError(f"no stack named {stack}")
    outputs = {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in stacks[0].get("Outputs", [])
        if "OutputKey" in o and "OutputValue" in o
    }
    parameters = {
        str(p["ParameterKey"]): str(p.get("ParameterValue", ""))
        for p in stacks[0].get("Parameters", [])
        if "ParameterKey" in p
    }
    return outputs, parameters


def _target(
    session: boto3.session.Session,
    *,
    bucket: str | None,
    table: str | None,
    sender: str | None,
    stack: str | None,
) -> Target:
    """Flags win, then the stack's outputs and parameters, then the environment."""
    outputs, parameters = _stack(session, stack) if stack else ({}, {})
    found_bucket = bucket or outputs.get("WelcomeFailureBucketName") or os.environ.get(BUCKET_ENV)
    found_table = table or outputs.get("TableName") or os.environ.get(TABLE_ENV)
    if not found_bucket:
        raise AdminError(f"no failure bucket: give --bucket, --stack or set {BUCKET_ENV}")
    if not found_table:
        raise AdminError(f"no table: give --table, --stack or set {TABLE_ENV}")
    found_sender = sender or parameters.get("SenderEmail") or os.environ.get(SENDER_ENV)
    return Target(found_bucket, found_table, found_sender)


def failure_files(s3: Any, bucket: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(key, document) for every failure record in the bucket, oldest first; the document is
    None when the file is not a JSON object (it is then reported and kept)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=FAILURE_PREFIX)
    found = [item for page in pages for item in page.get("Contents", [])]
    for item in sorted(found, key=lambda item: (item["LastModified"], item["Key"])):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        yield str(item["Key"]), document if isinstance(document, dict) else None


def stream_records(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stream records a failure document kept (`payload` is the invocation's event, as
    JSON text or as an object)."""
    payload = document.get("payload")
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        return []
    return [record for record in payload.get("Records", []) if isinstance(record, dict)]


_deserializer = TypeDeserializer()


def _image(record: Mapping[str, Any]) -> dict[str, Any] | None:
    image = (record.get("dynamodb") or {}).get("NewImage")
    if not isinstance(image, dict):
        return None
    return {name: _deserializer.deserialize(value) for name, value in image.items()}


def resend_record(record: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
    """One record: the enrollment as it is now, then the stream function's own `welcome`."""
    from learnflow import clients  # noqa: PLC0415 - after the environment is set
    from learnflow.db import keys  # noqa: PLC0415
    from learnflow.notifications import welcome  # noqa: PLC0415

    image = _image(record)
    if image is None or keys.PK not in image:
        return {"enrollment_id": None, "outcome": "not_requested"}
    enrollment_id = str(image.get("id", image.get(keys.SK, "")))
    key = {keys.PK: image[keys.PK], keys.SK: image[keys.SK]}
    current = clients.table().get_item(Key=key, ConsistentRead=True).get("Item")
    if current is None or current.get("status") != "active":
        # Cancelled (or gone) since: a welcome to a course they left would be wrong.
        return {"enrollment_id": enrollment_id, "outcome": "not_active"}
    if dry_run:
        return {"enrollment_id": enrollment_id, "outcome": "would_send"}
    try:
        outcome = welcome(dict(current))
    except (ClientError, BotoCoreError, RuntimeError) as error:
        return {"enrollment_id": enrollment_id, "outcome": "failed", "error": str(error)}
    return {"enrollment_id": enrollment_id, "outcome": outcome}


@click.group(cls=AdminGroup)
def welcome() -> None:
    """Welcome e-mails the stream function gave up on."""
    _setup_logging()
    # The stream function's code logs through the layer's logger, to stdout as Lambda wants;
    # here stdout is the command's answer (one JSON object with --json), so its lines go to
    # standard error, whichever stream that is now (a test runner swaps it per invocation).
    from learnflow.observability import logger  # noqa: PLC0415

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        previous = handler.setStream(sys.stderr)
        if previous is not None:  # as it was, once the command is done (embedding programs)
            click.get_current_context().call_on_close(lambda: handler.setStream(previous))


@welcome.command("resend")
@click.option("--bucket", metavar="NAME", help=f"The failure bucket (env {BUCKET_ENV}).")
@click.option("--sender", metavar="EMAIL", help="From address (default: the stack's SenderEmail).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and delete nothing.")
@click.option("--keep", is_flag=True, help="Leave the failure files in the bucket.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--stack",
    metavar="NAME",
    help="Read the bucket, table and sender from this CloudFormation stack.",
)
@click.option("--table", metavar="NAME", help=f"The LearnFlow table (env {TABLE_ENV}).")
def resend(
    *,
    bucket: str | None,
    sender: str | None,
    dry_run: bool,
    keep: bool,
    as_json: bool,
    stack: str | None,
    table: str | None,
) -> None:
    """Send the welcome e-mails of failed stream records, once each (docs/operations.md)."""
    with _clean_errors(as_json):
        session = _session()
        target = _target(session, bucket=bucket, table=table, sender=sender, stack=stack)
        report = _resend(session, target, dry_run=dry_run, keep=keep)

    def human() -> None:
        for entry in report["records"]:
            error = f"  ({entry['error']})" if entry.get("error") else ""
            click.echo(f"{entry['file']}  {entry['enrollment_id']}  {entry['outcome']}{error}")
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report["outcomes"].items()))
        click.echo(
            f"{len(report['files'])} failure file(s), {len(report['records'])} record(s)"
            + (f": {counts}" if counts else "")
            + (f"; deleted {len(report['deleted'])} file(s)" if report["deleted"] else "")
        )

    _emit(report, as_json, human)
    if set(report["outcomes"]) - {*SETTLED, "would_send"}:
        raise SystemExit(1)  # something still needs attention (its file is kept)


def _resend(
    session: boto3.session.Session, target: Target, *, dry_run: bool, keep: bool
) -> dict[str, Any]:
    from learnflow import clients  # noqa: PLC0415

    # The stream function's code reads its settings from the environment, as in Lambda.
    os.environ["LEARNFLOW_TABLE"] = target.table
    if target.sender:
        os.environ[SENDER_ENV] = target.sender
    clients.reset()
    s3 = session.client("s3")
    records: list[dict[str, Any]] = []
    files: list[str] = []
    deleted: list[str] = []
    for key, document in failure_files(s3, target.bucket):
        files.append(key)
        if document is None:
            results = [{"file": key, "enrollment_id": None, "outcome": "unreadable"}]
        else:
            results = [
                {"file": key, **resend_record(record, dry_run=dry_run)}
                for record in stream_records(document)
            ]
        records += results
        if not (dry_run or keep) and all(r["outcome"] in SETTLED for r in results):
            s3.delete_object(Bucket=target.bucket, Key=key)
            deleted.append(key)
    return {
        "object": "welcome_resend",
        "bucket": target.bucket,
        "dry_run": dry_run,
        "files": files,
        "records": records,
        "outcomes": dict(Counter(r["outcome"] for r in records)),
        "deleted": deleted,
    }
