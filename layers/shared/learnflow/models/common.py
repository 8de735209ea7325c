"""API model pieces every resource shares: metadata, prices, list queries and the list envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    Self,
    TypeVar,
    get_args,
)

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from learnflow import errors, money

if TYPE_CHECKING:
    from learnflow.pagination import Listing

# docs/api.md §11: up to 50 string keys (≤ 40 chars) to string values (≤ 500 chars).
METADATA_MAX_KEYS: Final = 50
METADATA_KEY_MAX_LENGTH: Final = 40
METADATA_VALUE_MAX_LENGTH: Final = 500

# docs/api.md §9: limit 1..100, default 10.
LIMIT_DEFAULT: Final = 10
LIMIT_MAX: Final = 100

SLUG_PATTERN: Final = r"^[a-z0-9]+(-[a-z0-9]+)*$"
SLUG_MAX_LENGTH: Final = 100

_DIGITS = re.compile(r"[0-9]{1,6}")


# C0 controls, DEL and C1 controls: invisible, and NUL truncates strings in many systems a
# client's data flows on to. Line breaks and tabs are text in the long fields that allow them.
# Lone surrogates (a JSON escape such as "\udfff" for half a pair) are no character at all, and
# nothing can encode them as UTF-8 to store.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _control_free(name: str, value: Any, pattern: re.Pattern[str]) -> None:
    """Raise 400 naming `name` if a string in `value` (or a key or value of an object, or an
    item of a list) holds a control character."""
    if isinstance(value, str):
        if pattern.search(value):
            raise errors.parameter_invalid(
                name, f"Invalid {name}: control characters and lone surrogates are not allowed."
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _control_free(name, key, pattern)
            _control_free(name, item, pattern)
    elif isinstance(value, list):
        for item in value:
            _control_free(name, item, pattern)


def _documented_not_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON schema of `not_nullable` fields: optional, but never null (pydantic writes an
    `anyOf` with null for a field whose default is None)."""
    for name in getattr(model, "not_nullable", ()):
        field_schema = schema.get("properties", {}).get(name, {})
        branches = [b for b in field_schema.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            field_schema.update(branches[0])
        elif branches:
            field_schema["anyOf"] = branches


class InputModel(BaseModel):
    """A request body or query string: unknown fields are refused, nothing is coerced, no string
    holds a control character (newlines and tabs only in `multiline_fields`), and the optional
    fields of `not_nullable` may be left out but not set to null."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra=_documented_not_null
    )
    multiline_fields: ClassVar[frozenset[str]] = frozenset()
    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters_nor_nulls(cls, data: Any) -> Any:
        # An AppError (not a ValueError) passes through pydantic untouched and names the field.
        if isinstance(data, dict):
            for name, value in data.items():
                if value is None and name in cls.not_nullable:
                    raise errors.parameter_invalid(name, f"Invalid {name}: must not be null.")
                multiline = name in cls.multiline_fields
                _control_free(str(name), value, _CONTROL_BUT_LINES if multiline else _CONTROL)
        return data


class OutputModel(BaseModel):
    """An object as the API shows it, read field by field from the domain object of the same
    names (`from_domain`); `object` and other constants come from the model's defaults."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    @classmethod
    def from_domain(cls, domain: object) -> Self:
        return cls.model_validate(domain)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# A required text must say something: whitespace alone is refused (its length still counts all).
NotBlank = AfterValidator(_not_blank)


# --- metadata ---


def _check_metadata(value: Any) -> Any:
    """Metadata as a request gives it: string keys to string values, or null/"" to remove one."""
    if not isinstance(value, dict):
        raise ValueError("metadata must be an object of string keys to string values")
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has at most {METADATA_MAX_KEYS} keys")
    for key, entry in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_MAX_LENGTH:
            raise ValueError(f"metadata keys are 1 to {METADATA_KEY_MAX_LENGTH} characters")
        if entry is None:
            continue
        if not isinstance(entry, str):
            raise ValueError("metadata values must be strings")
        if len(entry) > METADATA_VALUE_MAX_LENGTH:
            raise ValueError(f"metadata values are at most {METADATA_VALUE_MAX_LENGTH} characters")
    return value


# What a body may send: a key set to "" or null removes it (Stripe's merge); on create there is
# nothing to remove, so such keys are simply dropped.
MetadataInput = Annotated[
    dict[str, str | None],
    BeforeValidator(_check_metadata),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": METADATA_MAX_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": METADATA_KEY_MAX_LENGTH},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": METADATA_VALUE_MAX_LENGTH},
                    {"type": "null"},
                ]
            },
            "description": 'Your own string keys to string values; on update, null or "" '
            "removes a key",
        }
    ),
]


def merge_metadata(
    current: Mapping[str, str], update: Mapping[str, str | None] | None
) -> dict[str, str]:
    """Stripe's merge: `None` (the whole field null) clears everything; a key set to `""` or
    null is removed; any other key is set. The result must still fit the limits."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    if len(merged) > METADATA_MAX_KEYS:
        raise errors.parameter_invalid(
            "metadata", f"Invalid metadata: at most {METADATA_MAX_KEYS} keys in all."
        )
    return merged


class CreateModel(InputModel):
    """A create's body: its resource's fields and `metadata`, stored after Stripe's rules."""

    metadata: MetadataInput | None = None

    def stored_metadata(self) -> dict[str, str]:
        """What a new object keeps: keys given `""` or null are simply left out."""
        return merge_metadata({}, self.metadata or {})


# --- money ---


def _json_number(value: Any) -> Decimal:
    """A price must be a JSON number: the body parser gives `int` or `Decimal`, never a float.

    A string, a boolean (an `int` to Python) or a float (NaN/Infinity) is refused, not converted.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("price must be a JSON number")
    amount = Decimal(value) if isinstance(value, int) else value
    if not amount.is_finite():
        raise ValueError("price must be a finite number")
    return amount


# A JSON number in major units, exact: `Decimal` from the parser to the table and back.
Price = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "description": "Major units, at most the currency's decimals; 0 is free",
            "examples": [49.99],
        }
    ),
]


def _currency_code(value: Any) -> str:
    if not isinstance(value, str) or not money.is_supported(value):
        raise ValueError("currency must be an ISO 4217 code that Stripe accepts")
    return value.upper()


# An ISO 4217 code Stripe accepts, in any letter case on input; always upper-case after.
CurrencyCode = Annotated[
    str,
    BeforeValidator(_currency_code),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{3}$", "examples": ["USD"]}),
]


def price_problem(amount: Decimal, currency: str) -> str | None:
    """Why `amount` cannot be a price in `currency` (already a supported code), or None."""
    try:
        money.check_price(amount, currency)
    except money.PriceError as error:
        return str(error)
    return None


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=SLUG_MAX_LENGTH)]


# --- e-mail addresses ---

EMAIL_MAX_LENGTH: Final = 254  # RFC 5321's limit on a forward path

# A pragmatic address check (what a sign-up form accepts): one @, a local part without spaces,
# a dotted domain of letters, digits and hyphens. Deliverability is not this API's business.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if len(value) > EMAIL_MAX_LENGTH or not _EMAIL.fullmatch(value) or ".." in value:
        raise ValueError("must be a valid email address")
    return value


Email = Annotated[
    str,
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": EMAIL_MAX_LENGTH}),
]


# --- lists ---


def _limit(value: Any) -> Any:
    # Query strings are strings: only plain decimal digits are an integer here ("1.5", "-1",
    # "+5", " 5" and "1e1" are not); the range is checked by the field's bounds.
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError(f"limit must be an integer between 1 and {LIMIT_MAX}")
        return int(value)
    return value


Limit = Annotated[int, BeforeValidator(_limit), Field(ge=1, le=LIMIT_MAX)]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ListQuery(InputModel):
    """`limit`, `starting_after`, `ending_before` (docs/api.md §9); resources add their filters."""

    limit: Limit = LIMIT_DEFAULT
    starting_after: Cursor | None = None
    ending_before: Cursor | None = None

    def filters(self) -> dict[str, str]:
        """The exact filters given, by name: the list's own partition (none here)."""
        return {}

    @field_validator("ending_before")
    @classmethod
    def _one_cursor(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("starting_after") is not None:
            raise ValueError("give starting_after or ending_before, not both")
        return value


ItemT = TypeVar("ItemT", bound=BaseModel)


class ListEnvelope(OutputModel, Generic[ItemT]):
    """`{"object": "list", "url", "data", "has_more", "total_count"}`."""

    object: Literal["list"] = "list"
    url: str
    data: list[ItemT]
    has_more: bool
    total_count: int

    @classmethod
    def of(cls, listing: Listing[Any]) -> Self:
        """The envelope of a repository's page: each item through the item model's
        `from_domain` (the model `data` is declared with, e.g. `CourseOut`)."""
        (item_model,) = get_args(cls.model_fields["data"].annotation)
        # model_validate: `url` is each list's own default, which the base cannot name
        return cls.model_validate(
            {
                "data": [item_model.from_domain(item) for item in listing.items],
                "has_more": listing.has_more,
                "total_count": listing.total_count,
            }
        )
