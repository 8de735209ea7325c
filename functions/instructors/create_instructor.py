"""POST /instructors: a new instructor (201)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.instructors import InstructorRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, new_id, ok, respond
from learnflow.models.instructors import InstructorCreate, InstructorOut
from learnflow.observability import logger

app = make_app(permission="instructors:write", creates="ins")


@app.post("/instructors", responses=ok(201, "The new instructor", InstructorOut))
def create_instructor(body: InstructorCreate) -> Response[str]:
    instructor = repository(InstructorRepository).create(
        caller(app).tenant, body, instructor_id=new_id(app)
    )
    return respond(InstructorOut.from_domain(instructor), 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
