"""GET /openapi.json: the API's OpenAPI document (no key needed; generated, see learnflow_cli)."""

from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.http import make_app
from learnflow.observability import logger

app = make_app(authenticated=False)


@cache
def _document() -> str:
    # Packaged beside this module (CodeUri functions/openapi/); read once per warm container.
    return (Path(__file__).parent / "openapi.json").read_text()


@app.get(
    "/openapi.json",
    responses={
        200: {
            "description": "This document (OpenAPI 3.1)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def get_openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=_document(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
