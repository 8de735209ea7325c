"""GET /instructors/{instructor_id}."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.instructors import InstructorRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.instructors import InstructorOut
from learnflow.observability import logger

app = make_app(permission="instructors:read")


@app.get("/instructors/<instructor_id>", responses=ok(200, "The instructor", InstructorOut))
def get_instructor(instructor_id: str) -> Response[str]:
    instructor = repository(InstructorRepository).get(caller(app).tenant, instructor_id)
    return respond(InstructorOut.from_domain(instructor))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
