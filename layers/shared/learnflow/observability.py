"""Logs, traces and metrics for every function: JSON log lines with the request id and no secrets,
an X-Ray subsegment per invocation with DynamoDB and Stripe calls beneath it, and CloudWatch
metrics in the embedded metric format (EMF), written once at the end of each invocation.

Entry points wrap themselves in `instrument` (route handlers get it from `learnflow.http.App`,
so no handler file carries it); business code calls `metrics.add(...)` where the event happens.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

# API keys (sk_/rk_, live/test, any length) and bearer tokens: whatever path a secret takes into
# a log record (message, extra field, exception text), it leaves as a redacted stub.
_SECRET = re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9]{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',}]+")


def redact(text: str) -> str:
    """Remove API key secrets and bearer tokens from `text`."""
    return _BEARER.sub(r"\1[REDACTED]", _SECRET.sub(r"\1[REDACTED]", text))


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter with secrets scrubbed from the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# Powertools' Logger reads POWERTOOLS_SERVICE_NAME / POWERTOOLS_LOG_LEVEL itself; creating it
# here costs no I/O, and every module of a function shares it.
logger = Logger(logger_formatter=RedactingFormatter())


# --------------------------------------------------------------------------- tracing


@functools.cache
def tracer() -> Tracer:
    """Powertools' Tracer, built at the first invocation rather than at import: the X-Ray SDK
    builds a botocore client when it is imported (~0.15 s), which the administration CLI and
    the unit tests, importing this module, should not pay for.

    It patches botocore, so every DynamoDB, SES and SSM call is a subsegment (botocore's patch
    wraps the client class, so clients made before it are traced too). `requests` (Stripe's
    transport) is patched by `trace_requests`, only in the two functions that pay. Tracing is
    off where no X-Ray daemon listens: outside Lambda, and wherever POWERTOOLS_TRACE_DISABLED
    is true (tests, the local stack)."""
    from aws_lambda_powertools import Tracer  # noqa: PLC0415 - see the docstring

    return Tracer(patch_modules=("botocore",))


@functools.cache
def trace_requests() -> None:
    """Trace Stripe's HTTP calls (the SDK sends them through `requests`). Called before the
    first Stripe client is built; patching here rather than in `tracer` keeps `requests`
    out of every other function's cold start."""
    tracer().patch(("requests",))


HandlerT = TypeVar("HandlerT", bound=Callable[[Any, Any], Any])

_cold_start = True


def instrument(name: str = "lambda_handler") -> Callable[[HandlerT], HandlerT]:
    """Decorate an entry point `(event, context) -> answer`: it runs in an X-Ray subsegment
    `## <name>` annotated with ColdStart and Service, and the metrics it added are flushed when
    it returns or raises.

    Powertools' `capture_lambda_handler` is not used: it records the response as trace
    metadata (students' e-mails would land in X-Ray) and logs every exception, and the
    authorizer raises one for each refused key by design."""

    def decorate(handler: HandlerT) -> HandlerT:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            global _cold_start  # one execution environment's first invocation, by nature global
            cold, _cold_start = _cold_start, False
            try:
                traced = tracer()
                with traced.provider.in_subsegment(name=f"## {name}") as subsegment:
                    subsegment.put_annotation(key="ColdStart", value=cold)
                    if traced.service:
                        subsegment.put_annotation(key="Service", value=traced.service)
                    return handler(event, context)
            finally:
                metrics.flush()

        return wrapper  # type: ignore[return-value]

    return decorate


# --------------------------------------------------------------------------- metrics

COUNT: Final = "Count"
NONE: Final = "None"  # amounts in minor units: a number, not a CloudWatch unit


class InvocationMetrics:
    """Metrics of one invocation, grouped by dimension set and written at its end as EMF lines
    on standard output (CloudWatch reads them from the function's log group: no API call, no
    I/O on the request path beyond a print).

    Powertools' `Metrics` gives every metric of an invocation the same dimensions; these need
    different ones (a request by route and status class, a charge by currency and mode), so each
    dimension set is serialised by its own Powertools EMF provider (`EphemeralMetrics`).
    Recording and flushing never raise: a metric is never worth a failed request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[tuple[str, str], ...], list[tuple[str, str, float]]] = {}

    def add(self, name: str, value: float = 1, unit: str = COUNT, **dimensions: str) -> None:
        """Record `value` of `name` with these dimensions (the service is always added)."""
        try:
            key = tuple(sorted((k, str(v)) for k, v in dimensions.items()))
            entry = (name, unit, float(value))
        except (TypeError, ValueError):
            logger.warning("metric not recorded: not a number", extra={"metric": name})
            return
        with self._lock:
            self._pending.setdefault(key, []).append(entry)

    def pending(self) -> list[tuple[str, float, dict[str, str]]]:
        """What would be flushed now: (name, value, dimensions), for tests."""
        with self._lock:
            return [
                (name, value, dict(key))
                for key, entries in self._pending.items()
                for name, _, value in entries
            ]

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
        if not pending or not namespace:
            # No namespace, nowhere to put them: metrics are off (benchmarks, the CLI); the
            # template always sets one.
            return
        from aws_lambda_powertools.metrics import EphemeralMetrics  # noqa: PLC0415
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled  # noqa: PLC0415

        if is_metrics_disabled():  # POWERTOOLS_METRICS_DISABLED (the local stack)
            return
        for dimensions, entries in pending.items():
            try:
                emf = EphemeralMetrics(namespace=namespace)
                for dimension, label in dimensions:
                    emf.add_dimension(name=dimension, value=label)
                for name, unit, value in entries:
                    emf.add_metric(name=name, unit=unit, value=value)
                emf.flush_metrics()
            except Exception:  # a metric is never worth a failed request: log it and go on
                logger.exception("metrics could not be written", extra={"dimensions": dimensions})

    def clear(self) -> None:
        with self._lock:
            self._pending = {}


metrics = InvocationMetrics()


def status_class(status: int) -> str:
    """200 → "2xx": a dimension with five values, whatever the statuses."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"
