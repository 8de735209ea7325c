"""learnflow.observability: metrics written once per invocation as EMF, never failing a request;
the per-invocation trace subsegment; requests counted by route and status class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from learnflow import observability
from learnflow.http import make_app
from learnflow.observability import InvocationMetrics, instrument, status_class
from tests.support.events import load_event
from tests.support.handlers import Context


def _emf(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    observability.metrics.clear()


def test_each_dimension_set_is_one_emf_line_with_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = InvocationMetrics()
    metrics.add("Requests", route="GET /courses", status_class="2xx")
    metrics.add("Requests", route="GET /courses", status_class="2xx")
    metrics.add("AmountCharged", 4999, "None", currency="usd", mode="live")

    metrics.flush()
    lines = _emf(capsys.readouterr().out)

    assert len(lines) == 2
    requests = next(line for line in lines if "Requests" in line)
    charged = next(line for line in lines if "AmountCharged" in line)
    assert requests["Requests"] == [1.0, 1.0]
    assert (requests["route"], requests["status_class"], requests["service"]) == (
        "GET /courses",
        "2xx",
        "learnflow",
    )
    (definition,) = requests["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "LearnFlowTest"
    assert sorted(definition["Dimensions"][0]) == ["route", "service", "status_class"]
    assert (charged["AmountCharged"], charged["currency"], charged["mode"]) == (
        [4999.0],
        "usd",
        "live",
    )
    assert metrics.pending() == []  # flushed means forgotten


def test_nothing_recorded_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    InvocationMetrics().flush()

    assert capsys.readouterr().out == ""


def test_a_metric_that_cannot_be_written_is_logged_never_raised(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[str] = []
    monkeypatch.setattr(observability.logger, "exception", lambda m, **_: logged.append(m))
    monkeypatch.setattr(observability.logger, "warning", lambda m, **_: logged.append(m))
    metrics = InvocationMetrics()
    metrics.add("Requests", route="GET /x", status_class="2xx")
    metrics.add("Bad", 1, "NotAUnit", route="GET /y")  # CloudWatch has no such unit
    metrics.add("NotANumber", "many")  # type: ignore[arg-type]

    metrics.flush()

    assert [line["route"] for line in _emf(capsys.readouterr().out)] == ["GET /x"]
    assert logged == ["metric not recorded: not a number", "metrics could not be written"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POWERTOOLS_METRICS_NAMESPACE", None), ("POWERTOOLS_METRICS_DISABLED", "true")],
)
def test_without_a_namespace_or_when_disabled_metrics_are_off(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str | None,
) -> None:
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    logged: list[str] = []
    monkeypatch.setattr(observability.logger, "exception", lambda m, **_: logged.append(m))
    metrics = InvocationMetrics()
    metrics.add("Requests")

    metrics.flush()

    assert capsys.readouterr().out == ""
    assert logged == []
    assert metrics.pending() == []  # forgotten all the same: nothing piles up


def test_instrument_flushes_when_the_handler_returns_and_when_it_raises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @instrument()
    def handler(event: dict[str, Any], context: Any) -> str:
        observability.metrics.add("Things", kind=event["kind"])
        if event["kind"] == "boom":
            raise RuntimeError("boom")
        return "ok"

    assert handler({"kind": "fine"}, Context()) == "ok"
    with pytest.raises(RuntimeError):
        handler({"kind": "boom"}, Context())

    assert [line["kind"] for line in _emf(capsys.readouterr().out)] == ["fine", "boom"]


def test_tracing_is_off_outside_lambda_and_patches_nothing() -> None:
    tracer = observability.tracer()

    assert tracer.disabled
    observability.trace_requests()  # a no-op here; must not fail


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "2xx"),
        (201, "2xx"),
        (404, "4xx"),
        (429, "4xx"),
        (500, "5xx"),
        (503, "5xx"),
        (0, "other"),
    ],
)
def test_status_class(status: int, expected: str) -> None:
    assert status_class(status) == expected


def test_every_answer_is_counted_by_route_and_status_class(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app(authenticated=False)

    @app.get("/openapi.json")
    def document() -> Response[str]:
        return Response(status_code=200, content_type="application/json", body="{}")

    @app.get("/docs")
    def broken() -> Response[str]:
        raise RuntimeError("a bug")

    ok = app.resolve(load_event("get_openapi"), Context())  # type: ignore[arg-type]
    failed = app.resolve(load_event("get_docs"), Context())  # type: ignore[arg-type]
    lines = _emf(capsys.readouterr().out)

    assert (ok["statusCode"], failed["statusCode"]) == (200, 500)
    assert [(line["route"], line["status_class"], line["Requests"]) for line in lines] == [
        ("GET /openapi.json", "2xx", [1.0]),
        ("GET /docs", "5xx", [1.0]),
    ]


def test_in_lambda_the_tracer_patches_botocore_and_then_requests_for_stripe(
    tmp_path: Path,
) -> None:
    # In a process of its own: patching is global and for good.
    script = (
        "from aws_xray_sdk.core import patcher\n"
        "from learnflow import observability\n"
        "tracer = observability.tracer()\n"
        "assert not tracer.disabled\n"
        "before = set(patcher._PATCHED_MODULES)\n"
        "observability.trace_requests()\n"
        "print(sorted(before), sorted(patcher._PATCHED_MODULES))\n"
    )
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LAMBDA_TASK_ROOT": str(tmp_path),  # what tells Powertools it runs in Lambda
        "AWS_LAMBDA_FUNCTION_NAME": "learnflow-test",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "learnflow",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['botocore'] ['botocore', 'requests']"
