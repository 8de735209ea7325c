"""The table's stream → its functions, as Lambda's event source mapping runs it: poll the shard,
filter records with the template's FilterCriteria (Lambda's event filtering), batch, invoke,
and retry from the first failed record up to MaximumRetryAttempts."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from learnflow_cli.local.aws import error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient

    from learnflow_cli import template as tpl
    from learnflow_cli.local.lambda_runtime import Invocation

STREAM_POLL_SECONDS = 0.25  # Lambda polls a stream shard about four times a second


def matches_pattern(pattern: Mapping[str, Any], value: Any) -> bool:
    """Lambda event filtering: every key of the pattern must match (nested objects recurse, a
    list holds alternatives: literal values, or prefix/suffix/exists/anything-but/numeric)."""
    for key, rule in pattern.items():
        present = isinstance(value, dict) and key in value
        item = value.get(key) if present else None
        if isinstance(rule, dict):
            if not present or not matches_pattern(rule, item):
                return False
        elif isinstance(rule, list):
            if not any(_matches_one(alternative, item, present=present) for alternative in rule):
                return False
        elif item != rule:
            return False
    return True


def _matches_one(rule: Any, item: Any, *, present: bool) -> bool:
    if isinstance(rule, dict):
        if "exists" in rule:
            return present == bool(rule["exists"])
        if not present:
            return False
        values = item if isinstance(item, list) else [item]
        return any(_operator(rule, value) for value in values)
    if not present:
        return False
    if isinstance(item, list):
        return rule in item
    return bool(item == rule)


def _operator(rule: Mapping[str, Any], value: Any) -> bool:
    if "prefix" in rule:
        return isinstance(value, str) and value.startswith(str(rule["prefix"]))
    if "suffix" in rule:
        return isinstance(value, str) and value.endswith(str(rule["suffix"]))
    if "equals-ignore-case" in rule:
        return isinstance(value, str) and value.lower() == str(rule["equals-ignore-case"]).lower()
    if "anything-but" in rule:
        excluded = rule["anything-but"]
        return value not in (excluded if isinstance(excluded, list) else [excluded])
    if "numeric" in rule:
        return _numeric(rule["numeric"], value)
    return False


def _numeric(conditions: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    checks: dict[str, Callable[[float, float], bool]] = {
        "=": lambda a, b: a == b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    pairs = zip(conditions[::2], conditions[1::2], strict=False)
    return all(checks[str(op)](float(value), float(bound)) for op, bound in pairs)


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record from GetRecords as Lambda hands it to the function (JSON types only)."""
    converted: dict[str, Any] = _jsonable(dict(record))
    converted["eventSourceARN"] = stream_arn
    identity = converted.get("userIdentity")
    if isinstance(identity, dict):  # a TTL deletion: Lambda spells its fields in camel case
        converted["userIdentity"] = {
            "type": identity.get("Type"),
            "principalId": identity.get("PrincipalId"),
        }
    return converted


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


class StreamDelivery:
    """One event source mapping: the table's stream → one function, as Lambda runs it (poll,
    filter, batch, invoke, retry from the first failed record, give up after the template's
    MaximumRetryAttempts)."""

    def __init__(
        self,
        client: DynamoDBStreamsClient,
        stream_arn: str,
        function: tpl.StreamFunction,
        *,
        invoke: Callable[[str, dict[str, Any]], Invocation],
        log: Callable[[str], None],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        # Run once before the first delivery (the SES identity: moto loads SES only when used,
        # so the stack's start does not pay for it).
        self._prepare = prepare
        self._client = client
        self._stream_arn = stream_arn
        self._function = function
        self._invoke = invoke
        self._log = log
        self._stop = threading.Event()
        self._iterators: dict[str, str] = {}
        self._last: dict[str, str] = {}  # shard → last sequence number read
        self._thread = threading.Thread(
            target=self._run, name=f"stream-{function.function_id}", daemon=True
        )

    def start(self) -> None:
        # LATEST, as the template asks: what the table holds before the stack starts is old.
        for shard in self._client.describe_stream(StreamArn=self._stream_arn)["StreamDescription"][
            "Shards"
        ]:
            self._iterators[shard["ShardId"]] = self._client.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            delivered = False
            for shard_id, iterator in list(self._iterators.items()):
                try:
                    page = self._client.get_records(ShardIterator=iterator, Limit=1000)
                except ClientError as error:
                    self._recover(shard_id, error_code(error))
                    break
                except Exception:  # the endpoint went away while stopping
                    if self._stop.is_set():
                        return
                    break
                self._iterators[shard_id] = page.get("NextShardIterator") or iterator
                if page["Records"]:
                    self._last[shard_id] = page["Records"][-1]["dynamodb"]["SequenceNumber"]
                records = [lambda_record(record, self._stream_arn) for record in page["Records"]]
                wanted = [record for record in records if self._wanted(record)]
                size = max(1, self._function.batch_size)
                for start in range(0, len(wanted), size):
                    self._deliver(wanted[start : start + size])
                    delivered = True
            if not delivered:
                self._stop.wait(STREAM_POLL_SECONDS)

    def _recover(self, shard_id: str, code: str) -> None:
        """After a failed GetRecords: a fresh iterator when the old one expired (after 15
        minutes) or points at records the stream no longer keeps, else try again."""
        try:
            if code == "ExpiredIteratorException":
                self._renew(shard_id)
            elif code == "TrimmedDataAccessException":
                self._log(
                    "stream: records were trimmed before they were read (delivery fell further "
                    "behind than the stream keeps); going on from the oldest record kept"
                )
                self._renew(shard_id, oldest=True)
            else:
                self._log(f"stream: GetRecords failed ({code}); retrying")
        except ClientError as error:
            self._log(f"stream: GetShardIterator failed ({error_code(error)}); retrying")

    def _renew(self, shard_id: str, *, oldest: bool = False) -> None:
        """A fresh iterator after the last record read (or at the oldest record kept)."""
        last = self._last.get(shard_id)
        position: dict[str, Any] = {"ShardIteratorType": "LATEST"}
        if oldest:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
        elif last:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
        self._iterators[shard_id] = self._client.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]

    def _wanted(self, record: Mapping[str, Any]) -> bool:
        patterns = self._function.filter_patterns
        return not patterns or any(matches_pattern(pattern, record) for pattern in patterns)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        name = self._function.function_id
        retries = self._function.maximum_retry_attempts
        limit = 10 if retries is None or retries < 0 else retries
        if self._prepare is not None:
            self._prepare()
            self._prepare = None
        pending, attempt = batch, 0
        while pending and not self._stop.is_set():
            result = self._invoke(name, {"Records": pending})
            first_failed = self._first_failure(pending, result)
            if first_failed is None:
                took = f"{result.duration_ms:.0f} ms"
                self._log(f"stream -> {name}: {len(pending)} record(s) processed ({took})")
                return
            if result.error is not None:
                error = f"{result.error.get('errorType')}: {result.error.get('errorMessage')}"
                self._log(f"stream -> {name} failed: {error}")
            pending = pending[first_failed:]
            attempt += 1
            if attempt > limit:
                sequence = [r.get("dynamodb", {}).get("SequenceNumber") for r in pending]
                self._log(
                    f"stream -> {name}: giving up on {len(pending)} record(s) after {limit} "
                    f"retries (in AWS they go to the on-failure destination): {sequence}"
                )
                return
            self._stop.wait(min(2.0, 0.1 * 2**attempt))

    def _first_failure(self, batch: list[dict[str, Any]], result: Invocation) -> int | None:
        """None when the whole batch succeeded; else the index to retry from."""
        if result.error is not None:
            return 0
        if not self._function.report_batch_item_failures:
            return None
        payload = result.payload
        failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
        if not failures:
            return None
        sequence = [record.get("dynamodb", {}).get("SequenceNumber") for record in batch]
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in sequence:
                return 0  # an unknown identifier fails the whole batch, as in Lambda
            indexes.append(sequence.index(identifier))
        return min(indexes)
