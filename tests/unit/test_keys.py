"""API keys: format, entropy, hashing, the Bearer header, permissions, the authorizer's policy."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import get_args

import pytest

from functions.authorizer import authorize
from learnflow import keys, permissions
from learnflow.db.accounts import ApiKey
from learnflow.ids import ALPHABET
from learnflow.tenancy import Mode

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v2/GET/courses"
BODY = "a" * 40


def make_key(**overrides: object) -> ApiKey:
    fields: dict[str, object] = {
        "id": "key_0Uk2ZXJQmNvvTlGR9SJ29af7",
        "account_id": "acct_0000000000000000000000A1",
        "mode": "test",
        "kind": "secret",
        "permissions": ("*",),
        "status": "active",
        "last4": "abcd",
        "created_at": "2025-06-01T12:00:00Z",
        "plan": "standard",
        "rate_limit": 60,
        "api_gateway_key_value": "zyYUMcwzckCIPinNC7gogJ8yJ5cA4YynuVSb5zzS",
    }
    fields.update(overrides)
    return ApiKey(**fields)  # type: ignore[arg-type]


# --- format and entropy ---


@pytest.mark.parametrize(
    ("kind", "mode", "prefix"),
    [
        ("secret", "live", "sk_live_"),
        ("secret", "test", "sk_test_"),
        ("restricted", "live", "rk_live_"),
        ("restricted", "test", "rk_test_"),
    ],
)
def test_generated_secret_has_its_prefix_and_40_base62_characters(
    kind: keys.Kind, mode: Mode, prefix: str
) -> None:
    secret = keys.generate_secret(kind, mode)
    assert secret.startswith(prefix)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret.removeprefix(prefix))
    assert keys.key_type(secret) == keys.KeyType(kind=kind, mode=mode)


def test_secrets_are_distinct_and_spread_over_the_whole_alphabet() -> None:
    secrets = [keys.generate_secret("secret", "test") for _ in range(200)]
    assert len(set(secrets)) == 200
    counts = Counter("".join(secret.removeprefix("sk_test_") for secret in secrets))
    assert set(counts) == set(ALPHABET)
    expected = 200 * keys.SECRET_LENGTH / len(ALPHABET)  # about 129 draws each, sd about 11
    assert all(expected / 2 < count < expected * 1.5 for count in counts.values())


def test_secret_length_gives_at_least_190_bits() -> None:
    import math  # noqa: PLC0415 - only this test needs it

    assert keys.SECRET_LENGTH * math.log2(len(ALPHABET)) >= 190
    assert keys.SECRET_LENGTH >= 32


@pytest.mark.parametrize(("kind", "mode"), [("public", "test"), ("secret", "prod")])
def test_generate_refuses_unknown_kind_or_mode(kind: str, mode: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        keys.generate_secret(kind, mode)  # type: ignore[arg-type]


# --- hashing ---


def test_hash_is_the_sha256_hex_digest_and_deterministic() -> None:
    secret = keys.generate_secret("secret", "live")
    digest = keys.hash_secret(secret)
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert keys.hash_secret(secret) == digest
    assert secret not in digest


def test_secrets_differing_in_one_character_hash_apart() -> None:
    assert keys.hash_secret(f"sk_test_{BODY}") != keys.hash_secret(f"sk_test_{BODY[:-1]}b")
    assert keys.hash_secret(f"sk_test_{BODY}") != keys.hash_secret(f"sk_live_{BODY}")


# --- shape of a key ---


@pytest.mark.parametrize(
    "secret",
    [
        f"pk_live_{BODY}",
        f"sk_prod_{BODY}",
        f"SK_live_{BODY}",
        f"sk_live{BODY}",
        f"sk_live_{'a' * 31}",
        f"sk_live_{'a' * 129}",
        f"sk_live_{'a' * 39}-",
        f"sk_live_{'a' * 39}_",
        f"sk_live_{'a' * 39}é",
        "",
    ],
)
def test_malformed_secrets_have_no_type(secret: str) -> None:
    assert keys.key_type(secret) is None
    assert not keys.is_well_formed(secret)


def test_last4_and_redacted_form() -> None:
    assert keys.last4(f"sk_test_{'x' * 36}wxyz") == "wxyz"
    assert keys.redacted("restricted", "live", "wxyz") == "rk_live_…wxyz"


# --- the Authorization header ---


@pytest.mark.parametrize("prefix", ["sk_live_", "sk_test_", "rk_live_", "rk_test_"])
def test_bearer_header_yields_the_key(prefix: str) -> None:
    assert keys.parse_authorization(f"Bearer {prefix}{BODY}") == f"{prefix}{BODY}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"bearer sk_test_{BODY}",
        f"BEARER sk_test_{BODY}",
        f"Basic sk_test_{BODY}",
        f"Bearer  sk_test_{BODY}",
        f" Bearer sk_test_{BODY}",
        f"Bearer sk_test_{BODY} ",
        f"Bearer sk_test_{BODY}\n",
        f"Bearer\tsk_test_{BODY}",
        f"Bearer sk_test_{BODY} sk_test_{BODY}",
        f"sk_test_{BODY}",
        "Bearer sk_test_short",
        f"Bearer pk_test_{BODY}",
        f"Bearer sk_test_{BODY[:-1]}!",
    ],
)
def test_anything_but_bearer_and_a_well_formed_key_is_refused(header: str | None) -> None:
    assert keys.parse_authorization(header) is None


# --- permissions ---

ROUTE_PERMISSIONS = sorted(permissions.ALL_PERMISSIONS)


@pytest.mark.parametrize("needed", ROUTE_PERMISSIONS)
def test_secret_keys_have_every_permission(needed: str) -> None:
    assert permissions.allows(permissions.parse("*"), needed)


@pytest.mark.parametrize("granted", ROUTE_PERMISSIONS)
@pytest.mark.parametrize("needed", ROUTE_PERMISSIONS)
def test_permission_matrix_write_includes_read_of_the_same_resource_only(
    granted: str, needed: str
) -> None:
    granted_resource, _, granted_access = granted.partition(":")
    needed_resource, _, needed_access = needed.partition(":")
    expected = granted_resource == needed_resource and (granted_access in (needed_access, "write"))
    assert permissions.allows(permissions.parse(granted), needed) is expected


def test_no_permission_allows_nothing() -> None:
    assert not any(permissions.allows(permissions.parse(""), need) for need in ROUTE_PERMISSIONS)


def test_context_permissions_round_trip_through_the_string_form() -> None:
    key = make_key(kind="restricted", permissions=("students:write", "courses:read"))
    granted = permissions.parse(authorize.context_of(key)["permissions"])
    assert granted == {"courses:read", "students:write"}
    assert permissions.allows(granted, "students:read")
    assert not permissions.allows(granted, "courses:write")


# --- the authorizer's policy and context ---


def test_policy_allows_every_route_of_the_calling_api_and_stage() -> None:
    policy = authorize.allow(make_key(), METHOD_ARN)
    assert policy["principalId"] == "acct_0000000000000000000000A1"
    assert policy["policyDocument"]["Version"] == "2012-10-17"
    assert policy["policyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": ["arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v2/*/*"],
        }
    ]
    assert policy["usageIdentifierKey"] == "zyYUMcwzckCIPinNC7gogJ8yJ5cA4YynuVSb5zzS"


def test_context_of_a_secret_key_is_all_strings_with_wildcard_permissions() -> None:
    context = authorize.allow(make_key(mode="live", plan="pro", rate_limit=300), METHOD_ARN)[
        "context"
    ]
    assert context == {
        "account_id": "acct_0000000000000000000000A1",
        "mode": "live",
        "plan": "pro",
        "rate_limit": "300",
        "key_id": "key_0Uk2ZXJQmNvvTlGR9SJ29af7",
        "key_kind": "secret",
        "permissions": "*",
    }
    assert all(isinstance(value, str) for value in context.values())


def test_context_of_a_restricted_key_lists_its_permissions_sorted() -> None:
    key = make_key(kind="restricted", permissions=("students:write", "courses:read"))
    context = authorize.allow(key, METHOD_ARN)["context"]
    assert context["key_kind"] == "restricted"
    assert context["permissions"] == "courses:read,students:write"


def test_policy_omits_usage_identifier_key_when_the_account_has_none() -> None:
    policy = authorize.allow(make_key(api_gateway_key_value=None), METHOD_ARN)
    assert "usageIdentifierKey" not in policy


def test_key_states_follow_status_and_expiry() -> None:
    assert make_key().state_at(1e12) == "active"
    assert make_key(expires_at=1000).state_at(999.9) == "active"
    assert make_key(expires_at=1000).state_at(1000) == "expired"
    assert make_key(status="revoked", revoked_at="2025-06-01T12:00:00Z").state_at(0) == "revoked"
    assert not make_key(status="revoked").usable_at(0)


def test_kind_and_mode_literals_match_the_prefix_tables() -> None:
    assert set(keys.PREFIXES) == set(get_args(keys.Kind))
    assert set(keys.MODES) == set(get_args(Mode))
