"""API Gateway (REST, Lambda proxy) emulated from template.yaml, over warm Lambda workers."""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import importlib
import json
import multiprocessing
import os
import re
import secrets
import signal
import string
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from learnflow_cli import template as tpl

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

JSON_TYPE = "application/json"
LOCAL_ACCOUNT_ID = "123456789012"
STACK_NAME = "learnflow-local"
# What the forkserver imports once, so that a new worker starts in milliseconds: the Lambda
# runtime's and the layer's third-party dependencies. Never `learnflow` itself: its logger reads
# the function's environment when it is imported, which must happen inside the worker.
RUNTIME_PRELOAD = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "pydantic.main",
    "pydantic.json_schema",
    "pydantic.type_adapter",
    "simplejson",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.dependant",
    "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
    "aws_lambda_powertools.utilities.typing",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes",
    # Powertools' Tracer imports the X-Ray SDK, which builds a botocore client as it loads.
    "aws_xray_sdk.core",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.metrics",
    "stripe",
)
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
_CACHE_PRUNE_SIZE = 1000  # authorizer cache entries before expired ones are swept out
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's init phase limit
# Worker processes in all (each 60-90 MB resident): the authorizer and a few busy functions at
# full concurrency; with about 20 functions at four each, memory would reach gigabytes.
MAX_WORKERS = 16
WORKER_IDLE_SECONDS = 300.0  # Lambda reclaims an idle execution environment after minutes
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|[\w.+-]+\+json|xml|[\w.+-]+\+xml|javascript|"
    r"x-www-form-urlencoded|graphql)|)$",
    re.IGNORECASE,
)


class TemplateError(ValueError):
    """template.yaml declares something the local stack cannot run; the message says what."""


# ------------------------------------------------------------------------- template → functions


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function as Lambda would run it: code, handler, environment and limits."""

    name: str
    python_path: tuple[str, ...]  # the function's code first (/var/task), then its layers
    module: str
    handler: str
    environment: dict[str, str]
    timeout: float
    memory_mb: int
    arn: str


class Intrinsics:
    """Resolves the CloudFormation intrinsics that environments use, with local values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        refs: Mapping[str, str],
        attributes: Mapping[tuple[str, str], str],
        parameters: Mapping[str, str] | None = None,
        region: str,
    ) -> None:
        self._refs: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, body in (template.get("Parameters") or {}).items():
            if "Default" in body:
                self._refs[name] = str(body["Default"])
        self._refs.update(parameters or {})
        self._refs.update(refs)
        self._attributes = dict(attributes)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        functions: dict[str, Callable[[Any], Any]] = {
            "Ref": lambda name: self._ref(str(name)),
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda args: str(args[0]).join(str(x) for x in self.resolve(args[1])),
            "Fn::Select": lambda args: self.resolve(args[1])[int(self.resolve(args[0]))],
            "Fn::Split": lambda args: str(self.resolve(args[1])).split(str(args[0])),
        }
        if function in functions:
            return functions[function](argument)
        if function.startswith("Fn::"):
            raise TemplateError(f"{function} is not supported by the local stack here")
        return {function: self.resolve(argument)}

    def _get_att(self, argument: Any) -> str:
        parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
        return self._attribute(str(parts[0]), str(parts[1]))

    def _ref(self, name: str) -> Any:
        if name not in self._refs:
            raise TemplateError(f"!Ref {name}: no local value for it")
        return self._refs[name]

    def _attribute(self, resource: str, attribute: str) -> str:
        if (resource, attribute) not in self._attributes:
            raise TemplateError(f"!GetAtt {resource}.{attribute}: no local value for it")
        return self._attributes[(resource, attribute)]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {str(key): self.resolve(item) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                resource, attribute = name.split(".", 1)
                return self._attribute(resource, attribute)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def function_specs(
    template: Mapping[str, Any],
    root: Path,
    intrinsics: Intrinsics,
    *,
    region: str,
    local_environment: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function of the template, ready to run locally.

    The environment is Lambda's: the runtime's reserved variables, then `local_environment`
    (endpoints, dummy credentials), then Globals and the function's own variables, resolved,
    then `overrides` (local choices that win over the template, such as the log level).
    """
    resources: dict[str, Any] = dict(template["Resources"])
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    specs: dict[str, FunctionSpec] = {}
    for name, body in resources.items():
        if body.get("Type") != "AWS::Serverless::Function":
            continue
        properties = body.get("Properties") or {}

        def setting(key: str, default: Any, properties: Mapping[str, Any] = properties) -> Any:
            return properties.get(key, globals_.get(key, default))

        code_uri = str(setting("CodeUri", "."))
        module, _, handler = str(setting("Handler", "")).rpartition(".")
        code_dir = (root / code_uri).resolve()
        layer_dirs = [
            _layer_dir(resources, layer, root) for layer in [*globals_.get("Layers", [])]
        ] + [_layer_dir(resources, layer, root) for layer in properties.get("Layers", [])]
        memory = int(setting("MemorySize", 128))
        timeout = float(setting("Timeout", 3))
        arn = f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{name}"
        variables = {
            **dict((globals_.get("Environment") or {}).get("Variables") or {}),
            **dict((properties.get("Environment") or {}).get("Variables") or {}),
        }
        environment = {
            **_host_environment(),
            "_HANDLER": f"{module}.{handler}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{setting('Runtime', 'python3.13')}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name(),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(code_dir),
            "TZ": "UTC",
            **local_environment,
        }
        for key, value in variables.items():
            resolved = intrinsics.resolve(value)
            environment[str(key)] = _env_string(resolved)
        environment.update(overrides or {})
        specs[name] = FunctionSpec(
            name=name,
            python_path=(str(code_dir), *(str(path) for path in layer_dirs if path)),
            module=module,
            handler=handler,
            environment=environment,
            timeout=timeout,
            memory_mb=memory,
            arn=arn,
        )
    return specs


def _layer_dir(resources: Mapping[str, Any], layer: Any, root: Path) -> Path | None:
    """A layer of this template (a `!Ref` to a LayerVersion) → its Python directory."""
    if not (isinstance(layer, dict) and "Ref" in layer):
        return None  # a published layer ARN: nothing local to add
    body = resources.get(str(layer["Ref"])) or {}
    content = (body.get("Properties") or {}).get("ContentUri")
    if not isinstance(content, str):
        return None
    directory = (root / content).resolve()
    # A built layer keeps packages under python/; the source layer is the package root itself.
    return directory / "python" if (directory / "python").is_dir() else directory


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _host_environment() -> dict[str, str]:
    """What a worker keeps from the developer's environment: enough to run Python, nothing that
    would point AWS or Stripe calls somewhere else."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _log_stream_name() -> str:
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{today}/[$LATEST]{secrets.token_hex(16)}"


# ------------------------------------------------------------------------- workers ("containers")


@dataclass(frozen=True, slots=True)
class Invocation:
    """The outcome of one Lambda invocation."""

    payload: Any = None  # the handler's result, as JSON decoded
    error: dict[str, Any] | None = None  # Lambda's error shape: errorType, errorMessage, ...
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on a cold start

    @property
    def ok(self) -> bool:
        return self.error is None


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


def _error_payload(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
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


def _container_main(conn: Connection, spec: FunctionSpec) -> None:
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
        conn.send(("init_error", _error_payload(error, "Runtime.ImportModuleError")))
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
            conn.send(("error", _error_payload(error)))
            continue
        try:
            text = _lambda_json(result)
        except (TypeError, ValueError) as error:
            conn.send(("error", _error_payload(error, "Runtime.MarshalError")))
            continue
        conn.send(("ok", text))


class _Container:
    """The serve process's handle on one worker process."""

    def __init__(self, context: BaseContext, spec: FunctionSpec) -> None:
        self.spec = spec
        parent, child = context.Pipe()
        process = context.Process(  # type: ignore[attr-defined]
            target=_container_main, args=(child, spec), name=f"lambda-{spec.name}", daemon=True
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


def start_forkserver(preload: Sequence[str] = RUNTIME_PRELOAD) -> BaseContext:
    """The context workers start from. With a forkserver (Linux, macOS) it is started at once,
    in the background, so its imports overlap the rest of the stack's start; a new worker is
    then a fork that only imports its own function's code. The forkserver is one per process:
    the first call's `preload` holds."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*preload, __name__])
    from multiprocessing import forkserver  # noqa: PLC0415 - only where it exists

    forkserver.ensure_running()
    return context


# Why worker processes (docs/local-stack.md): Powertools' resolver keeps the current event on a
# class attribute and the environment is process-global, so two invocations sharing a process
# would see each other's request. One process per concurrent invocation isolates them as Lambda
# does, lets a slow request run beside fast ones, and lets handler work use a second core.
class LambdaRuntime:
    """Lambda for the local stack: warm worker processes started on demand, at most
    `max_containers` per function and `max_total` in all (each is a Python process of its own,
    60-90 MB). A request that finds no idle worker of its function and no room waits, as it
    would queue behind reserved concurrency; when the total is reached, the least recently used
    idle worker of another function makes room. Workers idle for `idle_seconds` are stopped,
    as Lambda reclaims idle execution environments."""

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        *,
        max_containers: int = 4,
        max_total: int = MAX_WORKERS,
        idle_seconds: float = WORKER_IDLE_SECONDS,
        preload: Sequence[str] = RUNTIME_PRELOAD,
    ) -> None:
        self.specs = dict(specs)
        self._max = max_containers
        self._max_total = max(1, max_total)
        self._idle_seconds = idle_seconds
        self._context = start_forkserver(preload)
        self._cond = threading.Condition()
        # Per function, idle workers by the time they were last released (oldest first).
        self._idle: dict[str, list[tuple[float, _Container]]] = {name: [] for name in self.specs}
        self._count: dict[str, int] = dict.fromkeys(self.specs, 0)
        self._waiting: dict[str, collections.deque[object]] = {
            name: collections.deque() for name in self.specs
        }
        self._total = 0
        self._closed = False
        self._reaper = threading.Thread(target=self._reap, name="lambda-reaper", daemon=True)
        self._reaper.start()

    def workers(self) -> dict[str, tuple[int, int]]:
        """Per function with workers: (all, idle)."""
        with self._cond:
            return {
                name: (count, len(self._idle[name])) for name, count in self._count.items() if count
            }

    def prewarm(self, name: str) -> threading.Thread:
        """Start one worker of `name` in the background (the forkserver too, the first time)."""

        def warm() -> None:
            with contextlib.suppress(Exception):
                container, error, _ = self._start(name)
                if container is not None and error is None:
                    self._release(container, healthy=True)

        thread = threading.Thread(target=warm, name=f"prewarm-{name}", daemon=True)
        thread.start()
        return thread

    def invoke(self, name: str, event: Any, trace_id: str | None = None) -> Invocation:
        if name not in self.specs:
            missing = {"errorType": "ResourceNotFoundException", "errorMessage": name}
            return Invocation(error=missing)
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        container, init_error, init_ms = self._acquire(name)
        if container is None or init_error is not None:
            return Invocation(error=init_error, duration_ms=_since(started))
        kind, value = container.invoke(event, request_id, trace_id)
        duration = _since(started) - init_ms
        self._release(container, healthy=kind != "dead")
        cold = container.init_ms if container.invocations == 1 else None
        if kind == "ok":
            return Invocation(payload=json.loads(value), duration_ms=duration, init_ms=cold)
        return Invocation(error=value, duration_ms=duration, init_ms=cold)

    def _acquire(self, name: str) -> tuple[_Container | None, dict[str, Any] | None, float]:
        deadline = time.monotonic() + self.specs[name].timeout + INIT_TIMEOUT_SECONDS + 30
        evicted: _Container | None = None
        # Requests for a function are served in their order of arrival: without a queue, the
        # ones woken last under load could wait until their deadline while others overtake.
        ticket = object()
        queue = self._waiting[name]
        with self._cond:
            queue.append(ticket)
            try:
                while True:
                    if queue[0] is ticket and self._idle[name]:
                        # The most recently used: the others grow idle and are reaped first.
                        return self._idle[name].pop()[1], None, 0.0
                    remaining = deadline - time.monotonic()
                    if self._closed or remaining <= 0:
                        throttled = {
                            "errorType": "TooManyRequestsException",
                            "errorMessage": "Rate",
                        }
                        return None, throttled, 0.0
                    if queue[0] is ticket and self._count[name] < self._max:
                        # Only a function without any worker takes another's: one that has
                        # some waits for its own, so busy functions do not evict each other in
                        # turn (every eviction is a cold start later).
                        if self._total >= self._max_total and self._count[name] == 0:
                            evicted = self._evict_idle()
                        if self._total < self._max_total:
                            self._count[name] += 1
                            self._total += 1
                            break
                    self._cond.wait(remaining)
            finally:
                queue.remove(ticket)
                self._cond.notify_all()  # the next in line may go
        if evicted is not None:
            evicted.stop(kill=True)
        return self._start(name, counted=True)

    def _evict_idle(self) -> _Container | None:
        """The least recently used idle worker, of a function that keeps another if there is
        one, taken out of the pool (called with the lock held; the caller stops it)."""
        candidates = [(idle[0][0], name) for name, idle in self._idle.items() if idle]
        spare = [candidate for candidate in candidates if self._count[candidate[1]] > 1]
        if not candidates:
            return None
        _, name = min(spare or candidates)
        container = self._idle[name].pop(0)[1]
        self._count[name] -= 1
        self._total -= 1
        return container

    def _start(
        self, name: str, *, counted: bool = False
    ) -> tuple[_Container | None, dict[str, Any] | None, float]:
        if not counted:
            with self._cond:
                full = self._count[name] >= self._max or self._total >= self._max_total
                if self._closed or full:
                    return None, {"errorType": "Closed", "errorMessage": "no capacity"}, 0.0
                self._count[name] += 1
                self._total += 1
        try:
            container = _Container(self._context, self.specs[name])
        except Exception as error:  # the stack keeps serving other functions
            self._forget(name)
            return None, _error_payload(error, "Runtime.StartError"), 0.0
        init_error, init_ms = container.wait_ready()
        if init_error is not None:
            container.stop(kill=True)
            self._forget(name)
            return None, init_error, 0.0
        return container, None, init_ms

    def _release(self, container: _Container, *, healthy: bool) -> None:
        name = container.spec.name
        with self._cond:
            if healthy and not self._closed:
                self._idle[name].append((time.monotonic(), container))
                self._cond.notify_all()
                return
        container.stop(kill=True)
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._cond:
            self._count[name] -= 1
            self._total -= 1
            self._cond.notify_all()

    def _reap(self) -> None:
        """Stop the workers idle for longer than idle_seconds, until the runtime closes."""
        interval = max(0.05, min(30.0, self._idle_seconds / 4))
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._closed, timeout=interval):
                    return
                horizon = time.monotonic() - self._idle_seconds
                stale: list[_Container] = []
                for name, idle in self._idle.items():
                    while idle and idle[0][0] <= horizon:
                        stale.append(idle.pop(0)[1])
                        self._count[name] -= 1
                        self._total -= 1
                if stale:
                    self._cond.notify_all()
            for container in stale:
                container.stop(kill=True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = [container for pool in self._idle.values() for _, container in pool]
            for pool in self._idle.values():
                pool.clear()
            self._cond.notify_all()
        for container in idle:
            container.stop()


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# ------------------------------------------------------------------------- IAM policy evaluation


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM's matching: `*` any run of characters (slashes included), `?` exactly one."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """Whether an authorizer's policy lets `execute-api:Invoke` reach `method_arn`: an explicit
    Deny wins over any Allow, and no matching Allow means no."""
    allowed = False
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        actions = _as_list(statement.get("Action"))
        if not any(
            _wildcard(action, ignore_case=True).fullmatch("execute-api:Invoke")
            for action in actions
        ):
            continue
        if not any(
            _wildcard(resource).fullmatch(method_arn)
            for resource in _as_list(statement.get("Resource"))
        ):
            continue
        effect = str(statement.get("Effect", ""))
        if effect == "Deny":
            return False
        if effect == "Allow":
            allowed = True
    return allowed


# ------------------------------------------------------------------------- the gateway


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # path and query string as sent
    headers: list[tuple[str, str]]  # in order, duplicates kept
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str = ""
    function: str | None = None  # the function that answered, None for the gateway itself
    authorizer_ms: float | None = None  # set when the authorizer function ran for this request
    notes: list[str] = field(default_factory=list)  # errors worth a line on the console


@dataclass(frozen=True, slots=True)
class _Resource:
    path: str
    segments: tuple[str, ...]
    methods: dict[str, tpl.Route]
    resource_id: str

    def match(self, parts: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
        """(specificity, path parameters) when `parts` falls under this resource; a literal
        segment beats a {parameter}, which beats a greedy {proxy+}, as in API Gateway."""
        params: dict[str, str] = {}
        rank: list[int] = []
        for index, segment in enumerate(self.segments):
            greedy = segment.startswith("{") and segment.endswith("+}")
            if index >= len(parts) or not parts[index]:
                return None
            if greedy:
                params[segment[1:-2]] = "/".join(parts[index:])
                return (*rank, 0), params
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
                rank.append(1)
            elif segment == parts[index]:
                rank.append(2)
            else:
                return None
        return (tuple(rank), params) if len(parts) == len(self.segments) else None


@dataclass(frozen=True, slots=True)
class _AuthOutcome:
    refusal: HttpResponse | None = None  # the gateway's answer when the request stops here
    context: dict[str, Any] | None = None  # requestContext.authorizer when it goes on
    usage_key: str | None = None
    invoked_ms: float | None = None  # None: the function did not run (header check, cache)


@dataclass(slots=True)
class _CachedPolicy:
    principal_id: str
    policy: dict[str, Any]
    context: dict[str, str]
    usage_key: str | None
    expires: float


class Gateway:
    """One REST API stage: routing, the TOKEN authorizer, API key checks, Lambda proxy events
    and responses, and the template's gateway responses."""

    def __init__(
        self,
        template: Mapping[str, Any],
        runtime: LambdaRuntime,
        *,
        api_id: str,
        region: str,
        authorizer_cache: bool = False,
        api_key_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self.stage = tpl.stage_name(template)
        self.api_id = api_id
        self.region = region
        self._runtime = runtime
        self._responses = tpl.gateway_responses(template)
        self._authorizer = tpl.authorizer(template)
        self._authorizer_cache = authorizer_cache
        self._cache: dict[str, _CachedPolicy] = {}
        self._cache_lock = threading.Lock()
        self._api_key_lookup = api_key_lookup
        self._binary_types = [
            _wildcard(kind.replace("~1", "/"), ignore_case=True)
            for kind in _api_properties(template).get("BinaryMediaTypes", [])
        ]
        grouped: dict[str, dict[str, tpl.Route]] = {}
        for route in tpl.routes(template):
            grouped.setdefault(route.path, {})[route.method] = route
        self._resources = [
            _Resource(
                path=path,
                segments=tuple(path.strip("/").split("/")) if path.strip("/") else (),
                methods=methods,
                resource_id=_resource_id(path),
            )
            for path, methods in grouped.items()
        ]

    @property
    def authorizer_function(self) -> str:
        return self._authorizer.function_id

    def function_for(self, method: str, resource_path: str) -> str | None:
        """The function a request would reach (`GET`, `/courses`), None for no route."""
        matched = self._match(resource_path)
        if matched is None:
            return None
        route = matched[0].methods.get(method) or matched[0].methods.get("ANY")
        return route.function_id if route else None

    # --- one request ---

    def handle(self, request: HttpRequest) -> HttpResponse:
        context = self._context(request)
        path, _, query = request.target.partition("?")
        if len(request.body) > MAX_BODY_BYTES:
            return self._gateway_response("REQUEST_TOO_LARGE", 413, context)
        prefix = f"/{self.stage}"
        if path != prefix and not path.startswith(prefix + "/"):
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, context)
        resource_path = path[len(prefix) :] or "/"
        matched = self._match(resource_path)
        if matched is None or (
            request.method not in matched[0].methods and "ANY" not in matched[0].methods
        ):
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", 403, context)
        resource, path_params = matched
        route = resource.methods.get(request.method) or resource.methods["ANY"]
        context["resourcePath"] = resource.path
        context["resourceId"] = resource.resource_id
        method_arn = (
            f"arn:aws:execute-api:{self.region}:{LOCAL_ACCOUNT_ID}:{self.api_id}/{self.stage}/"
            f"{request.method}/{resource_path.lstrip('/')}"
        )
        authorizer_context: dict[str, Any] | None = None
        api_key: tuple[str, str] | None = None
        authorizer_ms: float | None = None
        if route.auth_required:
            outcome = self._authorize(request, method_arn, context)
            authorizer_ms = outcome.invoked_ms
            if outcome.refusal is not None:
                outcome.refusal.authorizer_ms = authorizer_ms
                return outcome.refusal
            authorizer_context, usage_key = outcome.context, outcome.usage_key
            if route.api_key_required and self._api_key_lookup is not None:
                key_id = self._api_key_lookup(usage_key) if usage_key else None
                if key_id is None or usage_key is None:
                    refusal = self._gateway_response("INVALID_API_KEY", 403, context)
                    refusal.authorizer_ms = authorizer_ms
                    return refusal
                api_key = (usage_key, key_id)
        event = self._event(
            request,
            resource=resource,
            resource_path=resource_path,
            path_params=path_params,
            query=query,
            context=context,
            authorizer=authorizer_context,
            api_key=api_key,
        )
        trace_id = (event["headers"] or {}).get("X-Amzn-Trace-Id")
        result = self._runtime.invoke(route.function_id, event, trace_id)
        response = self._proxy_response(result, context)
        response.function = route.function_id
        response.authorizer_ms = authorizer_ms
        if result.init_ms is not None:
            response.notes.append(f"cold start {result.init_ms:.0f} ms")
        return response

    def refuse(
        self, request: HttpRequest, response_type: str, status: int, note: str | None = None
    ) -> HttpResponse:
        """The gateway's own answer to a request that goes no further (malformed HTTP, the
        emulator's own failure): a fresh request id and the template's gateway response for
        `response_type`, else DEFAULT_4XX/5XX, rendered like every other gateway response."""
        response = self._gateway_response(response_type, status, self._context(request))
        if note:
            response.notes.append(note)
        return response

    def _context(self, request: HttpRequest) -> dict[str, str]:
        """The `$context` of one request: what gateway responses and proxy events are built on."""
        now = time.time()
        return {
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": _extended_id(),
            "apiId": self.api_id,
            "stage": self.stage,
            "httpMethod": request.method,
            "path": request.target.partition("?")[0],
            "identity.sourceIp": request.source_ip,
            "requestTime": _request_time(now),
            "requestTimeEpoch": str(int(now * 1000)),
        }

    def _match(self, resource_path: str) -> tuple[_Resource, dict[str, str]] | None:
        parts = resource_path.strip("/").split("/") if resource_path.strip("/") else []
        best: tuple[tuple[int, ...], _Resource, dict[str, str]] | None = None
        for resource in self._resources:
            found = resource.match(parts)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], resource, found[1])
        return None if best is None else (best[1], best[2])

    # --- the authorizer ---

    def _authorize(
        self, request: HttpRequest, method_arn: str, context: dict[str, str]
    ) -> _AuthOutcome:
        """API Gateway's TOKEN authorizer: the identity header must be sent once and match the
        validation expression before the function is called; "Unauthorized" is a 401, a policy
        that does not allow the method a 403, any other error of the function (an exception, a
        timeout, a crash) AUTHORIZER_FAILURE and a malformed answer
        AUTHORIZER_CONFIGURATION_ERROR, both 500 unless the template says otherwise."""
        tokens = _headers(request, self._authorizer.identity_header)
        # Two values for the identity header (two `Authorization` lines) identify nobody: which
        # one would be the caller's is anyone's guess.
        token = tokens[0] if len(tokens) == 1 else None
        if token is None or not self._authorizer.accepts(token):
            return _AuthOutcome(refusal=self._gateway_response("UNAUTHORIZED", 401, context))
        cached = self._cached(token)
        invoked_ms: float | None = None
        if cached is None:
            event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
            started = time.perf_counter()
            result = self._runtime.invoke(self._authorizer.function_id, event)
            invoked_ms = _since(started)
            if result.error is not None:
                if result.error.get("errorMessage") == "Unauthorized":
                    refusal = self._gateway_response("UNAUTHORIZED", 401, context)
                    return _AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
                # The function could not decide (its key store is down, it timed out or
                # crashed): a server error the client may retry, never a 401.
                refusal = self._gateway_response("AUTHORIZER_FAILURE", 500, context)
                refusal.notes.append(_describe_error(self._authorizer.function_id, result.error))
                return _AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
            cached = self._parse_policy(result.payload)
            if cached is None:
                refusal = self._gateway_response("AUTHORIZER_CONFIGURATION_ERROR", 500, context)
                refusal.notes.append("the authorizer returned a malformed response")
                return _AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
            if self._authorizer_cache and self._authorizer.ttl > 0:
                cached.expires = time.monotonic() + self._authorizer.ttl
                with self._cache_lock:
                    self._cache[token] = cached
                    if len(self._cache) > _CACHE_PRUNE_SIZE:  # tokens nobody sends again
                        now = time.monotonic()
                        for stale in [t for t, e in self._cache.items() if e.expires <= now]:
                            del self._cache[stale]
        context["authorizer.principalId"] = cached.principal_id
        if not policy_allows(cached.policy, method_arn):
            refusal = self._gateway_response("ACCESS_DENIED", 403, context)
            return _AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
        forwarded: dict[str, Any] = {
            **cached.context,
            "principalId": cached.principal_id,
            "integrationLatency": round(invoked_ms or 0),
        }
        return _AuthOutcome(context=forwarded, usage_key=cached.usage_key, invoked_ms=invoked_ms)

    def _cached(self, token: str) -> _CachedPolicy | None:
        if not self._authorizer_cache:
            return None
        with self._cache_lock:
            entry = self._cache.get(token)
            if entry is not None and entry.expires <= time.monotonic():
                del self._cache[token]
                entry = None
            return entry

    @staticmethod
    def _parse_policy(payload: Any) -> _CachedPolicy | None:
        """The authorizer's answer as API Gateway reads it, or None when it is malformed."""
        if not isinstance(payload, dict):
            return None
        principal = payload.get("principalId")
        policy = payload.get("policyDocument")
        raw_context = payload.get("context") or {}
        if not isinstance(principal, str | int) or not isinstance(policy, dict):
            return None
        if not isinstance(raw_context, dict):
            return None
        context: dict[str, str] = {}
        for key, value in raw_context.items():
            if isinstance(value, bool):
                context[str(key)] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                context[str(key)] = str(value)
            elif value is not None:
                return None  # API Gateway accepts only strings, numbers and booleans
        usage_key = payload.get("usageIdentifierKey")
        return _CachedPolicy(
            principal_id=str(principal),
            policy=policy,
            context=context,
            usage_key=str(usage_key) if usage_key else None,
            expires=0.0,
        )

    # --- the proxy event and response ---

    def _event(
        self,
        request: HttpRequest,
        *,
        resource: _Resource,
        resource_path: str,
        path_params: dict[str, str],
        query: str,
        context: Mapping[str, str],
        authorizer: dict[str, Any] | None,
        api_key: tuple[str, str] | None,
    ) -> dict[str, Any]:
        """The REST API's Lambda proxy event (payload format 1.0), field for field."""
        headers, multi_headers = self._event_headers(request, context)
        pairs = parse_qsl(query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_query.setdefault(name, []).append(value)
        body, is_base64 = self._event_body(request)
        user_agent = headers.get("User-Agent") or _header(request, "User-Agent")
        request_context: dict[str, Any] = {
            "resourceId": resource.resource_id,
            "resourcePath": resource.path,
            "httpMethod": request.method,
            "extendedRequestId": context["extendedRequestId"],
            "requestTime": context["requestTime"],
            "path": context["path"],
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": self.stage,
            "domainPrefix": self.api_id,
            "requestTimeEpoch": int(context["requestTimeEpoch"]),
            "requestId": context["requestId"],
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
                "apiKey": api_key[0] if api_key else None,
                "apiKeyId": api_key[1] if api_key else None,
            },
            "domainName": _header(request, "Host") or "127.0.0.1",
            "deploymentId": "local",
            "apiId": self.api_id,
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        return {
            "resource": resource.path,
            "path": resource_path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()}
            or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": request_context,
            "body": body,
            "isBase64Encoded": is_base64,
        }

    @staticmethod
    def _event_headers(
        request: HttpRequest, context: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers[name] = value  # the last one wins, as in API Gateway's single-value map
            multi.setdefault(name, []).append(value)
        # What API Gateway adds in front of the integration.
        added = {
            "X-Forwarded-For": request.source_ip,
            "X-Forwarded-Port": "80",
            "X-Forwarded-Proto": "http",
        }
        if _header(request, "X-Amzn-Trace-Id") is None:
            added["X-Amzn-Trace-Id"] = _trace_id(context["requestTimeEpoch"])
        for name, value in added.items():
            if not any(existing.lower() == name.lower() for existing in headers):
                headers[name] = value
                multi[name] = [value]
        return headers, multi

    def _event_body(self, request: HttpRequest) -> tuple[str | None, bool]:
        """Text bodies as text; the API's binary media types, other non-text types and bytes
        that are not UTF-8 as base64 with isBase64Encoded (where API Gateway without binary
        media types would mangle them, the handler gets them intact)."""
        if not request.body:
            return None, False
        content_type = (_header(request, "Content-Type") or "").split(";")[0].strip()
        binary = any(kind.fullmatch(content_type) for kind in self._binary_types)
        if not binary and _TEXT_TYPES.match(content_type):
            with contextlib.suppress(UnicodeDecodeError):
                return request.body.decode("utf-8"), False
        return base64.b64encode(request.body).decode("ascii"), True

    def _proxy_response(self, result: Invocation, context: dict[str, str]) -> HttpResponse:
        """The Lambda's proxy response as API Gateway turns it into HTTP; a function error or
        a malformed response is a 502, as API Gateway answers it."""
        if result.error is not None:
            response = self._gateway_response("DEFAULT_5XX", 502, context)
            response.notes.append(_describe_error(None, result.error))
            return response
        payload = result.payload
        status = _status_code(payload.get("statusCode") if isinstance(payload, dict) else None)
        body = payload.get("body") if isinstance(payload, dict) else None
        if status is None or not isinstance(payload, dict) or not isinstance(body, str | None):
            response = self._gateway_response("DEFAULT_5XX", 502, context)
            response.notes.append("Malformed Lambda proxy response")
            return response
        merged: dict[str, list[str]] = {}
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            merged[str(name)] = [str(value) for value in _as_list(values)]
        for name, value in (payload.get("headers") or {}).items():
            if str(name) not in merged:
                merged[str(name)] = [str(value)]
        if not any(name.lower() == "content-type" for name in merged):
            merged["Content-Type"] = [JSON_TYPE]
        content = (body or "").encode("utf-8")
        if payload.get("isBase64Encoded") and body:
            try:
                content = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                response = self._gateway_response("DEFAULT_5XX", 502, context)
                response.notes.append("Malformed Lambda proxy response (base64 body)")
                return response
        headers = [(name, value) for name, values in merged.items() for value in values]
        headers.extend(self._gateway_headers(context))
        return HttpResponse(status, headers, content, request_id=context["requestId"])

    def _gateway_headers(self, context: Mapping[str, str]) -> list[tuple[str, str]]:
        return [
            ("x-amzn-RequestId", context["requestId"]),
            ("x-amz-apigw-id", context["extendedRequestId"]),
        ]

    def _gateway_response(
        self, response_type: str, default_status: int, context: dict[str, str]
    ) -> HttpResponse:
        """A response API Gateway makes by itself, from the template's GatewayResponses."""
        context = {**context, "error.responseType": response_type}
        message = _GATEWAY_MESSAGES.get(response_type, "Internal server error")
        context.setdefault("error.message", message)
        context.setdefault("error.messageString", json.dumps(message))
        declared = tpl.gateway_response_for(self._responses, response_type, default_status)
        headers: dict[str, str] = {}
        if declared is None:
            status, body = default_status, json.dumps({"message": message})
        else:
            status, headers, body = declared.render(context, default_status)
        pairs = list(headers.items())
        if not any(name.lower() == "content-type" for name, _ in pairs):
            pairs.append(("Content-Type", JSON_TYPE))
        pairs.extend(self._gateway_headers(context))
        return HttpResponse(status, pairs, body.encode("utf-8"), request_id=context["requestId"])


_GATEWAY_MESSAGES = {
    "UNAUTHORIZED": "Unauthorized",
    "ACCESS_DENIED": "User is not authorized to access this resource",
    "MISSING_AUTHENTICATION_TOKEN": "Missing Authentication Token",
    "INVALID_API_KEY": "Forbidden",
    "REQUEST_TOO_LARGE": "Request Too Long",
    "AUTHORIZER_CONFIGURATION_ERROR": "Internal server error",
    "AUTHORIZER_FAILURE": "Internal server error",
    "DEFAULT_4XX": "Bad Request",
    "DEFAULT_5XX": "Internal server error",
}


def _status_code(value: Any) -> int | None:
    """A proxy response's statusCode: an integer, or a string of digits (AWS's own blueprints
    return "200"), from 100 to 599."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        return None
    return value


def _api_properties(template: Mapping[str, Any]) -> dict[str, Any]:
    for body in template["Resources"].values():
        if body.get("Type") == "AWS::Serverless::Api":
            return dict(body.get("Properties") or {})
    return {}


def _describe_error(function: str | None, error: Mapping[str, Any]) -> str:
    where = f"{function}: " if function else ""
    text = f"{where}{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"
    trace = error.get("stackTrace")
    if isinstance(trace, list) and trace:
        text += "\n" + "".join(str(line) for line in trace).rstrip()
    return text


def _header(request: HttpRequest, name: str) -> str | None:
    """The last value of a header (API Gateway's single-value view), None when absent."""
    values = _headers(request, name)
    return values[-1] if values else None


def _headers(request: HttpRequest, name: str) -> list[str]:
    return [value for key, value in request.headers if key.lower() == name.lower()]


def _resource_id(path: str) -> str:
    """Stable per resource, shaped like API Gateway's (six lower-case letters and digits)."""
    digest = hashlib.sha256(path.encode()).digest()
    alphabet = string.ascii_lowercase + string.digits
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:6])


def _extended_id() -> str:
    return secrets.token_urlsafe(11)[:15] + "="


def _trace_id(epoch_ms: str) -> str:
    return f"Root=1-{int(epoch_ms) // 1000:08x}-{secrets.token_hex(12)}"


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


# ------------------------------------------------------------------------- HTTP

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
        self.server.log_request(method, target, response, _since(started))

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
