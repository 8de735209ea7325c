"""Welcome e-mails for new enrollments: what to say and how to send it through SES v2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from learnflow.db import keys
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource
    from mypy_boto3_sesv2.client import SESV2Client


class MissingRecipientError(LookupError):
    """The enrollment's student or course is gone: nothing to send, and no retry will help."""


@dataclass(frozen=True, slots=True)
class WelcomeEmail:
    to: str
    subject: str
    text: str


def compose(student: dict[str, Any], course: dict[str, Any]) -> WelcomeEmail:
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
    """The student and the course of an enrollment, in one BatchGetItem."""
    student_key = keys.item(tenant, keys.STUDENT, student_id)
    course_key = keys.item(tenant, keys.COURSE, course_id)
    response = dynamodb.batch_get_item(
        RequestItems={table_name: {"Keys": [student_key, course_key]}}
    )
    found = {
        (str(item[keys.PK]), str(item[keys.SK])): dict(item)
        for item in response.get("Responses", {}).get(table_name, [])
    }
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
