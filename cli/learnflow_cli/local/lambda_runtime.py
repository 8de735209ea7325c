"""Lambda for the local stack: a pool of warm worker processes per function, started from a
forkserver on demand, capped per function and in all, reaped when idle; an invocation's outcome
(`Invocation`) and the `Invoker` protocol the gateway and the stream poller call it through."""

from __future__ import annotations

import collections
import contextlib
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from learnflow_cli.local import functions, lambda_worker
from learnflow_cli.local.lambda_worker import INIT_TIMEOUT_SECONDS, Worker, error_payload

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from learnflow_cli.local.functions import FunctionSpec

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
# Worker processes in all (each 60-90 MB resident): the authorizer and a few busy functions at
# full concurrency; with about 20 functions at four each, memory would reach gigabytes.
MAX_WORKERS = 16
_NO_WORKER = "TooManyRequestsException"  # Lambda's throttle: no worker was free in time
WORKER_IDLE_SECONDS = 300.0  # Lambda reclaims an idle execution environment after minutes


@dataclass(frozen=True, slots=True)
class Invocation:
    """The outcome of one Lambda invocation."""

    payload: Any = None  # the handler's result, as JSON decoded
    error: dict[str, Any] | None = None  # Lambda's error shape: errorType, errorMessage, ...
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on a cold start
    started: bool = True  # False: no worker was free before the caller's `start_by`

    @property
    def ok(self) -> bool:
        return self.error is None


class Invoker(Protocol):
    """What invokes a function by name: `LambdaRuntime`, or a test's stand-in for it."""

    def invoke(
        self, name: str, event: Any, trace_id: str | None = None, *, start_by: float | None = None
    ) -> Invocation:
        """Run `name` on `event`; `start_by` (time.monotonic()) gives up waiting for a free
        worker at that moment, with `started=False`."""
        ...


def describe_error(function: str | None, error: Mapping[str, Any]) -> str:
    """An invocation's error for the console: `Function: Type: message`, then its stack trace."""
    where = f"{function}: " if function else ""
    text = f"{where}{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"
    trace = error.get("stackTrace")
    if isinstance(trace, list) and trace:
        text += "\n" + "".join(str(line) for line in trace).rstrip()
    return text


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started`, a `time.perf_counter()` reading."""
    return (time.perf_counter() - started) * 1000


def start_forkserver(preload: Sequence[str] = RUNTIME_PRELOAD) -> BaseContext:
    """The context workers start from. With a forkserver (Linux, macOS) it is started at once,
    in the background, so its imports overlap the rest of the stack's start; a new worker is
    then a fork that only imports its own function's code. The forkserver is one per process:
    the first call's `preload` holds."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The worker's entry point, and the module its FunctionSpec is unpickled from.
    context.set_forkserver_preload([*preload, lambda_worker.__name__, functions.__name__])
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
        self._idle: dict[str, list[tuple[float, Worker]]] = {name: [] for name in self.specs}
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

    def invoke(
        self, name: str, event: Any, trace_id: str | None = None, *, start_by: float | None = None
    ) -> Invocation:
        if name not in self.specs:
            missing = {"errorType": "ResourceNotFoundException", "errorMessage": name}
            return Invocation(error=missing)
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        container, init_error, init_ms = self._acquire(name, start_by)
        if container is None or init_error is not None:
            waited_out = init_error is not None and init_error.get("errorType") == _NO_WORKER
            return Invocation(
                error=init_error, duration_ms=elapsed_ms(started), started=not waited_out
            )
        kind, value = container.invoke(event, request_id, trace_id)
        duration = elapsed_ms(started) - init_ms
        self._release(container, healthy=kind != "dead")
        cold = container.init_ms if container.invocations == 1 else None
        if kind == "ok":
            return Invocation(payload=json.loads(value), duration_ms=duration, init_ms=cold)
        return Invocation(error=value, duration_ms=duration, init_ms=cold)

    def _acquire(
        self, name: str, start_by: float | None = None
    ) -> tuple[Worker | None, dict[str, Any] | None, float]:
        deadline = time.monotonic() + self.specs[name].timeout + INIT_TIMEOUT_SECONDS + 30
        if start_by is not None:
            deadline = min(deadline, start_by)
        evicted: Worker | None = None
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
                        throttled = {"errorType": _NO_WORKER, "errorMessage": "Rate"}
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

    def _evict_idle(self) -> Worker | None:
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
    ) -> tuple[Worker | None, dict[str, Any] | None, float]:
        if not counted:
            with self._cond:
                full = self._count[name] >= self._max or self._total >= self._max_total
                if self._closed or full:
                    return None, {"errorType": "Closed", "errorMessage": "no capacity"}, 0.0
                self._count[name] += 1
                self._total += 1
        try:
            container = Worker(self._context, self.specs[name])
        except Exception as error:  # the stack keeps serving other functions
            self._forget(name)
            return None, error_payload(error, "Runtime.StartError"), 0.0
        init_error, init_ms = container.wait_ready()
        if init_error is not None:
            container.stop(kill=True)
            self._forget(name)
            return None, init_error, 0.0
        return container, None, init_ms

    def _release(self, container: Worker, *, healthy: bool) -> None:
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
                stale: list[Worker] = []
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
