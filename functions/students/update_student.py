"""PATCH /students/{student_id}: name, e-mail (still unique) and metadata."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.students import StudentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, respond
from learnflow.models.students import StudentOut, StudentUpdate
from learnflow.observability import logger

app = make_app(
    permission="students:write",
    answers=((409, "email_taken"),),
)


@app.patch("/students/<student_id>", responses=ok(200, "The updated student", StudentOut))
def update_student(student_id: str, body: StudentUpdate) -> Response[str]:
    student = repository(StudentRepository).update(caller(app).tenant, student_id, body)
    return respond(StudentOut.from_domain(student))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
