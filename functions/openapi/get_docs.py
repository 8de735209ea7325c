"""GET /docs: the API reference as a browsable HTML page, rendered from the OpenAPI document
(no key needed)."""

# (The docstring above is this operation's description in the OpenAPI document.)
# Swagger UI 5 (it renders OpenAPI 3.1), from the pinned `swagger-ui-py` package of this
# function's requirements.txt, draws the document packaged beside this module. The page is
# self-contained: the renderer's CSS and JS and the document are inlined, so a browser fetches
# nothing else (no CDN, no /openapi.json), and its Content-Security-Policy allows nothing but
# what the page itself carries.

import base64
import hashlib
import html
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from learnflow.http import make_app
from learnflow.observability import logger

app = make_app(authenticated=False)

DOCUMENT = Path(__file__).parent / "openapi.json"
RENDERER = "swagger_ui"  # the import name of swagger-ui-py, whose static/ holds Swagger UI's dist
CACHE_CONTROL = "public, max-age=300"

# Swagger UI's configuration. `spec` is the inlined document, so nothing is downloaded. The base
# layout has no top bar (the standalone preset's bar would load other documents by URL).
# Operations start as a list, each opening on a click or on its deep link (#/<tag>/<operationId>)
# to show its parameters and its table of responses, errors included. "Try it out" is off: the
# policy below forbids the page any request, and keys belong in a terminal, not in a page.
_START = """"use strict";
(function () {
  var source = document.getElementById("openapi-document");
  window.ui = SwaggerUIBundle({
    spec: JSON.parse(source.textContent),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    supportedSubmitMethods: [],
    validatorUrl: null
  });
})();
"""


@dataclass(frozen=True, slots=True)
class Page:
    html: str
    policy: str  # the Content-Security-Policy that lets exactly this page run


def static_dir() -> Path:
    # Found without importing the package: its __init__ imports Jinja2 and every web framework
    # adapter it has, none of which this page needs (the cold start stays short).
    spec = importlib.util.find_spec(RENDERER)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeError("swagger-ui-py is not installed (functions/openapi/requirements.txt)")
    return Path(next(iter(locations))) / "static"


def raw_text(text: str, tag: str) -> str:
    """`text` checked to be safe as the content of a <script> or <style> element.

    HTML escapes nothing inside these: `</script` would end the element early, and in a script
    an unclosed `<!--` followed by `<script>` puts the parser in a state where the real end tag
    no longer ends it. A renderer update that brings either fails here, not in a browser.
    """
    lowered = text.lower()
    if f"</{tag}" in lowered:
        raise ValueError(f"the inlined {tag} contains </{tag}")
    if tag == "script":
        for opening in re.finditer("<!--", lowered):
            closing = lowered.find("-->", opening.start() + 2)
            section = lowered[opening.end() : closing if closing >= 0 else len(lowered)]
            if re.search(r"<script[\s/>]", section):
                raise ValueError("the inlined script opens <!-- <script> without -->")
    return text


def _without_source_maps(text: str) -> str:
    # The .map files are not shipped; a browser with its developer tools open would ask for them.
    text = re.sub(r"/\*# sourceMappingURL=[^*]*\*/", "", text)
    return re.sub(r"^//# sourceMappingURL=\S*\s*$", "", text, flags=re.MULTILINE)


def _json_data(document: Any) -> str:
    # A JSON data block is never run; escaping <, > and & (valid JSON escapes) means nothing in
    # the document, whatever its descriptions say, can end the block or open a tag.
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@cache
def page() -> Page:
    """The page and its policy, built once per warm container."""
    static = static_dir()
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    title = html.escape(f"{document['info']['title']} reference")
    css = raw_text(
        _without_source_maps(
            (static / "swagger-ui.css").read_text(encoding="utf-8")
            + "\n"
            + (static / "index.css").read_text(encoding="utf-8")
        ),
        "style",
    )
    bundle = raw_text(
        _without_source_maps((static / "swagger-ui-bundle.js").read_text(encoding="utf-8")),
        "script",
    )
    icon = base64.b64encode((static / "favicon-32x32.png").read_bytes()).decode("ascii")
    body = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        # A data: icon, so the browser does not ask the API for /favicon.ico.
        f'<link rel="icon" type="image/png" href="data:image/png;base64,{icon}">'
        f"<style>{css}</style></head><body>"
        "<noscript>This reference is drawn by JavaScript; the document itself is "
        '<a href="openapi.json">openapi.json</a>.</noscript>'
        '<div id="swagger-ui"></div>'
        f'<script type="application/json" id="openapi-document">{_json_data(document)}</script>'
        f"<script>{bundle}</script><script>{_START}</script>"
        "</body></html>\n"
    )
    # Only the page's own two scripts run (by hash: no injected script or inline handler does);
    # styles and images only inline (Swagger UI sets style attributes, its CSS uses data: URLs);
    # no request of any kind (connect, font, frame, form) leaves the page.
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(bundle)} {_hash(_START)}",
            "style-src 'unsafe-inline'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html=body, policy=policy)


@app.get(
    "/docs",
    responses={
        200: {
            "description": "The reference as one self-contained HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
)
def get_docs() -> Response[str]:
    built = page()
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=built.html,
        headers={
            "Content-Security-Policy": built.policy,
            "Cache-Control": CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
