"""Permissions of restricted keys: `<resource>:read|write`, where write includes read."""

from __future__ import annotations

from collections.abc import Iterable

from learnflow import resources

RESOURCES = tuple(resource.name for resource in resources.RESOURCES)
ACCESS = ("read", "write")
ALL_PERMISSIONS = frozenset(f"{resource}:{access}" for resource in RESOURCES for access in ACCESS)
WILDCARD = "*"


def parse(value: str) -> frozenset[str]:
    """The authorizer context's comma-separated string → a set (`*` for secret keys)."""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def validate(permissions: Iterable[str]) -> frozenset[str]:
    """Check names given to a restricted key; raises ValueError naming the first unknown one."""
    granted = frozenset(permissions)
    unknown = sorted(granted - ALL_PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}")
    return granted


def allows(granted: frozenset[str], needed: str) -> bool:
    """Whether `granted` allows `needed` (`courses:read` is allowed by `courses:write`)."""
    if WILDCARD in granted or needed in granted:
        return True
    resource, _, access = needed.partition(":")
    return access == "read" and f"{resource}:write" in granted
