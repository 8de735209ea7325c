"""JSON in and out with exact decimals: numbers with a fraction parse to `Decimal` and `Decimal`
serialises as a JSON number written exactly (`49.99`, never `"49.99"` nor `49.990000000000002`).

The stdlib encoder cannot write a Decimal as a number and Powertools' encoder writes it as a
string, so this uses simplejson's maintained `use_decimal` support.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import simplejson
from pydantic import BaseModel

# The deepest a body nests: the deepest any route reads is 2 (the body, its `metadata`), so this
# leaves room without letting a body reach the interpreter's recursion limit (about 1,000).
MAX_DEPTH: Final = 32


class NotAnObjectError(ValueError):
    """The body parsed, but is not a JSON object."""


class TooDeepError(NotAnObjectError):
    """Objects and arrays nest deeper than MAX_DEPTH."""


class DuplicateKeyError(ValueError):
    """An object names the same key twice: which value was meant is anyone's guess."""


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with seconds and a `Z`: `2023-10-15T14:32:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    """Compact JSON; `Decimal` as an exact number, written as `str()` gives it (models
    normalise prices first, so `5E+3` reaches here as `5000`)."""
    return simplejson.dumps(
        value, use_decimal=True, default=_default, separators=(",", ":"), ensure_ascii=False
    )


_INT_DIGITS = 4000  # below CPython's int-from-string limit (4300), which would raise mid-parse


def _parse_decimal(text: str) -> Decimal:
    return Decimal(text)


def _parse_int(text: str) -> int | Decimal:
    # An absurdly long integer stays a number (a Decimal) so validation can name its field.
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 leaves duplicate names undefined and parsers disagree (first or last wins), so a
    # body with one is refused rather than read one way here and another way by the client.
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise DuplicateKeyError("an object names the same key twice")
        found[name] = value
    return found


def loads_object(text: str) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (no key named twice in any object);
    raises ValueError otherwise."""
    try:
        value = simplejson.loads(
            text,
            parse_float=_parse_decimal,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:  # nesting deeper than the parser's stack: not a usable body
        raise TooDeepError("the body nests too deeply") from None
    if not isinstance(value, dict):
        raise NotAnObjectError("the body is not a JSON object")
    # fewer brackets than levels cannot nest that deep: most bodies skip the walk
    if text.count("[") + text.count("{") > MAX_DEPTH and _nests_deeper_than(value, MAX_DEPTH):
        raise TooDeepError("the body nests too deeply")
    return value


def _nests_deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    # Without recursing: whatever reads the body afterwards (validators, the idempotency
    # fingerprint, logging) may recurse, and must never meet a RecursionError. Depth first with
    # one iterator per open level, so the memory is the depth, never the body's width.
    levels = [_members(value)]
    while levels:
        for child in levels[-1]:
            if isinstance(child, dict | list):
                if len(levels) >= limit:
                    return True
                levels.append(_members(child))
                break
        else:
            levels.pop()
    return False


def _members(value: dict[str, Any] | list[Any]) -> Iterator[Any]:
    return iter(value.values() if isinstance(value, dict) else value)
