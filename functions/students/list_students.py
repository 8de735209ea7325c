"""GET /students: newest first, filtered by e-mail (case-insensitive), with cursors."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.db.students import StudentRepository
from learnflow.deps import repository
from learnflow.http import caller, make_app, ok, query, respond
from learnflow.models.students import StudentList, StudentListQuery
from learnflow.observability import logger

app = make_app(permission="students:read", query=StudentListQuery)


@app.get("/students", responses=ok(200, "A page of students, newest first", StudentList))
def list_students() -> Response[str]:
    listing = repository(StudentRepository).list(caller(app).tenant, query(app, StudentListQuery))
    return respond(StudentList.of(listing))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
