"""The local stack's moto process: atomic under concurrency, TTL deletion, bounded history."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from learnflow_cli import template as tpl
from learnflow_cli.local import moto_server, services

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient

TABLE = "local-moto"
LIMITS = moto_server.Limits(max_stream_records=50, max_shard_iterators=20, sweep_seconds=0.2)
WAIT_SECONDS = 5.0

pytestmark = pytest.mark.aws  # a moto process of its own


def _session() -> boto3.session.Session:
    # Module-scoped fixtures run before the suite's per-test fake AWS settings: say it all here.
    return boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )


@dataclass(slots=True)
class Moto:
    endpoint: str
    dynamodb: DynamoDBClient
    streams: DynamoDBStreamsClient
    stream_arn: str
    emails: list[dict[str, Any]]

    def client(self, service: str) -> Any:
        # No retries: a 500 must reach the test instead of being retried away.
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=64)
        return _session().client(service, endpoint_url=self.endpoint, config=config)  # type: ignore[call-overload]

    def shard(self) -> str:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return str(shards["Shards"][0]["ShardId"])

    def iterator(self, kind: str = "LATEST") -> str:
        return self.streams.get_shard_iterator(
            StreamArn=self.stream_arn,
            ShardId=self.shard(),
            ShardIteratorType=kind,  # type: ignore[arg-type]
        )["ShardIterator"]

    def records(self, iterator: str, *, at_least: int = 0) -> list[dict[str, Any]]:
        """The records from `iterator` on, reading until `at_least` arrived or time is up."""
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT_SECONDS
        for _ in range(200):
            page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])  # type: ignore[arg-type]
            iterator = page["NextShardIterator"]
            if (not page["Records"] and len(records) >= at_least) or time.monotonic() > deadline:
                break
        return records


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """The moto process as `learnflow serve` starts it, with small limits, and the template's
    table (stream and TTL included)."""
    process = services.MotoProcess(limits=LIMITS)
    emails: list[dict[str, Any]] = []
    process.on_email = emails.append
    process.start()
    try:
        endpoint = process.endpoint()
        dynamodb: DynamoDBClient = _session().client("dynamodb", endpoint_url=endpoint)
        definition = tpl.table_definition(tpl.load_template())
        dynamodb.create_table(**definition.create_table_kwargs(TABLE))
        dynamodb.update_time_to_live(
            TableName=TABLE,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        stream_arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        streams: DynamoDBStreamsClient = _session().client("dynamodbstreams", endpoint_url=endpoint)
        yield Moto(endpoint, dynamodb, streams, stream_arn, emails)
    finally:
        process.stop()


def _key(partition: str, sort: str = "A") -> dict[str, Any]:
    return {"PK": {"S": partition}, "SK": {"S": sort}}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def test_a_conditional_counter_admits_exactly_its_limit_under_32_threads(moto: Moto) -> None:
    """The rate limiter's UpdateItem: real DynamoDB applies each call atomically, so 256 tries
    at a limit of 100 make exactly 100 counts, each seen once."""
    client = moto.client("dynamodb")
    limit = 100

    def hit(_: int) -> list[int]:
        counts = []
        refusals: list[str] = []
        for _attempt in range(8):
            try:
                result = client.update_item(
                    TableName=TABLE,
                    Key=_key("RL#counter"),
                    UpdateExpression="ADD #n :one",
                    ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                    ExpressionAttributeNames={"#n": "count"},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)}},
                    ReturnValues="UPDATED_NEW",
                )
            except ClientError as error:
                refusals.append(_code(error))
                continue
            counts.append(int(result["Attributes"]["count"]["N"]))
        assert set(refusals) <= {"ConditionalCheckFailedException"}
        return counts

    with ThreadPoolExecutor(max_workers=32) as pool:
        counts = [count for counts in pool.map(hit, range(32)) for count in counts]
    assert sorted(counts) == list(range(1, limit + 1))


def test_parallel_transactions_on_shared_items_commit_or_cancel_cleanly(moto: Moto) -> None:
    """Course creation's shape (a new item and a shared counter) from 16 threads, some of them
    failing a condition: never a server error, and the counter counts exactly the commits."""
    client = moto.client("dynamodb")
    # A table of some size makes moto's whole-table copy slow enough to race (before the fix).
    for batch in range(12):
        client.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": {**_key(f"FILL#{batch}", f"{n}"), "pad": {"S": "x"}}}}
                    for n in range(25)
                ]
            }
        )
    client.put_item(TableName=TABLE, Item={**_key("TX#gate"), "open": {"BOOL": True}})

    def run(thread: int) -> tuple[int, int, list[str]]:
        committed = cancelled = 0
        errors: list[str] = []
        for n in range(6):
            failing = n % 3 == 2  # a third of them cancel on the gate's condition
            actions: list[Any] = [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {**_key(f"TX#{thread}#{n}"), "v": {"N": "1"}},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key("TX#counter"),
                        "UpdateExpression": "ADD #n :one",
                        "ExpressionAttributeNames": {"#n": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": _key("TX#gate"),
                        "ConditionExpression": "#o = :open",
                        "ExpressionAttributeNames": {"#o": "open"},
                        "ExpressionAttributeValues": {":open": {"BOOL": not failing}},
                    }
                },
            ]
            try:
                client.transact_write_items(TransactItems=actions)
                committed += 1
            except ClientError as error:
                if _code(error) == "TransactionCanceledException":
                    cancelled += 1
                else:
                    errors.append(f"{_code(error)}: {error}")
        return committed, cancelled, errors

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, range(16)))
    assert [error for _, _, errors in results for error in errors] == []
    committed = sum(result[0] for result in results)
    assert committed == 16 * 4
    assert sum(result[1] for result in results) == 16 * 2
    counter = client.get_item(TableName=TABLE, Key=_key("TX#counter"))["Item"]
    assert counter["count"] == {"N": str(committed)}
    cancelled_item = client.get_item(TableName=TABLE, Key=_key("TX#0#2"))
    assert "Item" not in cancelled_item


def test_a_cancelled_transaction_leaves_no_trace_and_the_stream_goes_on(moto: Moto) -> None:
    iterator = moto.iterator()
    with pytest.raises(ClientError) as cancelled:
        moto.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {**_key("ROLLBACK#new"), "v": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key("ROLLBACK#missing"),
                        "UpdateExpression": "SET v = :v",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeValues": {":v": {"N": "1"}},
                    }
                },
            ]
        )
    assert _code(cancelled.value) == "TransactionCanceledException"
    for partition in ("ROLLBACK#new", "ROLLBACK#missing"):
        assert "Item" not in moto.dynamodb.get_item(TableName=TABLE, Key=_key(partition))
    moto.dynamodb.put_item(TableName=TABLE, Item={**_key("ROLLBACK#after"), "v": {"N": "2"}})
    # The iterator taken before the failure still reads the table's stream: it sees the write
    # made after it, and nothing of the cancelled transaction.
    records = moto.records(iterator, at_least=1)
    assert [(r["eventName"], r["dynamodb"]["Keys"]["PK"]["S"]) for r in records] == [
        ("INSERT", "ROLLBACK#after")
    ]


def test_the_stream_keeps_only_its_last_records(moto: Moto) -> None:
    oldest = moto.iterator("TRIM_HORIZON")
    for batch in range(5):
        moto.dynamodb.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": _key(f"STREAM#{batch}", f"{n:02}")}} for n in range(24)
                ]
            }
        )
    kept = moto.records(moto.iterator("TRIM_HORIZON"), at_least=LIMITS.max_stream_records)
    assert len(kept) == LIMITS.max_stream_records
    sequence = [int(record["dynamodb"]["SequenceNumber"]) for record in kept]
    assert sequence == list(range(sequence[0], sequence[0] + len(kept)))
    assert kept[-1]["dynamodb"]["Keys"] == _key("STREAM#4", "23")
    with pytest.raises(ClientError) as trimmed:
        moto.streams.get_records(ShardIterator=oldest)
    assert _code(trimmed.value) == "TrimmedDataAccessException"
    # LATEST still starts after the newest record.
    latest = moto.iterator()
    moto.dynamodb.put_item(TableName=TABLE, Item=_key("STREAM#late"))
    assert [r["dynamodb"]["Keys"] for r in moto.records(latest, at_least=1)] == [
        _key("STREAM#late")
    ]


def test_expired_items_are_deleted_as_dynamodb_ttl_deletes_them(moto: Moto) -> None:
    now = int(time.time())
    items = {
        "TTL#expired": {"N": str(now - 10)},
        "TTL#future": {"N": str(now + 3600)},
        "TTL#text": {"S": str(now - 10)},  # not a number: TTL ignores it
        "TTL#ancient": {"N": str(now - 6 * 365 * 24 * 3600)},  # over five years: ignored too
    }
    iterator = moto.iterator()
    for partition, expires in items.items():
        moto.dynamodb.put_item(TableName=TABLE, Item={**_key(partition), "expires_at": expires})
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if "Item" not in moto.dynamodb.get_item(TableName=TABLE, Key=_key("TTL#expired")):
            break
        time.sleep(0.1)
    remaining = {
        partition
        for partition in items
        if "Item" in moto.dynamodb.get_item(TableName=TABLE, Key=_key(partition))
    }
    assert remaining == {"TTL#future", "TTL#text", "TTL#ancient"}
    removals = [r for r in moto.records(iterator, at_least=5) if r["eventName"] == "REMOVE"]
    assert [r["dynamodb"]["Keys"]["PK"]["S"] for r in removals] == ["TTL#expired"]
    assert removals[0]["userIdentity"] == {
        "Type": "Service",
        "PrincipalId": "dynamodb.amazonaws.com",
    }


def test_old_shard_iterators_expire(moto: Moto) -> None:
    first = moto.iterator()
    for _ in range(LIMITS.max_shard_iterators + 5):
        moto.iterator()
    deadline = time.monotonic() + WAIT_SECONDS
    code = None
    while code is None and time.monotonic() < deadline:
        try:
            moto.streams.get_records(ShardIterator=first)
        except ClientError as error:
            code = _code(error)
        time.sleep(0.1)
    assert code == "ExpiredIteratorException"


def test_each_email_is_reported_once(moto: Moto) -> None:
    ses = moto.client("sesv2")
    ses.create_email_identity(EmailIdentity="sender@example.com")
    for n in range(3):
        ses.send_email(
            FromEmailAddress="sender@example.com",
            Destination={"ToAddresses": [f"to{n}@example.com"]},
            Content={"Simple": {"Subject": {"Data": f"n{n}"}, "Body": {"Text": {"Data": "."}}}},
        )
    deadline = time.monotonic() + WAIT_SECONDS
    while len(moto.emails) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3 * moto_server.MAIL_POLL_SECONDS)  # a report after the list was cleared?
    assert sorted(mail["subject"] for mail in moto.emails) == ["n0", "n1", "n2"]


def test_service_of_a_request() -> None:
    signed = "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{}/aws4_request, Sig=x"
    assert moto_server.service_of({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}) == (
        "dynamodb"
    )
    assert moto_server.service_of({"HTTP_X_AMZ_TARGET": "DynamoDBStreams_20120810.X"}) == (
        "dynamodb"
    )
    assert moto_server.service_of({"HTTP_AUTHORIZATION": signed.format("apigateway")}) == (
        "apigateway"
    )
    assert moto_server.service_of({}) == ""


def test_a_lock_per_service() -> None:
    locks = moto_server.ServiceLocks()
    assert locks.lock("dynamodb") is locks.lock("dynamodb")
    assert locks.lock("dynamodb") is not locks.lock("ses")
    held = threading.Event()

    def other_service() -> None:
        with locks.lock("ses"):
            held.set()

    with locks.lock("dynamodb"):
        # Another service's calls go on meanwhile.
        thread = threading.Thread(target=other_service)
        thread.start()
        thread.join(WAIT_SECONDS)
    assert held.is_set()
