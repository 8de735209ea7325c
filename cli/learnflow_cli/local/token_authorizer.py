"""API Gateway's TOKEN authorizer: the identity header checks made before the function runs, the
function's answer read as API Gateway reads it, its policy evaluated against the method ARN, and
the optional cache of each token's answer for the template's `ReauthorizeEvery`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from learnflow_cli.local.http_messages import Refusal
from learnflow_cli.local.iam import policy_allows
from learnflow_cli.local.lambda_runtime import describe_error, elapsed_ms

if TYPE_CHECKING:
    from learnflow_cli import template as tpl
    from learnflow_cli.local.http_messages import HttpRequest
    from learnflow_cli.local.lambda_runtime import Invoker

_CACHE_PRUNE_SIZE = 1000  # cache entries before expired ones are swept out


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    refusal: Refusal | None = None  # set when the request stops here
    principal_id: str | None = None  # $context.authorizer.principalId, once a policy is known
    context: dict[str, Any] | None = None  # requestContext.authorizer when it goes on
    usage_key: str | None = None
    invoked_ms: float | None = None  # None: the function did not run (header check, cache)


@dataclass(slots=True)
class _CachedPolicy:
    principal_id: str
    policy: dict[str, Any]
    context: dict[str, str]
    usage_key: str | None
    expires: float


class TokenAuthorizer:
    """The API's TOKEN authorizer, run through `runtime`; answers cached per token for the
    template's TTL when `cache` is on (off by default, so a revoked key fails at once)."""

    def __init__(self, declared: tpl.Authorizer, runtime: Invoker, *, cache: bool = False) -> None:
        self._declared = declared
        self._runtime = runtime
        self._cache_enabled = cache
        self._cache: dict[str, _CachedPolicy] = {}
        self._cache_lock = threading.Lock()

    @property
    def function_id(self) -> str:
        return self._declared.function_id

    def authorize(self, request: HttpRequest, method_arn: str) -> AuthOutcome:
        """The identity header must be sent once and match the validation expression before
        the function is called; "Unauthorized" is a 401, a policy that does not allow the
        method a 403, any other error of the function (an exception, a timeout, a crash)
        AUTHORIZER_FAILURE and a malformed answer AUTHORIZER_CONFIGURATION_ERROR, both 500
        unless the template says otherwise."""
        tokens = request.header_values(self._declared.identity_header)
        # Two values for the identity header (two `Authorization` lines) identify nobody: which
        # one would be the caller's is anyone's guess.
        token = tokens[0] if len(tokens) == 1 else None
        if token is None or not self._declared.accepts(token):
            return AuthOutcome(refusal=Refusal("UNAUTHORIZED", 401))
        cached = self._cached(token)
        invoked_ms: float | None = None
        if cached is None:
            event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
            started = time.perf_counter()
            result = self._runtime.invoke(self.function_id, event)
            invoked_ms = elapsed_ms(started)
            if result.error is not None:
                if result.error.get("errorMessage") == "Unauthorized":
                    return AuthOutcome(refusal=Refusal("UNAUTHORIZED", 401), invoked_ms=invoked_ms)
                # The function could not decide (its key store is down, it timed out or
                # crashed): a server error the client may retry, never a 401.
                note = describe_error(self.function_id, result.error)
                refusal = Refusal("AUTHORIZER_FAILURE", 500, note)
                return AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
            cached = _parse_policy(result.payload)
            if cached is None:
                note = "the authorizer returned a malformed response"
                refusal = Refusal("AUTHORIZER_CONFIGURATION_ERROR", 500, note)
                return AuthOutcome(refusal=refusal, invoked_ms=invoked_ms)
            self._remember(token, cached)
        if not policy_allows(cached.policy, method_arn):
            refusal = Refusal("ACCESS_DENIED", 403)
            return AuthOutcome(refusal, cached.principal_id, invoked_ms=invoked_ms)
        forwarded: dict[str, Any] = {
            **cached.context,
            "principalId": cached.principal_id,
            "integrationLatency": round(invoked_ms or 0),
        }
        return AuthOutcome(
            principal_id=cached.principal_id,
            context=forwarded,
            usage_key=cached.usage_key,
            invoked_ms=invoked_ms,
        )

    def _cached(self, token: str) -> _CachedPolicy | None:
        if not self._cache_enabled:
            return None
        with self._cache_lock:
            entry = self._cache.get(token)
            if entry is not None and entry.expires <= time.monotonic():
                del self._cache[token]
                entry = None
            return entry

    def _remember(self, token: str, entry: _CachedPolicy) -> None:
        if not self._cache_enabled or self._declared.ttl <= 0:
            return
        entry.expires = time.monotonic() + self._declared.ttl
        with self._cache_lock:
            self._cache[token] = entry
            if len(self._cache) > _CACHE_PRUNE_SIZE:  # tokens nobody sends again
                now = time.monotonic()
                for stale in [t for t, e in self._cache.items() if e.expires <= now]:
                    del self._cache[stale]


def _parse_policy(payload: Any) -> _CachedPolicy | None:
    """The authorizer's answer as API Gateway reads it, or None when it is malformed."""
    if not isinstance(payload, dict):
        return None
    principal = payload.get("principalId")
    policy = payload.get("policyDocument")
    raw_context = payload.get("context") or {}
    if not isinstance(principal, str | int) or not isinstance(policy, dict):
        return None
    if not isinstance(raw_context, dict):
        return None
    context: dict[str, str] = {}
    for key, value in raw_context.items():
        if isinstance(value, bool):
            context[str(key)] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            context[str(key)] = str(value)
        elif value is not None:
            return None  # API Gateway accepts only strings, numbers and booleans
    usage_key = payload.get("usageIdentifierKey")
    return _CachedPolicy(
        principal_id=str(principal),
        policy=policy,
        context=context,
        usage_key=str(usage_key) if usage_key else None,
        expires=0.0,
    )
