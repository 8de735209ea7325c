"""POST /enrollments/{enrollment_id}/cancel: cancel, and with `refund: true` refund in full."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.deps import enrollment_service
from learnflow.http import caller, make_app, ok, recovery_token, respond
from learnflow.models.enrollments import EnrollmentCancel, EnrollmentOut
from learnflow.observability import logger

app = make_app(
    permission="enrollments:write",
    answers=(
        (400, "invalid_status_transition"),
        (502, "payment_provider_unavailable"),
        (503, "payment_provider_unavailable"),
    ),
)


@app.post(
    "/enrollments/<enrollment_id>/cancel",
    responses=ok(200, "The enrollment, canceled", EnrollmentOut),
)
def cancel_enrollment(enrollment_id: str, body: EnrollmentCancel) -> Response[str]:
    enrollment = enrollment_service().cancel(
        caller(app).tenant, enrollment_id, body, token=recovery_token(app)
    )
    return respond(EnrollmentOut.from_domain(enrollment))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
