"""API keys: their format (`sk_live_…`, `rk_test_…`), issuing, hashing and the Bearer header."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal, cast

from learnflow.ids import ALPHABET
from learnflow.tenancy import Mode

Kind = Literal["secret", "restricted"]

KINDS: Final[tuple[Kind, ...]] = ("secret", "restricted")
MODES: Final[tuple[Mode, ...]] = ("live", "test")
PREFIXES: Final[dict[Kind, str]] = {"secret": "sk", "restricted": "rk"}
_KINDS_BY_PREFIX: Final[dict[str, Kind]] = {prefix: kind for kind, prefix in PREFIXES.items()}

# 40 base62 characters from the CSPRNG: log2(62) * 40 ≈ 238 bits (the contract asks for ≥ 32).
SECRET_LENGTH: Final = 40
MIN_SECRET_LENGTH: Final = 32
# An upper bound only so that a pathological header is refused before it is hashed; API
# Gateway's own validation expression (template.yaml) lets through {32,}.
MAX_SECRET_LENGTH: Final = 128

_KEY = re.compile(
    rf"^(sk|rk)_(live|test)_[A-Za-z0-9]{{{MIN_SECRET_LENGTH},{MAX_SECRET_LENGTH}}}$", re.ASCII
)
# Exactly "Bearer <key>": one space, case as RFC 6750 writes it and as API Gateway's identity
# validation expression matches it, nothing before or after.
_BEARER = re.compile(r"^Bearer ([^\s]+)$", re.ASCII)


@dataclass(frozen=True, slots=True)
class KeyType:
    """What a secret's prefix says: secret or restricted, live or test."""

    kind: Kind
    mode: Mode


def generate_secret(kind: Kind, mode: Mode) -> str:
    """A new secret such as `sk_test_<40 base62 chars>`; shown once to its owner, never stored."""
    if kind not in PREFIXES:
        raise ValueError(f"unknown key kind {kind!r}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    body = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIXES[kind]}_{mode}_{body}"


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a key is stored and looked up.

    A plain, unsalted hash is enough here, unlike for passwords: a secret holds ~238 random bits
    from the CSPRNG, so there is no dictionary to try and brute force over 2**238 candidates is
    out of reach whatever the hash's speed; salting or stretching (bcrypt, scrypt) defends low-
    entropy inputs only, and would make the authorizer's lookup impossible (a salted hash cannot
    be a table key) or slow. A fast deterministic digest keeps the authorizer at one GetItem.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_type(secret: str) -> KeyType | None:
    """The kind and mode of a well-formed secret; None when it is not one."""
    if not _KEY.fullmatch(secret):
        return None
    prefix, mode, _ = secret.split("_", 2)
    return KeyType(kind=_KINDS_BY_PREFIX[prefix], mode=cast("Mode", mode))


def is_well_formed(secret: str) -> bool:
    return key_type(secret) is not None


def parse_authorization(header: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header value, or None.

    None for anything else: no header, another scheme, extra whitespace, or a token that is not
    a well-formed LearnFlow key (so a malformed token never costs a DynamoDB read).
    """
    if not header:
        return None
    match = _BEARER.fullmatch(header)
    if match is None:
        return None
    token = match.group(1)
    return token if is_well_formed(token) else None


def last4(secret: str) -> str:
    """The last four characters, the only part of a secret ever stored or shown again."""
    return secret[-4:]


def redacted(kind: Kind, mode: Mode, last_four: str) -> str:
    """How a stored key is shown later: `sk_test_…abcd`."""
    return f"{PREFIXES[kind]}_{mode}_…{last_four}"
