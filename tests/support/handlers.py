"""Calling route handlers as API Gateway calls them, for one caller: events from events/, the
authorizer's context, a Lambda context, and the answer parsed with exact decimals."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import botocore.client

from learnflow.jsonio import dumps
from learnflow.tenancy import Mode, Tenant
from tests.conftest import load_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# CPython 3.13.0 unmaps and maps again a 16 KB frame-stack chunk each time the call depth crosses
# a chunk boundary. Under pytest's deep stack, a handler's calls into moto can straddle one and
# spend most of their time in mmap/munmap (ten times slower); a worker thread runs them from a
# fresh frame stack instead. Semantics are unchanged: one call at a time, as Lambda does.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
_accounts = itertools.count(1)
_requests = itertools.count(1)


class Context:
    """A Lambda context with `remaining_ms` left to run."""

    function_name = "learnflow"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:learnflow"
    aws_request_id = "learnflow-1"

    def __init__(self, remaining_ms: int = 9_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    text: str
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.body["error"])

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


def new_account() -> str:
    return f"acct_{next(_accounts):024d}"


@dataclass
class Caller:
    """One account and mode calling routes with a key of `permissions` ("*": a secret key)."""

    account_id: str = field(default_factory=new_account)
    mode: Mode = "test"
    permissions: str = "*"
    rate_limit: int = 1_000_000

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.account_id, self.mode)

    def as_mode(self, mode: Mode) -> Caller:
        return Caller(self.account_id, mode, self.permissions, self.rate_limit)

    def event(
        self,
        event: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """`events/<event>.json` for this caller, with its own request id."""
        authorizer = {
            "account_id": self.account_id,
            "mode": self.mode,
            "permissions": self.permissions,
            "rate_limit": str(self.rate_limit),
        }
        data = load_event(event, authorizer=authorizer, **overrides)
        if body is not None:
            data["body"] = body if isinstance(body, str) else dumps(body)  # exact decimals
        data["requestContext"]["requestId"] = f"req-{next(_requests):08d}"
        if key is not None:
            data["headers"]["Idempotency-Key"] = key
            data["multiValueHeaders"]["Idempotency-Key"] = [key]
        return data

    def call(
        self,
        handler: Handler,
        event: str,
        *,
        context: Context | None = None,
        direct: bool = False,
        **overrides: Any,
    ) -> Reply:
        """Run `handler` on the event; `direct` runs it on this thread (for concurrent calls)."""
        data = self.event(event, **overrides)
        if direct:
            return parse(handler(data, context or Context()))
        return parse(_WORKER.submit(handler, data, context or Context()).result())


def parse(result: dict[str, Any]) -> Reply:
    text = str(result["body"])
    headers = dict(result.get("headers") or {})
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = values[-1]
    return Reply(result["statusCode"], json.loads(text, parse_float=Decimal), text, headers)


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """Apply each DynamoDB call atomically, as DynamoDB does (moto in-process does not: its
    conditional writes race under threads); the code between calls stays concurrent."""
    lock = threading.Lock()
    original = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private

    def serialised(self: Any, operation: str, params: Any) -> Any:
        if self.meta.service_model.service_name not in ("dynamodb",):
            return original(self, operation, params)
        with lock:
            return original(self, operation, params)

    setattr(botocore.client.BaseClient, "_make_api_call", serialised)  # noqa: B010 - private
    try:
        yield
    finally:
        setattr(botocore.client.BaseClient, "_make_api_call", original)  # noqa: B010
