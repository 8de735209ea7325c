"""DynamoDB stream → the welcome e-mail of each new active enrollment that asked for one."""

# The event source's filter passes only INSERTs of active enrollments with `welcome_email`
# requested. Failures are reported per record (ReportBatchItemFailures), but Lambda then resumes
# from the lowest failed sequence number, so records after it come again, and stream delivery is
# at-least-once anyway: `welcome` claims each enrollment's mail so a redelivery does not resend.
# Records that still fail after their retries are written whole to the failure bucket (S3), from
# which `learnflow welcome resend` sends them again (docs/operations.md).

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

from learnflow.notifications import welcome
from learnflow.observability import instrument, logger

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord, lambda_context: LambdaContext) -> None:
    image = record.dynamodb.new_image if record.dynamodb else {}
    welcome(image, lease_seconds=lambda_context.get_remaining_time_in_millis() / 1000)


@logger.inject_lambda_context
@instrument()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
