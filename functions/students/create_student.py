"""POST /students (not built yet: answers 501 `not_implemented`)."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.errors import NotImplementedYetError
from learnflow.http import make_app
from learnflow.observability import logger

app = make_app(permission="students:write")


@app.post("/students")
def create_student() -> Response[str]:
    raise NotImplementedYetError("POST /students is not implemented yet.")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
