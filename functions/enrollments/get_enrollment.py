"""GET /enrollments/{enrollment_id}."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.enrollments import EnrollmentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.enrollments import EnrollmentOut
from learnflow.observability import logger

app = make_app(permission="enrollments:read")


@app.get("/enrollments/<enrollment_id>", responses=ok(200, "The enrollment", EnrollmentOut))
def get_enrollment(enrollment_id: str) -> Response[str]:
    enrollment = repository(EnrollmentRepository).get(caller(app).tenant, enrollment_id)
    return respond(EnrollmentOut.from_domain(enrollment))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
