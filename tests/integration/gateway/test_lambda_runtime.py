"""The emulator's Lambda runtime: the handler's context and environment, warm workers, the
function timeout, concurrent invocations in workers of their own, and the caps on workers with
eviction and reaping of idle ones."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import requests

from learnflow_cli.local.lambda_runtime import LambdaRuntime
from tests.integration.gateway.app import ALLOW, echo
from tests.support.gateway import UUID, assert_error

if TYPE_CHECKING:
    from learnflow_cli.local.functions import FunctionSpec
    from tests.integration.gateway.conftest import Emulator


def test_lambda_context_and_environment_are_the_functions(emulator: Emulator) -> None:
    body = echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    context = body["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(":function:EchoFunction")
    assert context["log_group_name"] == "/aws/lambda/EchoFunction"
    assert 0 < context["remaining"] <= 5000
    assert UUID.match(context["aws_request_id"])
    assert context["aws_request_id"] != body["event"]["requestContext"]["requestId"]
    assert body["env"] == {
        "TABLE": "local-table",  # !Ref Table
        "GREETING": "overridden",  # the function's own variables win over Globals
        "OWN": "mine",
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "AWS_REGION": "us-east-1",
        "LOCAL": "yes",
        "AWS_PROFILE": None,  # nothing of the developer's AWS configuration leaks in
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    }


def test_handler_module_stays_warm_between_requests(emulator: Emulator) -> None:
    first = echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    second = echo(requests.get(emulator.url + "/items/x", headers=ALLOW, timeout=10))
    assert second["pid"] == first["pid"]
    assert second["count"] == first["count"] + 1


def test_function_timeout_is_502_and_the_function_recovers(emulator: Emulator) -> None:
    started = time.monotonic()
    response = requests.get(emulator.url + "/timeout?seconds=5", headers=ALLOW, timeout=10)
    assert time.monotonic() - started < 3  # Timeout: 1 in the template
    assert_error(response, 502, "api_error", "gateway")
    assert requests.get(emulator.url + "/timeout?seconds=0", headers=ALLOW, timeout=10).ok


def test_a_slow_request_does_not_block_others(emulator: Emulator) -> None:
    # Warm the echo function first so the timing below measures concurrency, not a cold start.
    echo(requests.get(emulator.url + "/items/warm", headers=ALLOW, timeout=10))
    results: dict[str, float] = {}

    def slow() -> None:
        requests.get(emulator.url + "/slow?seconds=1", headers=ALLOW, timeout=10)
        results["slow"] = time.monotonic()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    for index in range(5):
        echo(requests.get(emulator.url + f"/items/{index}", headers=ALLOW, timeout=10))
    results["fast"] = time.monotonic()
    thread.join()
    assert results["fast"] < results["slow"]


def test_concurrent_invocations_of_one_function_never_see_each_others_event(
    emulator: Emulator,
) -> None:
    def call(index: int) -> tuple[int, dict[str, Any]]:
        response = requests.get(emulator.url + f"/items/n{index}", headers=ALLOW, timeout=20)
        return index, echo(response)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(24)))
    for index, body in results:
        assert body["event"]["pathParameters"] == {"item_id": f"n{index}"}
        assert body["event"]["requestContext"]["path"] == f"/v2/items/n{index}"
    # Several workers served them at once (at most four per function).
    assert 1 < len({body["pid"] for _, body in results}) <= 4


def _slow(seconds: float = 0) -> dict[str, Any]:
    return {"queryStringParameters": {"seconds": str(seconds)}, "mode": "digits"}


def _total(runtime: LambdaRuntime) -> int:
    return sum(count for count, _ in runtime.workers().values())


def test_workers_are_capped_in_all_and_idle_ones_are_reaped(
    app_specs: dict[str, FunctionSpec],
) -> None:
    """At most `max_total` workers across functions: a function without one takes the least
    recently used idle worker of another; and workers idle for `idle_seconds` are stopped."""
    runtime = LambdaRuntime(app_specs, max_total=2, idle_seconds=0.5, preload=())
    try:
        for name in ("SlowFunction", "TimeoutFunction", "SlowFunction", "EchoFunction"):
            event = _slow() if name != "EchoFunction" else {"requestContext": {"requestId": "r"}}
            assert runtime.invoke(name, event).ok
            assert _total(runtime) <= 2
        # TimeoutFunction's worker was the least recently used when EchoFunction needed one.
        assert set(runtime.workers()) == {"SlowFunction", "EchoFunction"}
        deadline = time.monotonic() + 5
        while runtime.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.workers() == {}
    finally:
        runtime.close()


def test_an_invocation_gives_up_at_start_by_when_no_worker_is_free(
    app_specs: dict[str, FunctionSpec],
) -> None:
    """With its one worker busy, a second invocation given `start_by` never runs: it reports
    `started=False` at that moment, and the busy one still ends well."""
    runtime = LambdaRuntime(app_specs, max_containers=1, preload=())
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            busy = pool.submit(runtime.invoke, "SlowFunction", _slow(1.5))
            deadline = time.monotonic() + 5
            while not runtime.workers() and time.monotonic() < deadline:
                time.sleep(0.01)
            asked = time.monotonic()
            waited_out = runtime.invoke("SlowFunction", _slow(0), start_by=asked + 0.3)
            gave_up = time.monotonic() - asked
            assert busy.result(timeout=10).ok
        assert (waited_out.started, waited_out.ok) == (False, False)
        assert gave_up >= 0.3  # it waited until start_by, and no longer than the busy one
    finally:
        runtime.close()


def test_a_function_without_a_worker_waits_for_room_when_all_are_busy(
    app_specs: dict[str, FunctionSpec],
) -> None:
    runtime = LambdaRuntime(app_specs, max_total=2, preload=())
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            busy = [pool.submit(runtime.invoke, "SlowFunction", _slow(0.5)) for _ in range(2)]
            time.sleep(0.2)
            assert _total(runtime) == 2
            started = time.monotonic()
            waiting = pool.submit(runtime.invoke, "TimeoutFunction", _slow())
            assert waiting.result(timeout=10).ok
            assert time.monotonic() - started > 0.2  # it waited for a SlowFunction worker
            assert all(result.result(timeout=10).ok for result in busy)
        assert _total(runtime) <= 2
    finally:
        runtime.close()


def test_two_slow_requests_to_one_function_run_at_the_same_time(emulator: Emulator) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(
            pool.map(
                lambda _: requests.get(emulator.url + "/slow?seconds=1", headers=ALLOW, timeout=10),
                range(2),
            )
        )
    assert all(reply.ok for reply in replies)
    assert time.monotonic() - started < 1.8  # one after the other would take 2 s
