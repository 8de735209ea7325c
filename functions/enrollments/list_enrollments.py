"""GET /enrollments: newest first, filtered by student, course and status (alone or combined)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.enrollments import EnrollmentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, query, respond
from learnflow.models.enrollments import EnrollmentList, EnrollmentListQuery
from learnflow.observability import logger

app = make_app(permission="enrollments:read", query=EnrollmentListQuery)


@app.get("/enrollments", responses=ok(200, "A page of enrollments, newest first", EnrollmentList))
def list_enrollments() -> Response[str]:
    listing = repository(EnrollmentRepository).list(
        caller(app).tenant, query(app, EnrollmentListQuery)
    )
    return respond(EnrollmentList.of(listing))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
