"""Who is calling: the caller as the authorizer established it, never from the request itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from learnflow import errors, permissions
from learnflow.tenancy import Mode, Tenant


@dataclass(frozen=True, slots=True)
class Caller:
    """The account, mode, plan and permissions of the key the authorizer accepted."""

    tenant: Tenant
    plan: str
    rate_limit: int
    key_id: str
    key_kind: str
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permissions.allows(self.permissions, permission)


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    """The caller from `requestContext.authorizer` (API Gateway passes the context as strings)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    mode = context.get("mode")
    account_id = context.get("account_id")
    try:
        rate_limit = int(context.get("rate_limit", ""))
    except ValueError:
        rate_limit = 0
    if not account_id or mode not in ("live", "test") or rate_limit <= 0:
        # Only a misconfigured route (no authorizer in front) gets here: refuse, never guess.
        raise errors.AuthenticationError("Invalid API key provided.", code="api_key_invalid")
    if given_twice(event, "Authorization"):
        # API Gateway hands the authorizer one of them; which one the client meant is anyone's
        # guess, so neither is trusted (docs/api.md §4).
        raise errors.AuthenticationError(
            "Give one Authorization header, not several.", code="api_key_invalid"
        )
    return Caller(
        tenant=Tenant(account_id=str(account_id), mode=cast("Mode", mode)),
        plan=str(context.get("plan", "")),
        rate_limit=rate_limit,
        key_id=str(context.get("key_id", "")),
        key_kind=str(context.get("key_kind", "")),
        permissions=permissions.parse(str(context.get("permissions", ""))),
    )


def given_twice(event: Mapping[str, Any], header: str) -> bool:
    """Whether the request carries `header` more than once (names are case-insensitive)."""
    multi = event.get("multiValueHeaders") or {}
    values = [
        value
        for name, given in multi.items()
        if name.lower() == header.lower() and isinstance(given, list)
        for value in given
    ]
    return len(values) > 1
