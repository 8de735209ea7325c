"""GET /docs: the API reference as a browsable HTML page, rendered from the OpenAPI document
(no key needed)."""

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
def _page() -> str:
    # Built once per warm container from the document packaged beside this module.
    document = (Path(__file__).parent / "openapi.json").read_text()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>LearnFlow API v2</title>"
        f"</head><body><pre id='openapi'>{document}</pre></body></html>"
    )


@app.get("/docs")
def get_docs() -> Response[str]:
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=_page())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
