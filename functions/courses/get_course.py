"""GET /courses/{course_id}."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.courses import CourseRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.courses import CourseOut
from learnflow.observability import logger

app = make_app(permission="courses:read")


@app.get("/courses/<course_id>", responses=ok(200, "The course", CourseOut))
def get_course(course_id: str) -> Response[str]:
    return respond(
        CourseOut.from_domain(repository(CourseRepository).get(caller(app).tenant, course_id))
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
