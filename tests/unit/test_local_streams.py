"""The local stack's stream delivery without a stream: Lambda's event filtering, and batches,
retries and recovery against a stand-in for the dynamodbstreams API."""

from __future__ import annotations

import threading
from typing import Any, cast

from botocore.exceptions import ClientError

from learnflow_cli import template as tpl
from learnflow_cli.local.lambda_runtime import Invocation
from learnflow_cli.local.streams import StreamDelivery, matches_pattern

WELCOME_PATTERN = {
    "eventName": ["INSERT"],
    "dynamodb": {
        "NewImage": {
            "type": {"S": ["enrollment"]},
            "status": {"S": ["active"]},
            "welcome_email": {"S": ["requested"]},
        }
    },
}


def _record(sequence: int, *, event: str = "INSERT", welcome: str = "requested") -> dict[str, Any]:
    image = {
        "type": {"S": "enrollment"},
        "status": {"S": "active"},
        "welcome_email": {"S": welcome},
        "count": {"N": "3"},
    }
    return {
        "eventID": str(sequence),
        "eventName": event,
        "dynamodb": {"SequenceNumber": str(sequence), "NewImage": image},
    }


def test_filter_patterns_follow_lambda_event_filtering() -> None:
    assert matches_pattern(WELCOME_PATTERN, _record(1))
    assert not matches_pattern(WELCOME_PATTERN, _record(1, event="MODIFY"))
    assert not matches_pattern(WELCOME_PATTERN, _record(1, welcome="not_requested"))
    assert not matches_pattern(WELCOME_PATTERN, {"eventName": "INSERT"})
    record = _record(1)
    assert matches_pattern({"eventID": [{"prefix": "1"}]}, record)
    assert matches_pattern({"eventName": [{"anything-but": ["REMOVE"]}]}, record)
    assert not matches_pattern({"eventName": [{"anything-but": "INSERT"}]}, record)
    assert matches_pattern({"userIdentity": [{"exists": False}]}, record)
    assert not matches_pattern({"eventName": [{"exists": False}]}, record)
    assert matches_pattern({"n": [{"numeric": [">", 2, "<=", 3]}]}, {"n": 3})
    assert not matches_pattern({"n": [{"numeric": [">", 3]}]}, {"n": 3})


class _FakeStreams:
    """The dynamodbstreams API at the outer edge: one page of records, then nothing."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._pages = [records]
        self.drained = threading.Event()  # asked again: the page was handled to the end

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "iterator"}

    def get_records(self, **_: Any) -> dict[str, Any]:
        if not self._pages:
            self.drained.set()
        records = self._pages.pop(0) if self._pages else []
        return {"Records": records, "NextShardIterator": "iterator"}


class _TrimmedStreams(_FakeStreams):
    """A stream whose first position was trimmed before it was read (delivery fell behind)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__(records)
        self.positions: list[str] = []

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.positions.append(str(kwargs["ShardIteratorType"]))
        return {"ShardIterator": kwargs["ShardIteratorType"]}

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["ShardIterator"] == "LATEST":
            error = {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}}
            raise ClientError(error, "GetRecords")  # type: ignore[arg-type]
        return super().get_records(**kwargs)


def _deliver(
    records: list[dict[str, Any]],
    answers: list[Invocation],
    *,
    retries: int = 2,
    batch_size: int = 10,
    streams: _FakeStreams | None = None,
) -> tuple[list[list[str]], list[str]]:
    """Run one delivery; (sequence numbers of each invocation's batch, log lines)."""
    function = tpl.StreamFunction(
        function_id="Welcome",
        code_uri="functions/notifications/",
        module="send_welcome_email",
        handler_attr="lambda_handler",
        environment={},
        table_id="Table",
        batch_size=batch_size,
        maximum_retry_attempts=retries,
        report_batch_item_failures=True,
        filter_patterns=[WELCOME_PATTERN],
        on_failure=None,
    )
    batches: list[list[str]] = []
    logs: list[str] = []
    prepared: list[bool] = []
    streams = streams or _FakeStreams(records)

    def invoke(name: str, event: dict[str, Any]) -> Invocation:
        assert name == "Welcome"
        batches.append([record["dynamodb"]["SequenceNumber"] for record in event["Records"]])
        assert all(record["eventSourceARN"] == "arn:stream" for record in event["Records"])
        return answers.pop(0) if answers else Invocation(payload={"batchItemFailures": []})

    delivery = StreamDelivery(
        cast("Any", streams),
        "arn:stream",
        function,
        invoke=invoke,
        log=logs.append,
        prepare=lambda: prepared.append(True),
    )
    delivery.start()
    try:
        assert streams.drained.wait(10)
    finally:
        delivery.stop()
    assert prepared == [True]
    return batches, logs


def test_stream_delivery_filters_batches_and_retries_from_the_first_failure() -> None:
    records = [_record(1), _record(2, welcome="not_requested"), _record(3), _record(4)]
    failure = Invocation(payload={"batchItemFailures": [{"itemIdentifier": "3"}]})
    batches, logs = _deliver(records, [failure])
    assert batches == [["1", "3", "4"], ["3", "4"]]
    assert "2 record(s) processed" in logs[-1]


def test_stream_delivery_gives_up_after_the_maximum_retry_attempts() -> None:
    error = Invocation(error={"errorType": "RuntimeError", "errorMessage": "SES down"})
    batches, logs = _deliver([_record(1), _record(2)], [error, error, error, error], retries=2)
    assert batches == [["1", "2"]] * 3
    assert "giving up on 2 record(s) after 2 retries" in logs[-1]


def test_stream_delivery_batches_by_batch_size() -> None:
    batches, _ = _deliver([_record(n) for n in range(1, 6)], [], batch_size=2)
    assert batches == [["1", "2"], ["3", "4"], ["5"]]


def test_stream_delivery_goes_on_from_the_oldest_record_kept_after_a_trim() -> None:
    streams = _TrimmedStreams([_record(1), _record(2)])
    batches, logs = _deliver([], [], streams=streams)
    assert streams.positions == ["LATEST", "TRIM_HORIZON"]
    assert batches == [["1", "2"]]
    assert any("trimmed" in line for line in logs)
