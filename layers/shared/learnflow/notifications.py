"""Welcome e-mails for new enrollments: claim once per enrollment, compose, send through SES v2."""

# Exactly once, as far as SES allows. Stream delivery is at-least-once: a record comes again after
# a crash, and with ReportBatchItemFailures Lambda resumes from the LOWEST failed sequence number,
# so records after a failed one that were already mailed are delivered again. Each enrollment's
# mail is therefore guarded by a claim item (`keys.welcome_email`): a conditional put marks it
# `sending` for as long as this invocation may live, SES sends, then the claim becomes `sent` with
# SES's message id, and any later delivery of the record finds it and sends nothing.
#
# The one window left: a crash (timeout, out of memory) after SES accepted the mail but before the
# claim says `sent` leaves a `sending` claim, which a redelivery takes over once its lease ends and
# sends again. Likewise a timeout while SES answers is ambiguous and releases the claim. For a
# welcome mail a rare second copy is the safer failure than never sending it, so both resend.
#
# Why not Powertools' idempotency utility: over this table (PK + SK) it keys every record under
# one static partition with a hash of the payload as sort key, outside the key grammar of
# `learnflow.db.keys`; the claim here is per tenant and enrollment, readable (`WELCOME#<acct>#
# <mode>#<enr>`, `type`, `status`, SES message id) and what the function's IAM policy scopes its
# writes to. Its in-progress lease is the same as ours (the invocation's remaining time), and so
# is the window above, so a few dozen lines buy the readable item without a second scheme.

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from learnflow import clients
from learnflow.config import get_settings
from learnflow.db import keys
from learnflow.observability import logger, metrics
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesServiceResourceTypeDef
    from mypy_boto3_sesv2.client import SESV2Client

CLAIM_TYPE: Final = "welcome_email"
SENDING: Final = "sending"
SENT: Final = "sent"
# A claim outlives any redelivery (streams keep records 24 h), then DynamoDB's TTL removes it.
CLAIM_KEEP_SECONDS: Final = 7 * 24 * 3600
# Lease of a `sending` claim when the caller cannot say how long it may still run.
DEFAULT_LEASE_SECONDS: Final = 300
# Clocks of two invocations may disagree a little: a lease is only taken over after this margin.
_CLOCK_SKEW_SECONDS: Final = 5
_CLAIM_ATTEMPTS: Final = 3
_BATCH_GET_ATTEMPTS: Final = 3
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"

Outcome = Literal["sent", "already_sent", "recipient_gone", "not_requested"]


class MissingRecipientError(LookupError):
    """The enrollment's student or course is gone: nothing to send, and no retry will help."""


class RetryableError(RuntimeError):
    """This record cannot be handled now; raise so the stream delivers it again."""


class RecipientUnavailableError(RetryableError):
    """DynamoDB left the student or course unread (throttling): retry, do not skip."""


class WelcomeInProgressError(RetryableError):
    """Another invocation holds a live claim on this e-mail and may be sending it right now."""


@dataclass(frozen=True, slots=True)
class WelcomeEmail:
    to: str
    subject: str
    text: str


def compose(student: Mapping[str, Any], course: Mapping[str, Any]) -> WelcomeEmail:
    """The e-mail for `student` enrolled in `course` (SES v2 templates are rendered here, in code,
    so the local mail sink shows exactly what production sends)."""
    name = str(student.get("name") or "there")
    title = str(course.get("title") or "your course")
    return WelcomeEmail(
        to=str(student["email"]),
        subject=f"Welcome to {title}",
        text=(
            f"Hi {name},\n\nYou are enrolled in {title}. We're glad to have you.\n\n"
            "— The LearnFlow team\n"
        ),
    )


def load_recipient(
    dynamodb: DynamoDBServiceResource,
    table_name: str,
    tenant: Tenant,
    student_id: str,
    course_id: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The student and the course of an enrollment, in one BatchGetItem.

    Raises `MissingRecipientError` only when DynamoDB answered and one of them is not there;
    keys it left unprocessed are asked for again a few times, then `RecipientUnavailableError`.
    """
    student_key = keys.item(tenant, keys.STUDENT, student_id)
    course_key = keys.item(tenant, keys.COURSE, course_id)
    request: dict[str, KeysAndAttributesServiceResourceTypeDef] = {
        table_name: {"Keys": [student_key, course_key], "ConsistentRead": True}
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for attempt in range(_BATCH_GET_ATTEMPTS):
        if attempt:
            time.sleep(0.05 * 2**attempt)  # AWS's advice for unprocessed keys: back off
        response = dynamodb.batch_get_item(RequestItems=request)
        for item in response.get("Responses", {}).get(table_name, []):
            found[(str(item[keys.PK]), str(item[keys.SK]))] = dict(item)
        unprocessed = response.get("UnprocessedKeys", {}).get(table_name)
        if not unprocessed or not unprocessed.get("Keys"):
            break
        request = {table_name: {"Keys": unprocessed["Keys"], "ConsistentRead": True}}
    else:
        raise RecipientUnavailableError("DynamoDB left the enrollment's student or course unread")
    student = found.get((student_key[keys.PK], student_key[keys.SK]))
    course = found.get((course_key[keys.PK], course_key[keys.SK]))
    if student is None or course is None or not student.get("email"):
        raise MissingRecipientError("the enrollment's student or course no longer exists")
    return student, course


def send(ses: SESV2Client, sender: str, email: WelcomeEmail) -> str:
    """Send through SES v2; returns SES's message id."""
    response = ses.send_email(
        FromEmailAddress=sender,
        Destination={"ToAddresses": [email.to]},
        Content={
            "Simple": {
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": email.text, "Charset": "UTF-8"}},
            }
        },
    )
    return str(response["MessageId"])


def welcome(image: Mapping[str, Any], *, lease_seconds: float | None = None) -> Outcome:
    """Send the welcome e-mail of the enrollment whose stream NewImage is `image`, once per
    enrollment however often the record comes (but for the window described at the top).

    `lease_seconds` is how long this invocation may still run (Lambda's remaining time): no other
    invocation takes the claim over before then. Raises `RetryableError` (and lets AWS errors
    through) when the record must be delivered again; returns what was done otherwise.
    """
    outcome = _welcome(image, lease_seconds)
    metrics.add("WelcomeEmails", outcome=outcome)
    return outcome


def _welcome(image: Mapping[str, Any], lease_seconds: float | None) -> Outcome:
    if image.get(keys.TYPE_ATTRIBUTE) != "enrollment" or image.get("welcome_email") != "requested":
        return "not_requested"  # the stream filter should have dropped it; never mail unasked
    tenant = Tenant(account_id=str(image["account_id"]), mode=image["mode"])
    enrollment_id = str(image["id"])
    settings = get_settings()
    try:
        student, course = load_recipient(
            clients.dynamodb(),
            settings.require_table(),
            tenant,
            str(image["student_id"]),
            str(image["course_id"]),
        )
    except MissingRecipientError:
        logger.warning("welcome e-mail skipped: recipient gone", enrollment_id=enrollment_id)
        return "recipient_gone"

    claim = _Claim(clients.table(), keys.welcome_email(tenant, enrollment_id))
    if not claim.take(DEFAULT_LEASE_SECONDS if lease_seconds is None else lease_seconds):
        logger.info("welcome e-mail already sent", enrollment_id=enrollment_id)
        return "already_sent"
    try:
        message_id = send(clients.ses(), settings.sender_email, compose(student, course))
    except (ClientError, BotoCoreError):
        claim.release()  # SES did not take it (or cannot say): let the retry send it
        raise
    claim.mark_sent(message_id)
    logger.info("welcome e-mail sent", enrollment_id=enrollment_id, message_id=message_id)
    return "sent"


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == _CONDITION_FAILED


class _Claim:
    """One invocation's hold on one enrollment's e-mail, told apart from others by a token."""

    def __init__(self, table: Table, key: keys.Key) -> None:
        self._table = table
        self._key = key
        self._token = uuid.uuid4().hex

    def take(self, lease_seconds: float) -> bool:
        """True: ours to send. False: already sent. `WelcomeInProgressError`: someone is on it."""
        now = int(time.time())
        lease_until = now + math.ceil(max(lease_seconds, 0)) + _CLOCK_SKEW_SECONDS
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                self._table.put_item(
                    Item={
                        **self._key,
                        keys.TYPE_ATTRIBUTE: CLAIM_TYPE,
                        "status": SENDING,
                        "claim_token": self._token,
                        "claimed_at": now,
                        "lease_until": lease_until,
                        keys.TTL_ATTRIBUTE: now + CLAIM_KEEP_SECONDS,
                    },
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": keys.PK},
                )
                return True
            except ClientError as error:
                if not _condition_failed(error):
                    raise
            existing = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item")
            if existing is None:
                continue  # released between our put and our read: claim it afresh
            if existing.get("status") == SENT:
                return False
            lease = existing.get("lease_until")
            if isinstance(lease, Decimal | int) and now < lease:
                raise WelcomeInProgressError("another invocation is sending this welcome e-mail")
            # The holder's lease is over, so that invocation has ended without marking the claim:
            # take it over, unless a third one got there first (the token changes on every take).
            try:
                self._table.update_item(
                    Key=self._key,
                    UpdateExpression=(
                        "SET claim_token = :mine, claimed_at = :now, lease_until = :lease"
                    ),
                    ConditionExpression="#status = :sending AND claim_token = :theirs",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":mine": self._token,
                        ":now": now,
                        ":lease": lease_until,
                        ":sending": SENDING,
                        ":theirs": existing.get("claim_token", ""),
                    },
                )
                return True
            except ClientError as error:
                if not _condition_failed(error):
                    raise
        raise WelcomeInProgressError("the welcome e-mail claim keeps changing hands")

    def mark_sent(self, message_id: str) -> None:
        """Record SES's acceptance. Failing here must not fail the record: the mail went, and a
        retry could only send it again, so it is logged and the claim's lease runs out instead."""
        try:
            self._table.update_item(
                Key=self._key,
                UpdateExpression="SET #status = :sent, message_id = :id, sent_at = :now "
                "REMOVE lease_until",
                ConditionExpression="claim_token = :mine",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":sent": SENT,
                    ":id": message_id,
                    ":now": int(time.time()),
                    ":mine": self._token,
                },
            )
        except (ClientError, BotoCoreError):
            logger.exception(
                "welcome e-mail sent but its claim was not marked sent",
                claim=self._key[keys.PK],
                message_id=message_id,
            )

    def release(self) -> None:
        """Give the claim up after a failed send, unless it is no longer ours."""
        try:
            self._table.delete_item(
                Key=self._key,
                ConditionExpression="claim_token = :mine",
                ExpressionAttributeValues={":mine": self._token},
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
