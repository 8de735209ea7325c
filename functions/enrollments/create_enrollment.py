"""POST /enrollments: enroll a student in a published course, charging its price exactly once."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.deps import enrollment_service
from learnflow.http import caller, make_app, new_id, ok, remaining_ms, respond
from learnflow.models.enrollments import EnrollmentCreate, EnrollmentOut
from learnflow.observability import logger
from learnflow.services.enrollments import Budget

app = make_app(
    permission="enrollments:write",
    creates="enr",
    answers=(
        (400, "resource_missing"),
        (400, "course_not_published"),
        (402, "card_declined"),
        (402, "authentication_required"),
        (409, "already_enrolled"),
        (502, "payment_provider_unavailable"),
        (503, "payment_provider_unavailable"),
    ),
)


@app.post("/enrollments", responses=ok(201, "The new enrollment, active", EnrollmentOut))
def create_enrollment(body: EnrollmentCreate) -> Response[str]:
    enrollment = enrollment_service().enroll(
        caller(app).tenant, body, enrollment_id=new_id(app), budget=Budget.of(remaining_ms(app))
    )
    return respond(EnrollmentOut.from_domain(enrollment), 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
