"""IAM policy evaluation as API Gateway applies an authorizer's policy: `execute-api:Invoke` on
a method ARN, `*` and `?` wildcards in actions and resources, an explicit Deny winning."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM's matching: `*` any run of characters (slashes included), `?` exactly one."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def as_list(value: Any) -> list[str]:
    """A policy field (or a header value) that may be one string or a list, as a list."""
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """Whether an authorizer's policy lets `execute-api:Invoke` reach `method_arn`: an explicit
    Deny wins over any Allow, and no matching Allow means no."""
    allowed = False
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        actions = as_list(statement.get("Action"))
        if not any(
            wildcard(action, ignore_case=True).fullmatch("execute-api:Invoke") for action in actions
        ):
            continue
        if not any(
            wildcard(resource).fullmatch(method_arn)
            for resource in as_list(statement.get("Resource"))
        ):
            continue
        effect = str(statement.get("Effect", ""))
        if effect == "Deny":
            return False
        if effect == "Allow":
            allowed = True
    return allowed
