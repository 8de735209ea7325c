"""`Idempotency-Key` on every POST and PATCH (docs/api.md §8): claim, replay or resume."""

# How a request with a key runs (the App's pipeline calls this after the permission check, before
# any input is parsed, so input 400s are saved too):
#
# 1. `claim`: one conditional PutItem of `keys.idempotency(tenant, key)` as `in_progress`, with a
#    fingerprint of the request, a lease of the invocation's remaining time and the request's
#    RECOVERY POINT: `recovery_id`, the id of the object a create will make (`crs_…`), or an
#    opaque token for other writes. When the put fails, ReturnValuesOnConditionCheckFailure=ALL_OLD
#    hands back the record in the same call: another fingerprint → 400 idempotency_key_reused;
#    `completed` → the saved response is replayed; `in_progress` with a live lease → 409 in
#    progress; `in_progress` with its lease over (the earlier run crashed, timed out, or answered
#    a 5xx) → this run takes the claim over with one conditional UpdateItem and KEEPS its
#    recovery id. A record older than 24 h counts as absent (TTL deletion is lazy, and moto never
#    deletes): it is replaced by a fresh claim.
# 2. The request runs. Every write it makes is conditional on the recovery id (a create puts the
#    object under that id only if it is absent), so a run that resumes an earlier one finds what
#    that run did, does only what is left, and answers as it would have (docs/idempotency.md).
# 3. `complete` saves a 2xx/4xx response (one conditional UpdateItem). After a 5xx, `release`
#    ends the lease at once but keeps the record, its fingerprint and its recovery id (one
#    conditional UpdateItem): the retry the client is invited to make takes it over and finishes
#    the work instead of doing it twice. Both are conditional on the claim's token, so a claimant
#    whose lease was taken over never overwrites the new owner's record.
#
# Why not Powertools' idempotency utility: over this table (PK + SK) it stores every record under
# one static partition with `<function>#<hash of the payload>` as the sort key, so it cannot keep
# the record at `keys.idempotency(tenant, key)` (the key grammar, the TTL'd `IDEM#…` partition the
# template documents), its key would be a hash of the payload rather than the client's key (its
# validation then only compares a chosen field), it saves whatever the wrapped function returns
# (not saving a 5xx would mean raising through it and rebuilding the response), and it deletes
# the record after a failure, which would lose the recovery point a retry needs.

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import simplejson
from botocore.exceptions import ClientError

from learnflow import errors
from learnflow.db import keys
from learnflow.db.conditions import condition_failed
from learnflow.tenancy import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
KEEP_SECONDS: Final = 24 * 3600
# The lease of an in-progress claim when the Lambda context cannot say how long it may still run.
DEFAULT_LEASE_MS: Final = 30_000
RECORD_TYPE: Final = "idempotency"
IN_PROGRESS: Final = "in_progress"
COMPLETED: Final = "completed"
_CLAIM_ATTEMPTS: Final = 3
METHODS: Final = frozenset({"POST", "PATCH"})


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key: it runs, then completes or releases the claim.

    `recovery_id` is fixed the first time the key is claimed and is the same in every run of the
    request; `resumed` says an earlier run held the claim (its work may be partly done)."""

    tenant: Tenant
    key: str
    token: str
    recovery_id: str
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Saved:
    """The first response to the key's request, to replay as it was."""

    status: int
    body: str


def key_from_event(event: Mapping[str, Any]) -> str | None:
    """The request's `Idempotency-Key` (header names are case-insensitive), None when absent;
    400 parameter_invalid when it is not 1 to 255 printable ASCII characters or given twice over."""
    values: list[str] = []
    for name, given in (event.get("multiValueHeaders") or {}).items():
        if name.lower() == HEADER.lower() and isinstance(given, list):
            values.extend(str(value) for value in given)
    if not values:
        values = [
            str(value)
            for name, value in (event.get("headers") or {}).items()
            if name.lower() == HEADER.lower() and value is not None
        ]
    if not values:
        return None
    key = values[-1]
    if len(set(values)) > 1:
        raise errors.parameter_invalid(HEADER, f"Invalid {HEADER}: give it once.")
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise errors.parameter_invalid(
            HEADER,
            f"Invalid {HEADER}: use 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
        )
    return key


def lease_ms(context: object) -> int:
    """How long a claim may stay in progress: the invocation's remaining time (Lambda ends it
    then), or DEFAULT_LEASE_MS when the context cannot tell."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            value = int(remaining())
        except (TypeError, ValueError):
            value = 0
        if value > 0:
            return value
    return DEFAULT_LEASE_MS


def fingerprint(method: str, path: str, query: Mapping[str, list[str]], body: str | None) -> str:
    """SHA-256 of the request in a canonical form: method, path, query and the body compared as
    parsed JSON (key order, whitespace, escapes and how a number is written do not matter:
    `1.50` is `1.5`); a body that does not parse is compared as its text."""
    query_text = _canonical({name: list(values) for name, values in query.items()})
    request = f"[{json.dumps(method.upper())},{json.dumps(path)},{query_text}"
    try:
        parsed = simplejson.loads(
            body or "", parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal
        )
        text = f'{request},"json",{_canonical(parsed)}]'
    except (ValueError, RecursionError):
        text = f'{request},"raw",{json.dumps(body)}]'
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(value: Any) -> str:
    """JSON text with sorted keys, no whitespace, ASCII escapes and numbers as `<digits>e<exp>`."""
    if value is None or isinstance(value, bool | str):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, int | float):
        return _number(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, Mapping):
        items = sorted(((str(name), item) for name, item in value.items()), key=_first)
        return (
            "{" + ",".join(f"{json.dumps(name)}:{_canonical(item)}" for name, item in items) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _number(number: Decimal) -> str:
    # Exact, whatever its size: Decimal.normalize() would round to the context's 28 digits.
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN or an infinity: bare, so never equal to a string
        return str(number)
    kept = "".join(map(str, digits)).rstrip("0")
    if not kept:
        return "0"
    exponent += len(digits) - len(kept)
    return f"{'-' if number.is_signed() else ''}{kept}e{exponent}"


class IdempotencyStore:
    """Idempotency records in the single table (`IDEM#<acct>#<mode>#<key>` / `IDEM`)."""

    def __init__(self, table: Table, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    def claim(
        self,
        tenant: Tenant,
        key: str,
        request_fingerprint: str,
        *,
        method: str,
        path: str,
        recovery_id: Callable[[], str],
        lease: int = DEFAULT_LEASE_MS,
    ) -> Claim | Saved:
        """Own `key` for this request, or the saved response to replay; raises
        IdempotencyKeyReusedError (another request's key) or IdempotencyInProgressError.

        `recovery_id` makes the recovery id of a first claim; a resumed claim keeps its own."""
        for _ in range(_CLAIM_ATTEMPTS):
            now = self._clock()
            token = uuid.uuid4().hex
            fresh = recovery_id()
            item: dict[str, Any] = {
                **keys.idempotency(tenant, key),
                keys.TYPE_ATTRIBUTE: RECORD_TYPE,
                "status": IN_PROGRESS,
                "fingerprint": request_fingerprint,
                "method": method.upper(),
                "path": path,
                "token": token,
                "recovery_id": fresh,
                "created_at": int(now),
                "lease_expires_at": int(now * 1000) + lease,
                keys.TTL_ATTRIBUTE: int(now) + KEEP_SECONDS,
            }
            try:
                self._table.put_item(
                    Item=item,
                    ConditionExpression="attribute_not_exists(#pk) OR #ttl <= :now",
                    ExpressionAttributeNames={"#pk": keys.PK, "#ttl": keys.TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":now": int(now)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if not condition_failed(error):
                    raise
                record = self._record_after_failed_claim(error, tenant, key)
                if record is None or self._expired(record):
                    continue  # gone or expired meanwhile: claim it afresh
                if record.get("token") == token:
                    # botocore resent a put whose first try was written but whose answer was
                    # lost: the record is this very claim.
                    return Claim(tenant=tenant, key=key, token=token, recovery_id=fresh)
                saved = _verdict(record, request_fingerprint, self._clock())
                if saved is not None:
                    return saved
                taken = self._take_over(tenant, key, record, token, lease)
                if taken is not None:
                    return taken
                continue  # another retry took it over first: look again
            return Claim(tenant=tenant, key=key, token=token, recovery_id=fresh)
        # The record changed hands three times within one request: treat it as busy.
        raise _in_progress()

    def complete(self, claim: Claim, status: int, body: str) -> bool:
        """Save the response for replays; False if the claim was no longer this request's."""
        return self._settle(
            claim,
            "SET #status = :completed, #response_status = :response_status,"
            " #response_body = :response_body REMOVE #lease",
            {
                "#status": "status",
                "#response_status": "response_status",
                "#response_body": "response_body",
                "#lease": "lease_expires_at",
            },
            {":completed": COMPLETED, ":response_status": status, ":response_body": body},
        )

    def release(self, claim: Claim) -> bool:
        """End the lease now, keeping the record and its recovery point, so the retry of a
        request that answered 5xx runs again at once and finishes what this run began; False if
        the claim was no longer this request's."""
        return self._settle(
            claim, "SET #lease = :ended", {"#lease": "lease_expires_at"}, {":ended": 0}
        )

    def _settle(
        self, claim: Claim, expression: str, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        try:
            self._table.update_item(
                Key=keys.idempotency(claim.tenant, claim.key),
                UpdateExpression=expression,
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={**names, "#token": "token"},
                ExpressionAttributeValues={**values, ":token": claim.token},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            return False
        return True

    def _take_over(
        self, tenant: Tenant, key: str, record: Mapping[str, Any], token: str, lease: int
    ) -> Claim | None:
        """Resume the request of an in-progress record whose lease is over: a new token and
        lease, the same recovery id; None when another retry took it over first."""
        now = self._clock()
        try:
            result = self._table.update_item(
                Key=keys.idempotency(tenant, key),
                UpdateExpression=(
                    "SET #token = :token, #lease = :lease,"
                    " #recovery = if_not_exists(#recovery, :recovery)"
                ),
                ConditionExpression="#token = :previous AND #status = :in_progress",
                ExpressionAttributeNames={
                    "#token": "token",
                    "#lease": "lease_expires_at",
                    "#recovery": "recovery_id",
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    ":token": token,
                    ":lease": int(now * 1000) + lease,
                    # a record written before recovery points existed has none: give it one
                    ":recovery": uuid.uuid4().hex,
                    ":previous": record.get("token", ""),
                    ":in_progress": IN_PROGRESS,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            return None
        recovery_id = str(result.get("Attributes", {}).get("recovery_id", ""))
        return Claim(tenant=tenant, key=key, token=token, recovery_id=recovery_id, resumed=True)

    def _record_after_failed_claim(
        self, error: ClientError, tenant: Tenant, key: str
    ) -> dict[str, Any] | None:
        """The record that failed the claim: from the error (ALL_OLD) or, where the endpoint does
        not return it, from a consistent read."""
        raw = error.response.get("Item")
        if isinstance(raw, dict) and raw:
            # boto3 is loaded by now (the table is its resource): no cold-start cost
            from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

            deserializer = TypeDeserializer()
            return {name: deserializer.deserialize(value) for name, value in raw.items()}
        found = self._table.get_item(Key=keys.idempotency(tenant, key), ConsistentRead=True)
        item = found.get("Item")
        return dict(item) if item else None

    def _expired(self, record: Mapping[str, Any]) -> bool:
        return _number_of(record.get(keys.TTL_ATTRIBUTE)) <= self._clock()


def _number_of(value: Any) -> float:
    return float(value) if isinstance(value, Decimal | int | float) else 0.0


def _verdict(record: Mapping[str, Any], request_fingerprint: str, now: float) -> Saved | None:
    """What a live record says to this request: replay it (Saved), refuse it (raises), or None
    when it is this request's own claim with its lease over, to be taken over."""
    if record.get("fingerprint") != request_fingerprint:
        raise errors.IdempotencyKeyReusedError(
            "Keys for idempotent requests can only be used with the same method, path and"
            " parameters they were first used with. Use another key for a different request."
        )
    if record.get("status") == COMPLETED:
        return Saved(
            status=int(record["response_status"]), body=str(record.get("response_body", ""))
        )
    if _number_of(record.get("lease_expires_at")) > now * 1000:
        raise _in_progress()
    return None


def _in_progress() -> errors.IdempotencyInProgressError:
    return errors.IdempotencyInProgressError(
        "A request with this Idempotency-Key is still being processed. Retry it later."
    )


_FIRST_FAULT: Final = 500
_TOO_MANY_REQUESTS: Final = 429


def saves(status: int) -> bool:
    """Whether a response is saved for replays: 2xx and 4xx, never a 5xx (a retry must run again)
    nor a 429 (the rate limiter answers those before any claim)."""
    return status < _FIRST_FAULT and status != _TOO_MANY_REQUESTS
