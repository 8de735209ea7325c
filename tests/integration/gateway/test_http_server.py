"""The emulator's HTTP server on its own: the emulator's own failure answered as the template's
5xx with a Request-Id, the integration timeout's 504, and connections waiting in the listen queue
until they are served."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any

import pytest
import requests

from learnflow_cli.local.apigateway import Gateway
from learnflow_cli.local.http_messages import HttpResponse
from learnflow_cli.local.http_server import GatewayServer, serve_in_thread
from learnflow_cli.local.lambda_runtime import Invocation
from tests.integration.gateway.app import TEMPLATE
from tests.support.gateway import assert_error


class _BrokenRuntime:
    """A worker pool that raises instead of reporting an Invocation: the emulator's own bug,
    which no request can provoke on purpose (LambdaRuntime turns every failure it knows into
    an error Invocation)."""

    def invoke(
        self, name: str, event: Any, trace_id: str | None = None, *, start_by: float | None = None
    ) -> Invocation:
        raise RuntimeError(f"emulator bug invoking {name}")


def test_emulator_failure_is_the_templates_5xx_with_a_request_id() -> None:
    runtime = _BrokenRuntime()
    gateway = Gateway(TEMPLATE, runtime, api_id="api123", region="us-east-1")
    logged: list[HttpResponse] = []
    done = threading.Event()

    def log(method: str, target: str, response: HttpResponse, ms: float) -> None:
        logged.append(response)
        done.set()

    server = GatewayServer(("127.0.0.1", 0), log)
    server.gateway = gateway
    serve_in_thread(server)
    try:
        # /open/{proxy+} needs no authorizer: the request goes straight to the function.
        response = requests.get(f"http://127.0.0.1:{server.port}/v2/open/x", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert_error(response, 500, "api_error", "gateway")
    assert done.wait(5)
    assert logged[0].request_id == response.headers["Request-Id"]
    assert any("RuntimeError" in note for note in logged[0].notes)  # the console shows the bug


class _BlockedRuntime:
    """A function that answers 200 only once the test lets it (`release`), and says when it
    has; `started=False` stands for an invocation that never found a worker."""

    def __init__(self, *, started: bool = True) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()
        self.started = started
        self.start_by: float | None = None

    def invoke(
        self, name: str, event: Any, trace_id: str | None = None, *, start_by: float | None = None
    ) -> Invocation:
        self.start_by = start_by
        if not self.started:
            throttled = {"errorType": "TooManyRequestsException", "errorMessage": "Rate"}
            return Invocation(error=throttled, started=False)
        self.release.wait(30)
        self.finished.set()
        return Invocation(payload={"statusCode": 200, "body": "{}"}, duration_ms=0.0)


def _get_through(runtime: _BlockedRuntime, timeout: float) -> tuple[requests.Response, float]:
    gateway = Gateway(
        TEMPLATE, runtime, api_id="api123", region="us-east-1", integration_timeout=timeout
    )
    server = GatewayServer(("127.0.0.1", 0), lambda *_: None)
    server.gateway = gateway
    serve_in_thread(server)
    try:
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{server.port}/v2/open/x", timeout=20)
        return response, time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()


def test_a_function_slower_than_the_integration_timeout_is_504_and_goes_on() -> None:
    """As API Gateway: no answer within the integration timeout (29 s; 0.5 s here) is a 504
    from the template's DEFAULT_5XX, while the function is still running; it then finishes."""
    runtime = _BlockedRuntime()
    response, waited = _get_through(runtime, 0.5)
    assert_error(response, 504, "api_error", "gateway")
    assert waited >= 0.5
    assert not runtime.finished.is_set()  # answered while the function was still held
    runtime.release.set()
    assert runtime.finished.wait(5)  # the invocation went on


def test_an_invocation_that_finds_no_worker_in_time_is_504_and_never_runs() -> None:
    """The runtime is told to give up waiting for a worker at the integration timeout."""
    runtime = _BlockedRuntime(started=False)
    before = time.monotonic()
    response, _ = _get_through(runtime, 5.0)
    assert_error(response, 504, "api_error", "gateway")
    assert runtime.start_by is not None
    assert before + 5.0 <= runtime.start_by <= time.monotonic() + 5.0


def _unknown_route(sock: socket.socket) -> int:
    sock.sendall(b"GET /v2/unknown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


@pytest.mark.parametrize("max_connections", [512, 4])
def test_connections_wait_in_the_listen_queue_until_served(max_connections: int) -> None:
    """256 clients connect before the server accepts any (as when it is busy): each handshake
    completes in the kernel's queue and each request is answered, also when fewer threads than
    clients may run at once. A queue of 5 left the 7th client's connect hanging."""
    runtime = _BrokenRuntime()
    server = GatewayServer(("127.0.0.1", 0), lambda *_: None, max_connections=max_connections)
    server.gateway = Gateway(TEMPLATE, runtime, api_id="api123", region="us-east-1")
    sockets: list[socket.socket] = []
    serving = None
    try:
        for _ in range(256):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        serving = serve_in_thread(server)
        statuses = [_unknown_route(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        if serving is not None:  # shutdown() waits for a serve loop: only when one runs
            server.shutdown()
        server.server_close()
    assert statuses == [404] * 256
