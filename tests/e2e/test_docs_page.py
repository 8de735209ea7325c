"""GET /v2/docs in a real browser: Debian's headless Chromium renders the reference served by the
local stack, and the DOM it draws shows every route of template.yaml and, for an operation opened
by its deep link, the table of its responses with the error statuses.

`make test` installs Chromium (apt-get) when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from learnflow_cli.template import load_template, routes

if TYPE_CHECKING:
    from tests.support.stack import Stack

BROWSER_SECONDS = 30.0  # one page; Chromium renders it in about 3 s
# Virtual time runs only while the page is idle, so a generous budget costs no wall-clock time:
# it lets Swagger UI's asynchronous rendering finish before the DOM is dumped.
VIRTUAL_TIME_MS = 15_000
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ERRORS = {"400", "401", "404"}
# A request line of the stack's console: `11:19:04  GET    /v2/docs  200  261 ms  ...`.
REQUEST_LINE = re.compile(r"^\d\d:\d\d:\d\d\s+([A-Z]+)\s+(\S+)\s+(\d{3})\s", re.MULTILINE)


@dataclass(slots=True)
class Operation:
    method: str
    path: str
    link: str = ""  # Swagger UI's deep link, "#/<tag>/<operationId>"


@dataclass(slots=True)
class Rendered:
    dom: str
    console: str  # what Chromium logged (console messages, CSP violations)


class _Reference(HTMLParser):
    """The operations Swagger UI drew (method, path, deep link) and the status codes of every
    responses table, by the id of the operation block that holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list[Operation] = []
        self.responses: dict[str, list[str]] = {}
        self._block = ""
        self._method_text: list[str] | None = None
        self._method = ""
        self._in_path = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if "opblock" in classes and attributes.get("id", "").startswith("operations-"):
            self._block = attributes["id"]
        if "opblock-summary-method" in classes:
            self._method_text = []
        elif "opblock-summary-path" in classes:
            self.operations.append(Operation(self._method, attributes.get("data-path", "")))
            self._in_path = True
        elif tag == "a" and self._in_path:
            self.operations[-1].link = attributes.get("href", "")
            self._in_path = False
        elif tag == "tr" and "response" in classes and "data-code" in attributes:
            self.responses.setdefault(self._block, []).append(attributes["data-code"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._method_text is not None:
            self._method = "".join(self._method_text).strip().upper()
            self._method_text = None
        elif tag == "span":
            self._in_path = False

    def handle_data(self, data: str) -> None:
        if self._method_text is not None:
            self._method_text.append(data)


def _parse(dom: str) -> _Reference:
    reference = _Reference()
    reference.feed(dom)
    reference.close()
    return reference


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    return path


def _requests(stack: Stack) -> list[tuple[str, str, str]]:
    """(method, path, status) of every request the stack has logged so far."""
    return REQUEST_LINE.findall(stack.log())


def _render(stack: Stack, link: str, profile: Path) -> Rendered:
    """The DOM of /v2/docs (+ `link`) once Chromium has run its scripts, with what it logged;
    checked to have cost the stack exactly one request: the page fetches nothing else."""
    url = stack.url("/docs") + link
    before = len(_requests(stack))
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        "--dump-dom",
        url,
    ]
    # Its own session, so that whatever Chromium leaves behind can be ended as one group.
    browser = subprocess.Popen(  # noqa: S603 - Debian's Chromium on our own URL
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    timed_out = False
    try:
        out, err = browser.communicate(timeout=BROWSER_SECONDS)
    except subprocess.TimeoutExpired:
        timed_out, out, err = True, b"", b""
    finally:
        # The group is the one started above (its id is the browser's pid); gone once it exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
    assert not timed_out, f"Chromium did not render {url} in {BROWSER_SECONDS:.0f} s"
    console = err.decode(errors="replace")
    assert browser.returncode == 0, f"Chromium failed on {url}:\n{console[-3000:]}"
    # The stack logs a request just after answering it, long before Chromium has finished.
    assert _requests(stack)[before:] == [("GET", "/v2/docs", "200")]
    return Rendered(dom=out.decode(errors="replace"), console=console)


def _documented(stack: Stack) -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) → the response codes the served OpenAPI document gives the operation."""
    response = requests.get(stack.url("/openapi.json"), timeout=10)
    assert response.status_code == 200
    paths: dict[str, dict[str, Any]] = response.json()["paths"]
    return {
        (method.upper(), path): set(operation["responses"])
        for path, item in paths.items()
        for method, operation in item.items()
    }


def test_served_self_contained_with_its_headers(stack: Stack) -> None:
    response = requests.get(stack.url("/docs"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert UUID.match(response.headers["Request-Id"])
    assert "SwaggerUIBundle" in response.text
    assert len(response.content) < 5 * 1024 * 1024


@pytest.mark.parametrize("method", ["HEAD", "POST", "DELETE"])
def test_other_methods_are_unknown_routes(stack: Stack, method: str) -> None:
    response = requests.request(method, stack.url("/docs"), timeout=10)
    assert response.status_code == 404
    assert UUID.match(response.headers["Request-Id"])


@pytest.mark.browser
def test_browser_renders_every_route_and_an_error_table(stack: Stack, tmp_path: Path) -> None:
    declared = {(route.method, route.path) for route in routes(load_template())}
    documented = _documented(stack)

    listing = _render(stack, "", tmp_path / "listing")
    assert "Content Security Policy" not in listing.console, listing.console
    reference = _parse(listing.dom)
    shown = {(operation.method, operation.path) for operation in reference.operations}
    assert declared - shown == set(), "routes of template.yaml missing from the page"
    assert shown - declared == set(), "operations on the page that template.yaml lacks"
    # Operations start collapsed: a list, no responses yet.
    assert reference.responses == {}

    # Open the operation with the most documented errors that include 400, 401 and 404, as a
    # reader following its link would.
    candidates = sorted(
        (key for key, codes in documented.items() if codes >= ERRORS),
        key=lambda key: (-len({code for code in documented[key] if code.startswith("4")}), key),
    )
    assert candidates, "no operation documents 400, 401 and 404"
    method, path = candidates[0]
    (link,) = [
        operation.link
        for operation in reference.operations
        if (operation.method, operation.path) == (method, path)
    ]
    assert link.startswith("#/"), f"no deep link for {method} {path}"

    opened = _render(stack, link, tmp_path / "opened")
    assert "Content Security Policy" not in opened.console, opened.console
    tables = _parse(opened.dom).responses
    assert len(tables) == 1, f"expected one open operation, got {sorted(tables)}"
    (codes,) = tables.values()
    assert set(codes) == documented[method, path]
    assert set(codes) >= ERRORS
