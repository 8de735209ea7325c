"""Object ids: a prefix and 24 base62 characters, time-ordered as strings and unguessable."""

from __future__ import annotations

import re
import secrets
import threading
import time

from learnflow.resources import OTHER_ID_PREFIXES, RESOURCES

# Base62 in ASCII order, so that comparing two ids as strings compares their timestamps.
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 24
_TIME_CHARS = 8  # milliseconds since the epoch: 62**8 ms is ~6,900 years
_RANDOM_CHARS = BODY_LENGTH - _TIME_CHARS  # 16 chars, ~95 bits from the CSPRNG
_RANDOM_SPACE = 62**_RANDOM_CHARS

PREFIXES = frozenset({resource.prefix for resource in RESOURCES}) | OTHER_ID_PREFIXES

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    if number:
        raise OverflowError("value does not fit the id width")
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + ALPHABET.index(char)
    return number


def new_id(prefix: str) -> str:
    """A new id such as `crs_0LkW3bHq…`; ids made later by this process sort after earlier ones.

    Within one millisecond the random part is incremented (as ULID's monotonic mode does) so
    that ids from one process stay in creation order; the first id of each millisecond draws a
    fresh random part, which keeps ids unguessable.
    """
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    global _last_ms, _last_random  # the monotonic clock is process state by nature
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            random_part = _last_random + 1 + secrets.randbelow(1 << 32)
            if random_part >= _RANDOM_SPACE:  # astronomically unlikely: borrow the next millisecond
                now_ms += 1
                random_part = secrets.randbelow(_RANDOM_SPACE // 2)
        else:
            random_part = secrets.randbelow(_RANDOM_SPACE // 2)  # leave room to increment
        _last_ms, _last_random = now_ms, random_part
    return f"{prefix}_{_encode(now_ms, _TIME_CHARS)}{_encode(random_part, _RANDOM_CHARS)}"


_PATTERN = re.compile(r"([a-z]+)_([0-9A-Za-z]{24})")


def is_valid(value: str, prefix: str) -> bool:
    """True when `value` has the shape of an id of kind `prefix` (it may still not exist)."""
    match = _PATTERN.fullmatch(value)
    return match is not None and match.group(1) == prefix


def timestamp_ms(value: str) -> int:
    """The creation time, in milliseconds since the epoch, encoded in an id."""
    match = _PATTERN.fullmatch(value)
    if not match:
        raise ValueError("not an id")
    return _decode(match.group(2)[:_TIME_CHARS])
