"""GET /instructors: newest first, with cursors (docs/api.md §9)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.instructors import InstructorRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, query, respond
from learnflow.models.instructors import InstructorList, InstructorListQuery
from learnflow.observability import logger

app = make_app(permission="instructors:read", query=InstructorListQuery)


@app.get("/instructors", responses=ok(200, "A page of instructors, newest first", InstructorList))
def list_instructors() -> Response[str]:
    listing = repository(InstructorRepository).list(
        caller(app).tenant, query(app, InstructorListQuery)
    )
    return respond(InstructorList.of(listing))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
