"""The local stack's backing services: moto (DynamoDB, SES, API Gateway), Stripe, the stream."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from learnflow_cli import template as tpl
from learnflow_cli.local import moto_server

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient

    from learnflow_cli.local.gateway import Invocation

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
PLANS = ("standard", "pro")
MODES = ("test", "live")
STREAM_POLL_SECONDS = 0.25  # Lambda polls a stream shard about four times a second
MOTO_START_TIMEOUT = 60.0
LISTEN_QUEUE = 1024  # connections waiting to be accepted (the kernel caps it at somaxconn)


class ServiceError(RuntimeError):
    """A backing service could not be started or prepared; the message says what to do."""


# ------------------------------------------------------------------------- moto, in its own process


class MotoProcess:
    """moto's server in a child process: its imports (about 1.5 s) overlap the serve process's
    own start, and its DynamoDB work runs beside the gateway instead of under the same lock."""

    def __init__(self, host: str = "127.0.0.1", limits: moto_server.Limits | None = None) -> None:
        self._host = host
        self._limits = limits or moto_server.Limits()
        self._process: subprocess.Popen[str] | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self.on_email: Callable[[dict[str, Any]], None] = lambda _message: None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            moto_server.command(self._host, self._limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            # Its own session: Ctrl-C in the terminal reaches only the serve process, which
            # stops this one in order.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, name="moto-output", daemon=True).start()

    def _read(self) -> None:
        stdout = self._process.stdout if self._process is not None else None
        if stdout is None:
            return
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "port" in message:
                self._port = int(message["port"])
                self._ready.set()
            elif "email" in message:
                self.on_email(message["email"])
        self._ready.set()  # the process ended: wake whoever waits

    def endpoint(self, timeout: float = MOTO_START_TIMEOUT) -> str:
        """The endpoint URL, once moto listens."""
        if not self._ready.wait(timeout) or self._port is None:
            raise ServiceError("the embedded AWS services (moto) did not start; see the log above")
        return f"http://{self._host}:{self._port}"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)


# ------------------------------------------------------------------------- AWS clients


@dataclass(frozen=True, slots=True)
class Aws:
    """Where the stack's AWS calls go: an endpoint (moto, LocalStack, DynamoDB Local) or, with
    endpoint None, real AWS through the ordinary configuration."""

    endpoint: str | None
    region: str

    @property
    def credentials(self) -> dict[str, str]:
        return dict(DUMMY_CREDENTIALS) if self.endpoint else {}

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            region_name=self.region,
            aws_access_key_id=self.credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.credentials.get("AWS_SECRET_ACCESS_KEY"),
        )

    def client(self, session: boto3.session.Session, service: str) -> Any:
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=10,
            account_id_endpoint_mode="disabled",
        )
        return session.client(service, endpoint_url=self.endpoint, config=config)  # type: ignore[call-overload]

    def environment(self) -> dict[str, str]:
        """What a process needs to reach the same services (functions and the admin CLI)."""
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            **self.credentials,
        }
        if self.endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        return env


# ------------------------------------------------------------------------- provisioning


@dataclass(slots=True)
class Provisioned:
    table_name: str
    stream_arn: str | None
    api_id: str | None  # None: the endpoint has no API Gateway (no API keys are checked)
    usage_plans: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def provision(
    aws: Aws, template: Mapping[str, Any], *, table_name: str, api_name: str
) -> Provisioned:
    """What the first request needs, prepared concurrently: the table (from the template's own
    definition) and the REST API with its two usage plans."""
    session = aws.session()
    dynamodb: DynamoDBClient = aws.client(session, "dynamodb")
    apigateway: APIGatewayClient = aws.client(session, "apigateway")
    definition = tpl.table_definition(template)
    result = Provisioned(table_name=table_name, stream_arn=None, api_id=None)

    def table() -> None:
        result.stream_arn = _create_table(dynamodb, definition, table_name, result.warnings)

    def api() -> None:
        try:
            result.api_id, result.usage_plans = _create_api(apigateway, template, api_name)
        except ClientError as error:
            result.warnings.append(
                f"no API Gateway at this endpoint ({_code(error)}): "
                "API keys and usage plans are not checked"
            )

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="provision") as pool:
        for future in [pool.submit(table), pool.submit(api)]:
            future.result()
    return result


def create_sender_identity(aws: Aws, sender: str) -> str | None:
    """The SES identity the welcome e-mails are sent from; a warning when it cannot be made."""
    try:
        aws.client(aws.session(), "sesv2").create_email_identity(EmailIdentity=sender)
    except ClientError as error:
        if _code(error) != "AlreadyExistsException":
            return f"could not create the SES identity {sender} ({_code(error)})"
    return None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _create_table(
    client: DynamoDBClient, definition: tpl.TableDefinition, name: str, warnings: list[str]
) -> str | None:
    try:
        client.create_table(**definition.create_table_kwargs(name))
        created = True
    except ClientError as error:
        if _code(error) != "ResourceInUseException":
            raise
        created = False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    if created and definition.ttl_attribute:
        try:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": definition.ttl_attribute,
                },
            )
        except ClientError:
            warnings.append("the endpoint does not support TTL on the table")
    description = client.describe_table(TableName=name)["Table"]
    stream = description.get("LatestStreamArn")
    if not stream:
        warnings.append(f"table {name} has no stream: welcome e-mails are not sent")
    return stream


def _create_api(
    client: APIGatewayClient, template: Mapping[str, Any], api_name: str
) -> tuple[str, dict[str, str]]:
    """A REST API standing for the template's (so usage plans can name its stage) and the tier
    usage plans with the template's throttles, reused when they already exist."""
    stage = tpl.stage_name(template)
    apis = client.get_rest_apis(limit=500).get("items", [])
    existing = [api for api in apis if api.get("name") == api_name]
    api_id = existing[0]["id"] if existing else client.create_rest_api(name=api_name)["id"]
    declared_plans = client.get_usage_plans(limit=500).get("items", [])
    plans_by_name = {plan.get("name"): plan["id"] for plan in declared_plans}
    plans: dict[str, str] = {}
    for logical_id, declared in tpl.usage_plans(template).items():
        tier = next((tier for tier in PLANS if tier in logical_id.lower()), None)
        if tier is None:
            continue
        name = f"{api_name}-{tier}"
        if name in plans_by_name:
            plans[tier] = str(plans_by_name[name])
            continue
        created = client.create_usage_plan(
            name=name,
            description=f"{tier.title()} tier (local stack)",
            apiStages=[{"apiId": api_id, "stage": stage}],
            throttle={"rateLimit": declared.rate_limit, "burstLimit": declared.burst_limit},
        )
        plans[tier] = created["id"]
    return api_id, plans


class ApiKeyChecker:
    """API Gateway's check of the authorizer's usageIdentifierKey: an enabled API key in a usage
    plan of this API's stage. Verdicts are kept a few seconds (API Gateway propagates key and
    plan changes with a delay too), so a request costs no extra round trips."""

    def __init__(self, client: APIGatewayClient, api_id: str, stage: str, ttl: float = 5) -> None:
        self._client = client
        self._stage = (api_id, stage)
        self._ttl = ttl
        self._lock = threading.Lock()
        self._verdicts: dict[str, tuple[str | None, float]] = {}

    def __call__(self, value: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(value)
        if cached is not None and cached[1] > now:
            return cached[0]
        verdict = self._check(value)
        with self._lock:
            self._verdicts[value] = (verdict, now + self._ttl)
        return verdict

    def _check(self, value: str) -> str | None:
        pages = self._client.get_paginator("get_api_keys").paginate(includeValues=True)
        keys = (item for page in pages for item in page.get("items", []))
        key = next((item for item in keys if item.get("value") == value), None)
        if key is None or not key.get("enabled", False) or "id" not in key:
            return None
        plans = self._client.get_usage_plans(keyId=key["id"], limit=500).get("items", [])
        for plan in plans:
            for stage in plan.get("apiStages", []):
                if (stage.get("apiId"), stage.get("stage")) == self._stage:
                    return key["id"]
        return None


# ------------------------------------------------------------------------- seeding


@dataclass(frozen=True, slots=True)
class SeededAccount:
    id: str
    name: str
    plan: str
    keys: dict[str, str]  # mode → secret


def seed(
    table: Table, apigateway: APIGatewayClient | None, usage_plans: Mapping[str, str]
) -> list[SeededAccount]:
    """Two demo accounts, Standard and Pro, each with a test and a live secret key."""
    from learnflow_cli.admin.service import Admin  # noqa: PLC0415 - imports the layer

    admin = Admin(table=table, apigateway=apigateway, usage_plans=dict(usage_plans))

    def one(plan: str) -> SeededAccount:
        name = f"Demo {plan.title()}"
        account = admin.create_account(name, plan)
        keys = {mode: str(admin.create_key(account["id"], mode)["secret"]) for mode in MODES}
        return SeededAccount(id=str(account["id"]), name=name, plan=plan, keys=keys)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="seed") as pool:
        return list(pool.map(one, PLANS))


# ------------------------------------------------------------------------- the table's stream


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
                    self._recover(shard_id, _code(error))
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
            self._log(f"stream: GetShardIterator failed ({_code(error)}); retrying")

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


# ------------------------------------------------------------------------- Stripe


def start_stripe(host: str, port: int, *, any_port_if_taken: bool = False) -> Any:
    """The Stripe-compatible server on `port` (12111 is stripe-mock's); on a free port instead
    when `port` is taken and `any_port_if_taken`."""
    from learnflow_cli.local.stripe_server import StripeServer  # noqa: PLC0415 - only when local

    def refuse(reason: str) -> ServiceError:
        return ServiceError(
            f"cannot listen on {host}:{port} for the Stripe-compatible server ({reason}); "
            "pass --stripe-port 0 for any free port, or --stripe-api-base to use another"
        )

    if port:
        # werkzeug's make_server prints its own advice and exits the process when the port is
        # taken: find out first, and say it our way.
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if not any_port_if_taken:
                    raise refuse(error.strerror or "in use") from None
                port = 0
    server = StripeServer(host, port)
    try:
        server.start()
    except (OSError, SystemExit):  # SystemExit: werkzeug's, if the port was taken meanwhile
        raise refuse("in use") from None
    # werkzeug listens with a queue of 128; the functions' workers are its only clients, but a
    # burst of them must wait to be accepted, never be reset.
    listener = getattr(getattr(server, "_server", None), "socket", None)
    if listener is not None:
        listener.listen(LISTEN_QUEUE)
    return server


def write_stream(stream: IO[str], text: str, lock: threading.Lock) -> None:
    with lock:
        stream.write(text + "\n")
        stream.flush()
