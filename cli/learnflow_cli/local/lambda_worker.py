"""One Lambda worker process ("container"): what runs inside it (the function's environment and
code, then one invocation at a time, as Lambda's Python runtime calls a handler) and the serve
process's handle on it; the two ends of the pipe between them are both here."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import time
import traceback
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

    from learnflow_cli.local.functions import FunctionSpec

INIT_TIMEOUT_SECONDS = 10.0  # Lambda's init phase limit


class _LambdaContext:
    """The context object Lambda's Python runtime passes to a handler."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = spec.environment["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = spec.environment["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def error_payload(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """An exception in the shape Lambda reports errors: errorMessage, errorType, stackTrace."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_exception(error),
    }


def _lambda_json(value: Any) -> str:
    # Lambda's Python runtime serialises Decimal as a number; anything else unknown fails.
    def default(item: Any) -> Any:
        if isinstance(item, Decimal):
            return float(item)
        raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    return json.dumps(value, default=default)


def worker_main(conn: Connection, spec: FunctionSpec) -> None:
    """A worker: the function's environment and code, then one invocation at a time."""
    # The serve process stops its workers; Ctrl-C in the terminal must not interrupt a request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(spec.environment)
    if hasattr(time, "tzset"):
        time.tzset()
    with contextlib.suppress(AttributeError, ValueError):
        cast("Any", sys.stdout).reconfigure(line_buffering=True)
    for path in reversed(spec.python_path):
        sys.path.insert(0, path)
    started = time.perf_counter()
    try:
        module = importlib.import_module(spec.module)
        handler = getattr(module, spec.handler)
    except Exception as error:  # reported as Lambda reports an init failure
        conn.send(("init_error", error_payload(error, "Runtime.ImportModuleError")))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    while True:
        try:
            event, request_id, trace_id = conn.recv()
        except (EOFError, OSError):
            return
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        context = _LambdaContext(spec, request_id, time.time() + spec.timeout)
        try:
            result = handler(event, context)
        except Exception as error:  # an unhandled error is the invocation's result
            conn.send(("error", error_payload(error)))
            continue
        try:
            text = _lambda_json(result)
        except (TypeError, ValueError) as error:
            conn.send(("error", error_payload(error, "Runtime.MarshalError")))
            continue
        conn.send(("ok", text))


class Worker:
    """The serve process's handle on one worker process."""

    def __init__(self, context: BaseContext, spec: FunctionSpec) -> None:
        self.spec = spec
        parent, child = context.Pipe()
        process = context.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, spec), name=f"lambda-{spec.name}", daemon=True
        )
        process.start()
        child.close()
        self._process = process
        self._conn: Connection = parent
        self.invocations = 0
        self.init_ms = 0.0

    def wait_ready(self) -> tuple[dict[str, Any] | None, float]:
        """(init error or None, init milliseconds)."""
        if not self._conn.poll(INIT_TIMEOUT_SECONDS):
            return {"errorType": "Runtime.InitTimeout", "errorMessage": "Init timed out"}, 0.0
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            return {"errorType": "Runtime.ExitError", "errorMessage": "Worker exited"}, 0.0
        if kind == "ready":
            self.init_ms = float(value)
            return None, self.init_ms
        return cast("dict[str, Any]", value), 0.0

    def invoke(self, event: Any, request_id: str, trace_id: str | None) -> tuple[str, Any]:
        """("ok", JSON text) | ("error", payload) | ("dead", payload)."""
        self.invocations += 1
        try:
            self._conn.send((event, request_id, trace_id))
            if not self._conn.poll(self.spec.timeout):
                message = f"Task timed out after {self.spec.timeout:.2f} seconds"
                return "dead", {"errorType": "Sandbox.Timedout", "errorMessage": message}
            kind, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            return "dead", {"errorType": "Runtime.ExitError", "errorMessage": "Worker exited"}
        return str(kind), value

    def stop(self, *, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        if kill:
            self._process.kill()
        else:
            self._process.join(timeout=1)
            if self._process.is_alive():
                self._process.kill()
        self._process.join(timeout=1)
