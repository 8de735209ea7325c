"""PATCH /courses/{course_id}: change any field, move through the status machine."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.courses import CourseRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.courses import CourseOut, CourseUpdate
from learnflow.observability import logger

app = make_app(
    permission="courses:write",
    answers=((400, "resource_missing"), (400, "invalid_status_transition")),
)


@app.patch("/courses/<course_id>", responses=ok(200, "The updated course", CourseOut))
def update_course(course_id: str, body: CourseUpdate) -> Response[str]:
    course = repository(CourseRepository).update(caller(app).tenant, course_id, body)
    return respond(CourseOut.from_domain(course))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
