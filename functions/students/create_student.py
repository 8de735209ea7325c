"""POST /students: a new student (201); 409 `email_taken` for an address already in use."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.students import StudentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, new_id, ok, respond
from learnflow.models.students import StudentCreate, StudentOut
from learnflow.observability import logger

app = make_app(
    permission="students:write",
    creates="stu",
    answers=((409, "email_taken"),),
)


@app.post("/students", responses=ok(201, "The new student", StudentOut))
def create_student(body: StudentCreate) -> Response[str]:
    student = repository(StudentRepository).create(caller(app).tenant, body, student_id=new_id(app))
    return respond(StudentOut.from_domain(student), 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
