"""GET /students/{student_id}."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.students import StudentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.students import StudentOut
from learnflow.observability import logger

app = make_app(permission="students:read")


@app.get("/students/<student_id>", responses=ok(200, "The student", StudentOut))
def get_student(student_id: str) -> Response[str]:
    return respond(
        StudentOut.from_domain(repository(StudentRepository).get(caller(app).tenant, student_id))
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
