"""Calling route handlers as API Gateway calls them, for one caller: events from events/, the
authorizer's context, a Lambda context, and the answer parsed with exact decimals.

- `Caller()`: a new account (test mode, a secret key) calling routes: `call(handler, event,
  body=..., key=..., path_params=..., query=...)` returns a `Reply`; subclass it for a
  resource's own helpers (`as_mode` keeps the subclass).
- `invoke(handler, event)`: any event (already built) through a handler, answer parsed.
- `Context(remaining_ms)` / `BareContext()`: a Lambda context with / without
  `get_remaining_time_in_millis`.
- `FakeLimiter`: an in-memory rate limiter for apps built with `make_app` in a test.
- `container_copy` and `separate_containers`: handlers running at once, as separate containers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import pytest
from botocore.client import BaseClient

from learnflow import errors
from learnflow.http import App
from learnflow.jsonio import dumps
from learnflow.ratelimit import Allowance
from learnflow.tenancy import Mode, Tenant
from tests.support.events import load_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# CPython 3.13.0 unmaps and maps again a 16 KB frame-stack chunk each time the call depth crosses
# a chunk boundary. Under pytest's deep stack, a handler's calls into moto can straddle one and
# spend most of their time in mmap/munmap (ten times slower); a worker thread runs them from a
# fresh frame stack instead. Semantics are unchanged: one call at a time, as Lambda does.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
_accounts = itertools.count(1)
_requests = itertools.count(1)
_OWN_BODY = object()  # no `body` given: the event file's own


class BareContext:
    """A Lambda context without `get_remaining_time_in_millis` (as some callers pass)."""

    function_name = "learnflow"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:learnflow"
    aws_request_id = "learnflow-1"


class Context(BareContext):
    """A Lambda context with `remaining_ms` left to run."""

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

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def new_account() -> str:
    """An account id no other test uses."""
    return f"acct_{next(_accounts):024d}"


def new_tenant(mode: Mode = "test") -> Tenant:
    return Tenant(new_account(), mode)


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

    def as_mode(self, mode: Mode) -> Self:
        """The same account (and key rights) in `mode`."""
        return dataclasses.replace(self, mode=mode)

    def event(
        self,
        event: str,
        *,
        key: str | None = None,
        authorizer: dict[str, str] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """`events/<event>.json` for this caller, with its own request id and `overrides` (as
        `load_event` takes them; a `body` that is no string is JSON with exact decimals);
        `key` is sent as the Idempotency-Key, `authorizer` changes the authorizer's context."""
        context = {
            "account_id": self.account_id,
            "mode": self.mode,
            "permissions": self.permissions,
            "rate_limit": str(self.rate_limit),
        }
        body = overrides.pop("body", _OWN_BODY)
        data = load_event(event, authorizer=context | (authorizer or {}), **overrides)
        if body is not _OWN_BODY:
            data["body"] = body if body is None or isinstance(body, str) else dumps(body)
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
        context: object | None = None,
        direct: bool = False,
        **overrides: Any,
    ) -> Reply:
        """Run `handler` on the event; `direct` runs it on this thread (for concurrent calls)."""
        return invoke(handler, self.event(event, **overrides), context, direct=direct)


def invoke(
    handler: Handler, event: dict[str, Any], context: object | None = None, *, direct: bool = False
) -> Reply:
    """One invocation of `handler` with `event` (a `Context()` unless given), on the worker
    thread unless `direct`."""
    if direct:
        return parse(handler(event, context or Context()))
    return parse(_WORKER.submit(handler, event, context or Context()).result())


def parse(result: dict[str, Any]) -> Reply:
    text = str(result["body"])
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name)] = str(values[-1])
    return Reply(int(result["statusCode"]), json.loads(text, parse_float=Decimal), text, headers)


@dataclass
class FakeLimiter:
    """The rate limiter in memory (the DynamoDB one is tested on its own): counts each hit, and
    refuses as `DynamoDBLimiter` does once `allow` hits are used."""

    allow: int = 1000
    hits: list[tuple[Tenant, int]] = field(default_factory=list)

    def hit(self, tenant: Tenant, limit: int) -> Allowance:
        if len(self.hits) >= self.allow:
            raise errors.RateLimitError(
                "Too many requests.",
                headers={
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": "1700000060",
                    "Retry-After": "12",
                },
            )
        self.hits.append((tenant, limit))
        return Allowance(limit=limit, remaining=limit - len(self.hits), reset=1700000060)


def container_copy(module: ModuleType, n: int) -> Handler:
    """A fresh copy of a handler module, as another Lambda container would load it (its own
    resolver: one resolver never runs two requests at once)."""
    assert module.__file__ is not None
    spec = importlib.util.spec_from_file_location(
        f"{module.__name__}__container_{n}", Path(module.__file__)
    )
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    handler: Handler = copy.lambda_handler
    return handler


class _PerThread:
    """A data descriptor whose value is each thread's own."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return getattr(self._local, "value", None)

    def __set__(self, instance: object, value: Any) -> None:
        self._local.value = value


@contextmanager
def separate_containers() -> Iterator[None]:
    """What separate Lambda containers have and threads of one process do not, for tests that
    run handlers (each a `container_copy`) concurrently on threads:

    - DynamoDB applies each call atomically; moto in-process does not (a TransactWriteItems
      deep-copies the table while other threads write to it): one lock per call restores that
      guarantee and nothing more, the handlers' calls still interleave freely between calls.
    - Powertools keeps the request being resolved on a class attribute (`BaseRouter.
      current_event`), so two resolvers in one process would read each other's request: it is
      made per thread, as it is per process in Lambda.
    """
    lock = threading.Lock()
    original: Callable[..., Any] = vars(BaseClient)["_make_api_call"]

    def serialised(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name != "dynamodb":
            return original(self, operation_name, api_params)
        with lock:
            return original(self, operation_name, api_params)

    to_proxy_event: Callable[[App, dict[str, Any]], Any] = App._to_proxy_event
    current = _PerThread()

    def per_thread_event(self: App, event: dict[str, Any]) -> Any:
        proxy = to_proxy_event(self, event)
        current.__set__(self, proxy)
        return proxy

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", serialised)
        patch.setattr(App, "current_event", current, raising=False)
        patch.setattr(App, "_to_proxy_event", per_thread_event)
        yield
