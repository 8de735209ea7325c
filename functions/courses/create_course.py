"""POST /courses: a new draft course (201)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.courses import CourseRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, new_id, ok, respond
from learnflow.models.courses import CourseCreate, CourseOut
from learnflow.observability import logger

app = make_app(
    permission="courses:write",
    creates="crs",
    answers=((400, "resource_missing"),),
)


@app.post("/courses", responses=ok(201, "The new course, a draft", CourseOut))
def create_course(body: CourseCreate) -> Response[str]:
    course = repository(CourseRepository).create(caller(app).tenant, body, course_id=new_id(app))
    return respond(CourseOut.from_domain(course), 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
