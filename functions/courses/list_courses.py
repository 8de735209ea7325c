"""GET /courses: newest first, filtered by category and/or status, with cursors (docs/api.md §9)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.courses import CourseRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, query, respond
from learnflow.models.courses import CourseList, CourseListQuery
from learnflow.observability import logger

app = make_app(permission="courses:read", query=CourseListQuery)


@app.get("/courses", responses=ok(200, "A page of courses, newest first", CourseList))
def list_courses() -> Response[str]:
    listing = repository(CourseRepository).list(caller(app).tenant, query(app, CourseListQuery))
    return respond(CourseList.of(listing))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
