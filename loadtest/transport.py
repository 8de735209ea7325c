"""HTTP for the load test: one keep-alive connection per thread, every attempt recorded."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Base:
    """The API's base URL, split for `http.client`."""

    url: str
    scheme: str
    host: str
    port: int
    prefix: str  # the stage path, "/v2"

    @classmethod
    def parse(cls, url: str) -> Base:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default = 443 if parts.scheme == "https" else 80
        return cls(url.rstrip("/"), parts.scheme, parts.hostname, parts.port or default, parts.path)

    @property
    def local(self) -> bool:
        return self.host == LOOPBACK


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer (any status)."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    ms: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def error_code(self) -> str | None:
        document = self.json()
        if isinstance(document, dict) and isinstance(document.get("error"), dict):
            code = document["error"].get("code")
            return code if isinstance(code, str) else None
        return None

    @property
    def replayed(self) -> bool:
        return (self.header("Idempotent-Replayed") or "").lower() == "true"


class NoAnswer(Exception):  # noqa: N818 - an outcome, not a programming error
    """An attempt without an HTTP answer; `kind` is timeout, reset, refused, abandoned or error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Attempt:
    kind: str  # what sent it: setup, create, enroll, race, list, burst, check
    outcome: str  # the status ("201") or the NoAnswer kind
    ms: float
    scope: str  # the account and mode it counted against
    retry: bool  # a repeat of a request already sent


class Recorder:
    """Every attempt of the run, from every thread, and a few examples of each kind of failure."""

    EXAMPLES = 3

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._examples: dict[str, list[str]] = {}

    def add(self, attempt: Attempt, detail: str | None = None) -> None:
        with self._lock:
            self._attempts.append(attempt)
            if detail is not None:
                seen = self._examples.setdefault(attempt.outcome, [])
                entry = f"{attempt.kind} {detail}"
                if entry not in seen and len(seen) < self.EXAMPLES:
                    seen.append(entry)

    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self._attempts)

    def examples(self) -> dict[str, list[str]]:
        """outcome → what the first few failures of that kind said"""
        with self._lock:
            return {outcome: list(details) for outcome, details in self._examples.items()}


def _classify(error: Exception) -> str:
    # RemoteDisconnected is a ConnectionResetError: the server (or something between) closed the
    # connection without an answer, which a client must treat like a reset.
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionError | http.client.HTTPException):
        return "reset"
    return "error"


class Connection:
    """One thread's keep-alive connection; reopened after any failure."""

    def __init__(self, base: Base, timeout: float, recorder: Recorder, kind: str) -> None:
        self._base = base
        self._timeout = timeout
        self._recorder = recorder
        self._kind = kind
        self._connection: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is None:
            factory = (
                http.client.HTTPSConnection
                if self._base.scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = factory(self._base.host, self._base.port, timeout=self._timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def send(
        self,
        method: str,
        path: str,
        *,
        secret: str,
        scope: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        abandon: bool = False,
        retry: bool = False,
        kind: str | None = None,
    ) -> Answer:
        """One attempt, recorded as `kind` (else the connection's). `abandon` sends the request
        and hangs up without reading the answer,
        as a client whose own timeout fired would; raises `NoAnswer` when nothing came back."""
        sent_headers = {"Authorization": f"Bearer {secret}", **(headers or {})}
        if body is not None:
            sent_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            connection = self._open()
            connection.request(method, self._base.prefix + path, body=body, headers=sent_headers)
            if abandon:
                self.close()
                raise NoAnswer("abandoned", "hung up after sending")
            response = connection.getresponse()
            content = response.read()
            if response.will_close:
                self.close()
        except NoAnswer as failure:
            self._record(failure.kind, started, scope, retry, None, kind)
            raise
        except (OSError, http.client.HTTPException) as error:
            self.close()
            outcome, detail = _classify(error), f"{method} {path}: {type(error).__name__}: {error}"
            self._record(outcome, started, scope, retry, detail, kind)
            raise NoAnswer(outcome, detail) from None
        answer = Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=content,
            ms=(time.monotonic() - started) * 1000,
        )
        said: str | None = None
        if answer.status >= 500:  # what the server said, for the report
            text = content[:300].decode("utf-8", "replace")
            said = f"{method} {path}: {text} (Request-Id {answer.header('Request-Id')})"
        attempt = Attempt(kind or self._kind, str(answer.status), answer.ms, scope, retry)
        self._recorder.add(attempt, said)
        return answer

    def _record(  # noqa: PLR0917 - one attempt's fields
        self,
        outcome: str,
        started: float,
        scope: str,
        retry: bool,
        detail: str | None,
        kind: str | None,
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        self._recorder.add(Attempt(kind or self._kind, outcome, ms, scope, retry), detail)
