"""The single table's key grammar: the one module that knows how PK, SK and GSI keys are spelled.

A tenant's collection of one kind is one partition (`T#<acct>#<mode>#COURSE`) whose sort keys are
the object ids; ids sort in creation order, so a reverse Query is newest-first. Filtered lists
use their own GSI partitions (never a FilterExpression with Limit) so every page is full.
"""

from __future__ import annotations

from typing import Final

from learnflow.resources import COURSES, ENROLLMENTS, INSTRUCTORS, STUDENTS
from learnflow.tenancy import Tenant

Key = dict[str, str]

PK: Final = "PK"
SK: Final = "SK"
TTL_ATTRIBUTE: Final = "expires_at"
# On every item: "course", "enrollment", … (the stream filters on it)
TYPE_ATTRIBUTE: Final = "type"
COUNTER_TYPE: Final = "counter"  # the `type` of counter shard items

# Overloaded GSIs: index name → (partition key attribute, sort key attribute)
GSI: Final = {f"GSI{n}": (f"GSI{n}PK", f"GSI{n}SK") for n in range(1, 8)}

# Each resource's kind, as learnflow.resources declares it.
COURSE: Final = COURSES.kind
INSTRUCTOR: Final = INSTRUCTORS.kind
STUDENT: Final = STUDENTS.kind
ENROLLMENT: Final = ENROLLMENTS.kind


def _tenant(tenant: Tenant) -> str:
    return f"T#{tenant.account_id}#{tenant.mode}"


# --- accounts and API keys (not tenant data: an account spans both modes) ---


def account(account_id: str) -> Key:
    return {PK: f"ACCT#{account_id}", SK: "ACCT"}


def api_key(secret_hash: str) -> Key:
    """An API key item is found by the hash of its secret: the authorizer's one GetItem."""
    return {PK: f"KEY#{secret_hash}", SK: "KEY"}


def account_keys_partition(account_id: str) -> str:
    """GSI1 partition listing an account's keys (sort key: the key id)."""
    return f"ACCT#{account_id}#KEYS"


def api_key_id(key_id: str) -> Key:
    """Points from a key's id to its item (the CLI revokes and rolls keys by id, not secret)."""
    return {PK: f"KEYID#{key_id}", SK: "KEYID"}


# --- tenant collections ---


def collection(tenant: Tenant, kind: str) -> str:
    """The partition holding every object of `kind` for `tenant`, sorted by id."""
    return f"{_tenant(tenant)}#{kind}"


def item(tenant: Tenant, kind: str, object_id: str) -> Key:
    return {PK: collection(tenant, kind), SK: object_id}


def filtered(tenant: Tenant, kind: str, **filters: str) -> str:
    """A GSI partition of `kind` objects matching `filters` exactly, e.g. CAT#x#STATUS#y.

    Filter names are sorted so one combination always spells one partition.
    """
    parts = [collection(tenant, kind)]
    for name in sorted(filters):
        parts.append(f"{name.upper()}#{filters[name]}")
    return "#".join(parts)


def counter(tenant: Tenant, kind: str, name: str, shard: int) -> Key:
    """One shard of one count (`counter_name`) of `kind`: a small item of its own, so no item is
    written by every create and any number of categories fits (learnflow.db.counters)."""
    return {PK: f"{_tenant(tenant)}#COUNT#{kind}#{name}#{shard}", SK: "COUNT"}


def counter_name(**filters: str) -> str:
    """The name of the count of objects that match `filters` exactly (`all` for none)."""
    if not filters:
        return "all"
    return "#".join(f"{name}={filters[name]}" for name in sorted(filters))


def unique(tenant: Tenant, kind: str, value: str) -> Key:
    """A uniqueness claim, e.g. a student's lower-cased e-mail or an enrollment's pair lock."""
    return {PK: f"{_tenant(tenant)}#{kind}", SK: value}


# --- per-request bookkeeping ---


def rate_window(tenant: Tenant, window_start: int) -> Key:
    return {PK: f"RL#{tenant.account_id}#{tenant.mode}#{window_start}", SK: "RL"}


def idempotency(tenant: Tenant, key: str) -> Key:
    return {PK: f"IDEM#{tenant.account_id}#{tenant.mode}#{key}", SK: "IDEM"}


def welcome_email(tenant: Tenant, enrollment_id: str) -> Key:
    """The claim that makes an enrollment's welcome e-mail go out once (its own partition, so
    the stream function's writes can be limited to `WELCOME#*` leading keys)."""
    return {PK: f"WELCOME#{tenant.account_id}#{tenant.mode}#{enrollment_id}", SK: "WELCOME"}
