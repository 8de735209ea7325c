"""The gateway's HTTP server: a thread per connection (keep-alive, a long listen queue, a cap on
threads, idle connections closed), request bodies framed by Content-Length or chunked, and every
request HTTP itself refuses answered as the gateway's own response, never an HTML page."""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from learnflow_cli.local.apigateway import MAX_BODY_BYTES
from learnflow_cli.local.http_messages import HttpRequest

if TYPE_CHECKING:
    from learnflow_cli.local.apigateway import Gateway
    from learnflow_cli.local.http_messages import HttpResponse

_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_LINE_LIMIT = 65537  # http.server's own limit on the request line
_MAX_TRAILERS = 100  # http.client's limit on header lines
_READ_BYTES = 64 * 1024
REQUEST_QUEUE_SIZE = 1024  # the kernel caps it at net.core.somaxconn (4096 on current Linux)
MAX_CONNECTIONS = 512  # connection threads at once; each idle one ends after IDLE_SECONDS
IDLE_SECONDS = 60.0  # an idle keep-alive connection is closed, as a load balancer would


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "learnflow-local"
    sys_version = ""
    # The socket's timeout: a keep-alive connection that sends nothing for this long (or a
    # client that stops mid-request) is closed, so idle clients cannot hold every thread.
    timeout = IDLE_SECONDS
    server: GatewayServer

    def _serve(self) -> None:
        started = time.perf_counter()
        if self.request_version == "HTTP/0.9":  # API Gateway speaks HTTP/1.x only
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not supported")
            return
        try:
            body = self._read_body()
        except (ValueError, OSError) as error:
            # The connection is out of step with the client: answer, then close it.
            self.close_connection = True
            note = f"malformed request: {error}"
            refusal = self.server.gateway.refuse(self._request(b""), "DEFAULT_4XX", 400, note)
            self._respond(refusal, started)
            return
        request = self._request(body)
        try:
            response = self.server.gateway.handle(request)
        except Exception as error:  # the emulator's own bug: still the template's 500
            note = f"gateway error: {''.join(traceback.format_exception(error))}"
            response = self.server.gateway.refuse(request, "DEFAULT_5XX", 500, note)
        self._respond(response, started)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers by itself (request line too long, bad request line or
        version, headers too large, a method it has no do_ for), as the gateway's own response
        from the template rather than an HTML page."""
        started = time.perf_counter()
        self.close_connection = True
        # Until a request line parses, http.server takes it for HTTP/0.9 and would answer
        # without a status line or headers: answer in HTTP/1.1, with the Request-Id.
        self.request_version = self.protocol_version
        if code == HTTPStatus.NOT_IMPLEMENTED:
            # A method outside GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS is an unknown
            # method, which API Gateway answers as an unknown route (docs/api.md §2).
            response_type, status = "MISSING_AUTHENTICATION_TOKEN", 403
        else:
            # The rest are the client's request (its HTTP version too: 505 stands for HTTP/2
            # and later), so a 4xx, never the "safe to retry" 5xx.
            response_type, status = "DEFAULT_4XX", code if 400 <= code < 500 else 400
        # Headers may be a previous request's on this connection: send none to the gateway.
        request = self._request(b"", with_headers=False)
        note = f"malformed request: {message or HTTPStatus(code).phrase}"
        self._respond(self.server.gateway.refuse(request, response_type, status, note), started)

    def _request(self, body: bytes, *, with_headers: bool = True) -> HttpRequest:
        return HttpRequest(
            method=self.command or "",
            target=self._target(),
            headers=list(self.headers.items()) if with_headers else [],
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )

    def _target(self) -> str:
        # http.server sets `path` together with `command`; without a command (a request line
        # it could not parse) `path` is unset or left from the connection's previous request.
        return self.path if self.command else ""

    def _respond(self, response: HttpResponse, started: float) -> None:
        self.send_response_only(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Date", self.date_time_string())
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        method, target = self.command or "-", self._target() or "-"
        elapsed = (time.perf_counter() - started) * 1000
        self.server.log_request(method, target, response, elapsed)

    def _read_body(self) -> bytes:
        """The body as Transfer-Encoding: chunked or Content-Length frame it. One past
        MAX_BODY_BYTES is read to its end but kept only a little over the limit, enough for the
        gateway's 413; ValueError when the framing is broken or the body stops short."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return b""
        length = lengths.pop()
        if lengths or not _DIGITS.fullmatch(length):
            raise ValueError("invalid Content-Length")
        chunks: list[bytes] = []
        self._read_into(chunks, int(length), 0)
        return b"".join(chunks)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:  # each pass reads a chunk; a client that stops short ends it with ValueError
            line = self.rfile.readline(_LINE_LIMIT)
            size = line.split(b";")[0].strip()
            if not line.endswith(b"\n") or not _HEX.fullmatch(size):
                raise ValueError("invalid chunk size line")
            if int(size, 16) == 0:
                break
            total = self._read_into(chunks, int(size, 16), total)
            if self.rfile.readline(_LINE_LIMIT) not in (b"\r\n", b"\n"):
                raise ValueError("chunk data not followed by CRLF")
        for _ in range(_MAX_TRAILERS):
            trailer = self.rfile.readline(_LINE_LIMIT)
            if trailer in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not trailer.endswith(b"\n"):
                raise ValueError("invalid chunked trailer")
        raise ValueError("too many chunked trailers")

    def _read_into(self, chunks: list[bytes], size: int, total: int) -> int:
        """Read `size` more bytes of a body of `total` so far, in pieces (a declared length
        is never allocated at once), keeping them while within MAX_BODY_BYTES."""
        while size > 0:
            data = self.rfile.read(min(size, _READ_BYTES))
            if not data:
                raise ValueError("body shorter than declared")
            if total <= MAX_BODY_BYTES:
                chunks.append(data)
            size -= len(data)
            total += len(data)
        return total

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request comes from GatewayServer.log_request instead


class GatewayServer(ThreadingHTTPServer):
    """The gateway on a threaded HTTP server: a thread per connection (keep-alive works), at
    most `max_connections` at once; further connections wait in the listen queue, not refused."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default of 5 resets connections as soon as a few clients arrive together.
    request_queue_size = REQUEST_QUEUE_SIZE

    gateway: Gateway  # set before serving: the port is bound first, to fail fast when taken

    def __init__(
        self,
        address: tuple[str, int],
        log: Callable[[str, str, HttpResponse, float], None],
        *,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._log = log
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closing = threading.Event()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here holds the accept loop, so the kernel queues further connections.
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away mid-response: nothing to report
        super().handle_error(request, client_address)

    def log_request(self, method: str, target: str, response: HttpResponse, ms: float) -> None:
        self._log(method, target, response, ms)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve_in_thread(server: GatewayServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="gateway", daemon=True)
    thread.start()
    return thread
