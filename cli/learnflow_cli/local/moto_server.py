"""moto's server as the local stack runs it (in a child process): each service's calls applied one
at a time, as atomically as AWS applies them, with DynamoDB's TTL deletion and bounded history
(stream records, shard iterators, sent e-mails), so memory follows the data and not the traffic."""

from __future__ import annotations

import contextlib
import copy
import email
import email.policy
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.table import StreamShard, Table
    from werkzeug.serving import BaseWSGIServer


@dataclass(frozen=True, slots=True)
class Limits:
    """How much history the moto process keeps, and how often it sweeps (tests shrink them)."""

    # DynamoDB Streams keeps a day of records; a local consumer reads them within a second, so
    # the last few thousand are plenty and bound what a long load test leaves behind.
    max_stream_records: int = 5_000
    # A shard iterator expires 15 minutes after it is handed out (DynamoDB Streams' rule);
    # every GetRecords hands out a new one, so they are dropped by age and, in a burst, by count.
    shard_iterator_seconds: float = 15 * 60
    max_shard_iterators: int = 5_000
    # DynamoDB deletes an expired item within days; locally a sweep every few seconds keeps
    # short-lived items (rate-limit windows, idempotency records) from piling up.
    sweep_seconds: float = 5.0


# Connections waiting to be accepted (moto's clients are the function workers, a few each).
REQUEST_QUEUE_SIZE = 1024
# DynamoDB's TTL ignores expiry times more than five years in the past.
TTL_MAX_AGE_SECONDS = 5 * 365 * 24 * 3600
MAIL_POLL_SECONDS = 0.2
# How GetRecords shows a deletion made by TTL (Lambda hands it on as type/principalId).
_TTL_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
_SCOPE = re.compile(r"Credential=[^/,\s]*/[^/,\s]*/[^/,\s]*/([^/,\s]+)/aws4_request")
_DYNAMODB_TARGETS = ("DynamoDB_", "DynamoDBStreams_")

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- one call at a time


class ServiceLocks:
    """One lock per AWS service. moto's backends are plain dicts and lists that its handlers
    read and change without locks (a TransactWriteItems deep-copies the table while another
    request inserts; a conditional UpdateItem reads, checks, then writes), where AWS applies
    each call atomically: holding a service's lock for a whole call restores that."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def lock(self, service: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(service, threading.Lock())


def service_of(environ: dict[str, Any]) -> str:
    """The AWS service a request is for: DynamoDB and DynamoDB Streams share one (a stream is
    the table's), the rest by the SigV4 credential scope; "" for unsigned requests."""
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGETS):
        return "dynamodb"
    match = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return match.group(1).lower() if match else ""


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialisedApp:
    """moto's WSGI application with each service's requests run one at a time. The request
    body is read before the lock is taken and the response is built whole under it, so a slow
    client never holds a service up."""

    def __init__(self, app: WsgiApp, locks: ServiceLocks) -> None:
        self._app = app
        self._locks = locks

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = str(environ.get("CONTENT_LENGTH") or "")
        if length.isdigit():
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(length)))
        with self._locks.lock(service_of(environ)):
            response = self._app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()


# ------------------------------------------------------------------------- moto, bounded


def install_bounds(limits: Limits) -> None:
    """Patch moto's DynamoDB and DynamoDB Streams models, in this process only: a stream keeps
    its last `max_stream_records` records (reading a trimmed position is DynamoDB's
    TrimmedDataAccessException), shard iterators expire (ExpiredIteratorException), and a
    TransactWriteItems saves and restores only the items it touches instead of deep-copying
    the whole table (moto's way costs the table's size in time and memory on every call, and
    its rollback swaps in a copy of the table whose stream no iterator reads); moto stops
    keeping every model object it ever made."""
    from moto.core.common_models import BaseModel  # noqa: PLC0415 - moto only in its process
    from moto.core.exceptions import JsonRESTError  # noqa: PLC0415
    from moto.dynamodb import models as dynamodb_models  # noqa: PLC0415
    from moto.dynamodb.models import table as table_models  # noqa: PLC0415
    from moto.dynamodbstreams import models as streams_models  # noqa: PLC0415

    class BoundedStreamShard(table_models.StreamShard):
        # Trimming moves starting_sequence_number forward by what it drops: moto numbers records
        # by their index from it, so sequence numbers, LATEST and TRIM_HORIZON stay right.
        def add(self, old: Item | None, new: Item | None) -> None:
            super().add(old, new)
            excess = len(self.items) - limits.max_stream_records
            if excess > 0:
                del self.items[:excess]
                self.starting_sequence_number += excess

        def get(self, start: int, quantity: int) -> list[dict[str, Any]]:
            if start < self.starting_sequence_number:
                raise JsonRESTError(
                    "TrimmedDataAccessException",
                    "The operation attempted to read past the oldest stream record in a shard.",
                )
            return super().get(start, quantity)

    class TimedShardIterator(streams_models.ShardIterator):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.handed_out = time.monotonic()

    original_get_records = streams_models.DynamoDBStreamsBackend.get_records
    original_transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def get_records(
        self: streams_models.DynamoDBStreamsBackend, iterator_arn: str, limit: int
    ) -> dict[str, Any]:
        if iterator_arn not in self.shard_iterators:
            # moto would fail with a KeyError (a 500); DynamoDB says the iterator expired.
            raise JsonRESTError("ExpiredIteratorException", "Iterator expired or unknown.")
        return original_get_records(self, iterator_arn, limit)

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved = _TransactionSnapshot(self, transact_items)
        try:
            original_transact(self, transact_items)
        except BaseException:
            saved.restore()
            raise

    # moto appends every model object it ever makes (each Item, each copy of one, each stream
    # record and shard iterator) to a class-level list, for its /moto-api/ introspection: a
    # leak that grows with every request. Nothing here uses that introspection.
    BaseModel.__new__ = staticmethod(_untracked)  # type: ignore[method-assign]
    table_models.StreamShard = BoundedStreamShard  # type: ignore[misc]
    streams_models.ShardIterator = TimedShardIterator  # type: ignore[misc]
    streams_models.DynamoDBStreamsBackend.get_records = get_records  # type: ignore[method-assign]
    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    # moto's transact_write_items deep-copies each table it touches, to swap the copy back on
    # failure: with the snapshot above a table is "copied" as itself, and the swap is a no-op.
    vars(dynamodb_models)["copy"] = _TablesNotCopied(table_models.Table)


def _untracked(cls: type[Any], *_args: Any, **_kwargs: Any) -> Any:
    return object.__new__(cls)


class _TablesNotCopied:
    """The `copy` module, except that deepcopy returns a Table itself."""

    def __init__(self, table_type: type[Any]) -> None:
        self._table_type = table_type

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)


class _TransactionSnapshot:
    """The items a TransactWriteItems may change, and each stream's end, as they were before
    it: restored when it fails, so none of its writes (nor their stream records) remain."""

    def __init__(self, backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        self._items: list[tuple[Table, DynamoType, DynamoType | None, Item | None]] = []
        self._streams: list[tuple[StreamShard, int]] = []
        tables: dict[str, Table] = {}
        for action in transact_items:
            for operation in action.values():
                if not isinstance(operation, dict):
                    continue
                name = str(operation.get("TableName", ""))
                table = backend.tables.get(name)
                if table is None:
                    continue  # moto answers ResourceNotFound before it writes anything
                tables[name] = table
                with contextlib.suppress(Exception):  # malformed: moto's validation says why
                    key = operation.get("Key") or {
                        attribute: operation["Item"][attribute]
                        for attribute in (table.hash_key_attr, table.range_key_attr)
                        if attribute is not None
                    }
                    hash_key, range_key = backend.get_keys_value(table, key)
                    current = table.get_item(hash_key, range_key)
                    self._items.append((table, hash_key, range_key, copy.deepcopy(current)))
        for table in tables.values():
            shard = table.stream_shard
            if shard is not None:
                self._streams.append((shard, shard.starting_sequence_number + len(shard.items)))

    def restore(self) -> None:
        for table, hash_key, range_key, item in reversed(self._items):
            if range_key is None:
                if item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item  # type: ignore[assignment]
                continue
            partition = table.items[hash_key]
            if item is None:
                partition.pop(range_key, None)
                if not partition:
                    del table.items[hash_key]
            else:
                partition[range_key] = item
        for shard, end in self._streams:
            keep = end - shard.starting_sequence_number
            if keep >= 0:
                del shard.items[keep:]


# ------------------------------------------------------------------------- housekeeping


def sweep_expired_items(now: float | None = None) -> int:
    """Delete every item whose TTL attribute has passed, as DynamoDB's TTL does (a REMOVE
    stream record with the DynamoDB service as its user identity); the number deleted. Call
    with the DynamoDB lock held."""
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

    now = time.time() if now is None else now
    deleted = 0
    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            for table in list(backend.tables.values()):
                attribute = table.ttl.get("AttributeName")
                if table.ttl.get("TimeToLiveStatus") != "ENABLED" or not attribute:
                    continue
                for hash_key, range_key in _expired(table, str(attribute), now):
                    table.delete_item(hash_key, range_key)
                    shard = table.stream_shard
                    if shard is not None and shard.items:
                        shard.items[-1].record["userIdentity"] = dict(_TTL_IDENTITY)
                    deleted += 1
    return deleted


def _expired(
    table: Table, attribute: str, now: float
) -> list[tuple[DynamoType, DynamoType | None]]:
    def items() -> Iterator[Item]:
        for value in table.items.values():
            if table.range_key_attr is None:
                yield value  # type: ignore[misc]
            else:
                yield from value.values()

    found: list[tuple[DynamoType, DynamoType | None]] = []
    for item in items():
        expiry = item.attrs.get(attribute)
        if expiry is None or expiry.type != "N":
            continue  # not a number: DynamoDB's TTL leaves the item alone
        try:
            seconds = float(expiry.value)
        except (TypeError, ValueError):
            continue
        if now - TTL_MAX_AGE_SECONDS < seconds <= now:
            found.append((item.hash_key, item.range_key))
    return found


def expire_shard_iterators(limits: Limits, now: float | None = None) -> int:
    """Drop the shard iterators handed out longer ago than the limits allow, and the oldest
    beyond their number; the number dropped. Call with the DynamoDB lock held."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends  # noqa: PLC0415

    now = time.monotonic() if now is None else now
    dropped = 0
    for regions in list(dynamodbstreams_backends.values()):
        for backend in list(regions.values()):
            iterators = backend.shard_iterators
            excess = len(iterators) - limits.max_shard_iterators
            # Insertion order is hand-out order: the oldest come first.
            for arn, iterator in list(iterators.items()):
                handed_out = float(getattr(iterator, "handed_out", now))
                if excess <= 0 and now - handed_out < limits.shard_iterator_seconds:
                    break
                del iterators[arn]
                excess -= 1
                dropped += 1
    return dropped


def _housekeeping(locks: ServiceLocks, limits: Limits, stop: threading.Event) -> None:
    lock = locks.lock("dynamodb")
    while not stop.wait(limits.sweep_seconds):
        try:
            with lock:
                sweep_expired_items()
                expire_shard_iterators(limits)
        except Exception:  # a sweep must never end the process; the next one tries again
            logger.exception("moto housekeeping failed")


def _watch_mail(
    report: Callable[[dict[str, Any]], None], locks: ServiceLocks, stop: threading.Event
) -> None:
    """Report each message moto's SES backend has accepted (SES v2 stores them there too),
    then forget it: nothing reads them back, and they would pile up."""
    lock = locks.lock("ses")
    while not stop.wait(MAIL_POLL_SECONDS):
        if "moto.ses.models" not in sys.modules:
            continue  # nobody has called SES yet; importing it here would slow moto's start
        from moto.ses.models import ses_backends  # noqa: PLC0415 - inside the moto process only

        messages: list[Any] = []
        with lock:
            for regions in list(ses_backends.values()):
                for backend in list(regions.values()):
                    messages.extend(backend.sent_messages)
                    backend.sent_messages.clear()
        for message in messages:
            report({"email": describe_message(message)})


def describe_message(message: Any) -> dict[str, Any]:
    if hasattr(message, "raw_data"):
        parsed = email.message_from_string(str(message.raw_data), policy=email.policy.default)
        return {
            "from": str(parsed.get("From", message.source or "")),
            "to": [str(parsed.get("To", ""))] if parsed.get("To") else [],
            "subject": str(parsed.get("Subject", "")),
        }
    destinations = getattr(message, "destinations", {}) or {}
    recipients = [
        str(address)
        for kind in ("ToAddresses", "CcAddresses", "BccAddresses")
        for address in destinations.get(kind, [])
    ]
    return {
        "from": str(getattr(message, "source", "")),
        "to": recipients,
        "subject": str(getattr(message, "subject", "") or getattr(message, "template", "")),
    }


# ------------------------------------------------------------------------- the process


def make_server(host: str, limits: Limits, port: int = 0) -> tuple[BaseWSGIServer, ServiceLocks]:
    """moto's server as ThreadedMotoServer builds it, with SerialisedApp in front and a longer
    listen queue; bounds installed. Not yet serving."""
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import ThreadedWSGIServer  # noqa: PLC0415

    class Server(ThreadedWSGIServer):
        request_queue_size = REQUEST_QUEUE_SIZE

    install_bounds(limits)
    locks = ServiceLocks()
    app = SerialisedApp(DomainDispatcherApplication(create_backend_app), locks)
    return Server(host, port, app, MotoRequestHandler), locks


def main(host: str, limits: Limits) -> None:
    """The moto process: serve, report the port, report every e-mail SES accepts, keep TTL and
    history in bounds, stop when the serve process closes our standard input (or disappears)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # anything moto prints must not corrupt the JSON lines on `out`
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server, locks = make_server(host, limits)
    threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
    lock = threading.Lock()

    def report(message: dict[str, Any]) -> None:
        try:
            with lock:
                out.write(json.dumps(message) + "\n")
                out.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)  # the serve process is gone: so are we

    report({"port": server.server_address[1]})
    stop = threading.Event()
    threading.Thread(target=_watch_mail, args=(report, locks, stop), daemon=True).start()
    threading.Thread(target=_housekeeping, args=(locks, limits, stop), daemon=True).start()
    sys.stdin.read()  # returns at EOF: the serve process is gone or stopping us
    stop.set()
    # Everything moto holds is in memory and disposable: no orderly shutdown to wait for.
    os._exit(0)


def command(host: str, limits: Limits) -> list[str]:
    """How the serve process starts this one. Imported by its name, not run with `-m`: moto's
    model classes (the subclasses above) need a dotted module name."""
    code = f"import sys; from {__name__} import run; run(sys.argv[1:])"
    return [sys.executable, "-c", code, host, json.dumps(asdict(limits))]


def run(argv: list[str]) -> None:
    main(argv[0], Limits(**json.loads(argv[1])))
