"""Calling route handlers as API Gateway calls them, for one caller: events from events/, the
authorizer's context, a Lambda context, and the answer parsed with exact decimals."""

from __future__ import annotations

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
from typing import Any

import pytest
from botocore.client import BaseClient

from learnflow.http import App
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
