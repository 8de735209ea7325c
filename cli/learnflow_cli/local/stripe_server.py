"""A small Stripe-compatible payments server for the real `stripe` SDK: HTTP, API keys and modes,
Stripe's idempotency, faults under `/_local/`, `python -m learnflow_cli.local.stripe_server`;
its endpoints are in `stripe_endpoints`, parameters, errors and test cards in `stripe_params`."""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from learnflow_cli.local.stripe_endpoints import Ctx, Handler, StripeEndpoints
from learnflow_cli.local.stripe_params import (
    JSON,
    StripeError,
    list_param,
    new_id,
    param_error,
    parse_form,
)

# `parse_form` is importable from here, as it was before the parameters had a module of their own.
__all__ = ["StripeError", "StripeServer", "main", "parse_form"]

logger = logging.getLogger(__name__)

API_VERSION = "2026-10-28.endive"  # what stripe 16.1 pins; echoed when a client sends none
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
# Stripe keeps a key for 24 hours; a local server under a long load test would keep every one
# of them in memory, so beyond this many the oldest finished ones are forgotten first.
MAX_IDEMPOTENCY_RECORDS = 10_000
_KEY_RE = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9]+")


@dataclass
class _Reply:
    status: int
    body: bytes
    request_id: str
    saved: bool = True


@dataclass
class _IdempotencyRecord:
    path: str
    params: JSON
    created: float
    reply: _Reply | None = None  # None while the first request is still running


@dataclass
class _Controls:
    """Idempotency records and injected faults: what the server keeps besides the objects."""

    idempotency: dict[tuple[str, str], _IdempotencyRecord] = field(default_factory=dict)
    fail_next: int = 0
    fail_status: int = 500
    delay_ms: int = 0


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request would drown the local stack's own logs.
        logger.debug('"%s" %s %s', self.requestline, code, size)


class StripeServer:
    """Stripe's v1 PaymentIntent and Refund API with Stripe's idempotency, served on loopback.

    stripe-mock cannot be installed here and localstripe lacks idempotency and PaymentIntents,
    so the local stack and the tests use this instead; `/_local/` holds test-only controls.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 12111,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host, self._port, self._clock = host, port, clock
        self._lock = threading.Lock()
        self._endpoints = StripeEndpoints(clock)
        self._controls = _Controls()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    # -- lifecycle and test accessors --------------------------------------------------------

    @property
    def url(self) -> str:
        port = self._server.server_port if self._server else self._port
        return f"http://{self._host}:{port}"

    def start(self) -> None:
        self._server = make_server(
            self._host, self._port, self, threaded=True, request_handler=_QuietRequestHandler
        )
        # A short poll interval keeps stop() quick (the default makes it wait up to 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-server",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def reset(self) -> None:
        with self._lock:
            self._endpoints.reset()
            self._controls = _Controls()

    def payment_intents(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._endpoints.ledger.payment_intents.values()))

    def refunds(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._endpoints.ledger.refunds.values()))

    def charges(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._endpoints.ledger.charges.values()))

    # -- HTTP --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_local/"):
            response = self._local(request)
        else:
            response = self._api(request)
        return response(environ, start_response)

    def _local(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("POST", "/_local/reset"):
            self.reset()
            return _json_response(200, {"reset": True})
        if route == ("GET", "/_local/payment_intents"):
            return _json_response(200, {"object": "list", "data": self.payment_intents()})
        if route == ("POST", "/_local/faults"):
            body = request.get_json(force=True, silent=True)
            if not _valid_faults(body):
                return _json_response(400, {"error": {"message": "Invalid fault settings."}})
            with self._lock:
                state = self._controls
                if "fail_next" in body:
                    state.fail_next, state.fail_status = body["fail_next"], body.get("status", 500)
                state.delay_ms = body.get("delay_ms", state.delay_ms)
                settings = {"fail_next": state.fail_next, "status": state.fail_status,
                            "delay_ms": state.delay_ms}  # fmt: skip
            return _json_response(200, settings)
        return _json_response(404, {"error": {"message": "Unknown local control."}})

    def _api(self, request: Request) -> Response:
        request_id = new_id("req", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
        }
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if key is not None:
            headers["Idempotency-Key"] = key
        fail_status = 500
        with self._lock:
            injected = self._controls.fail_next > 0
            if injected:
                # An injected fault stands for a failure in front of the API: nothing runs and
                # nothing is saved, so a retry with the same Idempotency-Key does the work once.
                self._controls.fail_next -= 1
                fail_status = self._controls.fail_status
        if injected:
            error = StripeError(fail_status, "api_error", "An unknown error occurred (injected).")
            return _json_response(fail_status, {"error": error.error}, headers)
        try:
            reply = self._handle(request, request_id, key)
        except StripeError as exc:
            reply = _Reply(exc.status, _dump({"error": exc.error}), request_id, saved=False)
        if reply.request_id != request_id:
            headers.update({"Idempotent-Replayed": "true", "Original-Request": reply.request_id})
        elif key is not None:
            headers["Original-Request"] = request_id
        if reply.status == 409:
            headers["Stripe-Should-Retry"] = "true"
        elif reply.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
        return Response(reply.body, reply.status, headers, content_type="application/json")

    def _handle(self, request: Request, request_id: str, key: str | None) -> _Reply:
        api_key = _api_key(request.headers.get("Authorization", ""))
        handler, object_id = self._endpoints.route(request.method, request.path)
        source = request.form if request.method == "POST" else request.args
        params = parse_form(list(source.items(multi=True)))
        ctx = Ctx(api_key, "_live_" in api_key, params, [])

        def run() -> _Reply:
            return self._run(handler, ctx, object_id, request_id)

        if key is None:
            return run()
        if not 1 <= len(key) <= 255:
            raise param_error(
                "Keys for idempotent requests can be no longer than 255 characters.",
                "Idempotency-Key",
            )
        return self._idempotent(ctx, key, request.path, run)

    def _idempotent(self, ctx: Ctx, key: str, path: str, run: Callable[[], _Reply]) -> _Reply:
        scope, now = (ctx.api_key, key), self._clock()
        with self._lock:
            self._purge_expired(now)
            record = self._controls.idempotency.get(scope)
            if record is not None and now - record.created < IDEMPOTENCY_TTL_SECONDS:
                return _replay(record, key, path, ctx.params)
            # The in-flight record is the per-key lock: a second request meets it and gets 409.
            record = _IdempotencyRecord(path, ctx.params, now)
            self._controls.idempotency[scope] = record
            self._trim_idempotency()
        reply: _Reply | None = None
        try:
            reply = run()
            return reply
        finally:
            with self._lock:
                if reply is not None and reply.saved:
                    record.reply = reply
                elif self._controls.idempotency.get(scope) is record:
                    del self._controls.idempotency[scope]

    def _trim_idempotency(self) -> None:
        table = self._controls.idempotency
        excess = len(table) - MAX_IDEMPOTENCY_RECORDS
        if excess <= 0:
            return
        # Insertion order is creation order; a request still running keeps its record.
        finished = (scope for scope, record in table.items() if record.reply is not None)
        oldest = list(itertools.islice(finished, excess))
        for scope in oldest:
            del table[scope]

    def _purge_expired(self, now: float) -> None:
        if now - self._last_purge < 60:
            return
        self._last_purge = now
        table = self._controls.idempotency
        for scope in [s for s, r in table.items() if now - r.created >= IDEMPOTENCY_TTL_SECONDS]:
            del table[scope]

    def _run(self, handler: Handler, ctx: Ctx, object_id: str, request_id: str) -> _Reply:
        with self._lock:
            delay = self._controls.delay_ms / 1000
        if delay:
            time.sleep(delay)  # outside the lock: a slow request must not stall the others
        try:
            ctx.expand = [str(item) for item in list_param(ctx.params, "expand")]
            with self._lock:
                status, body = handler(ctx, object_id)
                body = self._endpoints.expand(body, ctx.expand)
            return _Reply(status, _dump(body), request_id)
        except StripeError as exc:
            return _Reply(exc.status, _dump({"error": exc.error}), request_id, saved=exc.saved)
        except Exception:
            # Stripe saves a 500 once its endpoint has begun, so a retry replays it.
            logger.exception("local Stripe server failed on a request")
            error = StripeError(500, "api_error", "An unknown error occurred.")
            return _Reply(500, _dump({"error": error.error}), request_id)


def _replay(record: _IdempotencyRecord, key: str, path: str, params: JSON) -> _Reply:
    if record.reply is None:
        raise StripeError(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this Stripe API key and "
            f"idempotency key '{key}'. Please try again later.",
            code="idempotency_key_in_use",
            saved=False,
        )
    if record.path != path:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used for the same endpoint they were first "
            f"used for ('{record.path}' vs '{path}'). Try using a key other than '{key}' if you "
            "meant to execute a different request.",
            saved=False,
        )
    if record.params != params:
        raise StripeError(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
            saved=False,
        )
    return record.reply


def _api_key(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if not credentials.strip():
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            saved=False,
        )
    key = credentials.strip()
    if scheme.lower() == "basic":  # `curl -u sk_test_…:`
        try:
            key = base64.b64decode(key, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not _KEY_RE.fullmatch(key):
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:] if len(key) > 12 else ''}",
            saved=False,
        )
    return key


def _valid_faults(body: Any) -> TypeGuard[dict[str, int]]:
    if not isinstance(body, dict) or not set(body) <= {"fail_next", "status", "delay_ms"}:
        return False
    bounds = {"fail_next": (0, 1000), "status": (500, 599), "delay_ms": (0, 30_000)}
    return all(
        type(value) is int and bounds[name][0] <= value <= bounds[name][1]
        for name, value in body.items()
    )


def _dump(body: JSON) -> bytes:
    return json.dumps(body, indent=2).encode()


def _json_response(status: int, body: JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(_dump(body), status, headers, content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    """`python -m learnflow_cli.local.stripe_server --port 12111`."""
    parser = argparse.ArgumentParser(description="Local Stripe-compatible payments server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = StripeServer(args.host, args.port)
    server.start()
    logger.info("Stripe-compatible server listening on %s", server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
