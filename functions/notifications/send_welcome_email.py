"""DynamoDB stream → the welcome e-mail of each new active enrollment that asked for one.

The event source's filter passes only INSERTs of enrollments with `status` active and
`welcome_email` requested; each record's failure is reported on its own (ReportBatchItemFailures)
so one bad record never resends the others' mail, and exhausted retries land in the DLQ.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow import clients
from learnflow.config import get_settings
from learnflow.notifications import MissingRecipientError, compose, load_recipient, send
from learnflow.observability import logger
from learnflow.tenancy import Tenant

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def welcome(record: DynamoDBRecord) -> None:
    image = record.dynamodb.new_image if record.dynamodb else {}
    if image.get("type") != "enrollment" or image.get("welcome_email") != "requested":
        return  # the filter should have dropped it; never mail what was not asked for
    tenant = Tenant(account_id=str(image["account_id"]), mode=image["mode"])
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
        logger.warning("welcome e-mail skipped: recipient gone", enrollment_id=image.get("id"))
        return
    message_id = send(clients.ses(), settings.sender_email, compose(student, course))
    logger.info("welcome e-mail sent", enrollment_id=image.get("id"), message_id=message_id)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=welcome, processor=processor, context=context
        )
    )
