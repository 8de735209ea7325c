"""GET /docs in-process: one self-contained page (the renderer's CSS and JS and the OpenAPI
document inlined), a policy that lets only that page's own scripts run, and the layer's usual
answers (Request-Id, 404 for another method). The browser's view is tests/e2e/test_docs_page.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from functions.openapi import get_docs
from tests.support.handlers import Context

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 5 * 1024 * 1024
LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024  # a synchronous invocation's payload limit, as JSON
# Elements whose URL attributes a browser loads by itself (an <a> is only followed on a click).
LOADING = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "frame": "src",
    "embed": "src",
    "object": "data",
    "source": "src",
    "audio": "src",
    "video": "src",
    "track": "src",
    "input": "src",
    "image": "href",
    "use": "href",
}


class _Page(HTMLParser):
    """Every tag with its attributes, and the text of every <script> and <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.styles: list[str] = []
        self._open: tuple[str, dict[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if tag in ("script", "style"):
            self._open = (tag, attributes)

    def handle_data(self, data: str) -> None:
        # html.parser hands a script's or style's whole text over in one piece (CDATA content).
        if self._open is None:
            return
        tag, attributes = self._open
        if tag == "script":
            self.scripts.append((attributes, data))
        else:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._open = None


def _headers(result: dict[str, Any]) -> dict[str, str]:
    # A proxy response may use either header map (Powertools fills multiValueHeaders; errors
    # answered by the pipeline, headers): API Gateway merges them.
    found = dict(result.get("headers") or {})
    found.update(
        {name: values[-1] for name, values in (result.get("multiValueHeaders") or {}).items()}
    )
    return found


def _call(load_event: Callable[..., dict[str, Any]], method: str = "GET") -> dict[str, Any]:
    event = load_event("get_docs", httpMethod=method)
    event["requestContext"]["httpMethod"] = method
    return get_docs.lambda_handler(event, Context())  # type: ignore[arg-type]


@pytest.fixture(name="served")
def _served(load_event: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return _call(load_event)


@pytest.fixture(name="page")
def _page(served: dict[str, Any]) -> _Page:
    parsed = _Page()
    parsed.feed(served["body"])
    parsed.close()
    return parsed


def test_an_html_page_under_5_mb(served: dict[str, Any]) -> None:
    assert served["statusCode"] == 200
    assert served["isBase64Encoded"] is False
    headers = _headers(served)
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers["Request-Id"] == "ad984e1a-19cf-4162-8470-e9f4c2c29263"
    size = len(served["body"].encode("utf-8"))
    assert size < MAX_BYTES, f"{size} bytes"
    # The proxy response travels JSON-encoded, which escapes the script's quotes and newlines.
    payload = len(json.dumps({**served, "multiValueHeaders": dict(served["multiValueHeaders"])}))
    assert payload < LAMBDA_RESPONSE_BYTES, f"{payload} bytes as Lambda's response"


def test_renderer_css_js_and_document_are_inlined(page: _Page) -> None:
    document = json.loads(get_docs.DOCUMENT.read_text(encoding="utf-8"))
    (data,) = [text for attributes, text in page.scripts if attributes.get("type")]
    assert json.loads(data) == document  # the document, whole, as the page's data block
    code = [text for attributes, text in page.scripts if not attributes]
    assert len(code) == 2  # Swagger UI's bundle, then the lines that start it on the data block
    assert "SwaggerUIBundle" in code[0]
    assert "spec: JSON.parse(" in code[1]
    assert "docExpansion" in code[1]
    (css,) = page.styles
    assert ".swagger-ui .opblock" in css
    assert "sourceMappingURL" not in css + code[0]


def test_swagger_ui_5_from_the_pinned_package() -> None:
    # The same exact pin in the function's requirements.txt (what SAM packs) and pyproject.toml
    # (what the tests and `learnflow serve` run), and Swagger UI 5: the first to render 3.1.
    requirements = (ROOT / "functions" / "openapi" / "requirements.txt").read_text()
    (pin,) = re.findall(r"^swagger-ui-py==(\S+)$", requirements, re.MULTILINE)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"swagger-ui-py=={pin}"' in pyproject
    assert version("swagger-ui-py") == pin
    bundle = (get_docs.static_dir() / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)


def test_nothing_is_loaded_from_anywhere(page: _Page) -> None:
    for tag, attributes in page.tags:
        attribute = LOADING.get(tag)
        if attribute and attribute in attributes:
            assert attributes[attribute].startswith("data:"), (tag, attributes)
        assert "srcset" not in attributes, tag
    for tag, attributes in page.tags:
        for value in attributes.values():
            assert not re.match(r"\s*(https?:)?//", value) or tag == "a", (tag, attributes)
    (css,) = page.styles
    assert "@import" not in css
    for target in re.findall(r"url\(\s*['\"]?([^'\")\s]*)", css):
        assert target.startswith("data:"), target


def test_policy_allows_only_the_page_s_own_scripts_and_inline_styles(
    served: dict[str, Any], page: _Page
) -> None:
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in _headers(served)["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["style-src"] == "'unsafe-inline'"
    assert policy["img-src"] == "data:"
    assert policy["base-uri"] == policy["form-action"] == policy["frame-ancestors"] == "'none'"
    assert "connect-src" not in policy  # default-src 'none': no fetch, not even of the document
    code = [text for attributes, text in page.scripts if not attributes]
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for text in code
    }
    assert set(policy["script-src"].split()) == hashes
    assert "http" not in _headers(served)["Content-Security-Policy"]


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
def test_another_method_is_an_unknown_route(
    load_event: Callable[..., dict[str, Any]], method: str
) -> None:
    result = _call(load_event, method)
    assert result["statusCode"] == 404
    assert json.loads(result["body"])["error"]["code"] == "route_not_found"
    assert _headers(result)["Request-Id"] == "ad984e1a-19cf-4162-8470-e9f4c2c29263"


def test_built_once_per_container() -> None:
    assert get_docs.page() is get_docs.page()


@pytest.mark.parametrize(
    "text",
    [
        "var a = '</script>';",
        "var a = '</SCRIPT '",
        "var a = '<!--', b = '<script>', c = '-->';",
    ],
)
def test_text_that_would_end_the_script_early_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="inlined script"):
        get_docs.raw_text(text, "script")


def test_text_safe_in_a_script_is_kept() -> None:
    text = "a = /<!--/; b = /-->/; c = '<script>'; d = /<script(?=\\s)/;"
    assert get_docs.raw_text(text, "script") == text
