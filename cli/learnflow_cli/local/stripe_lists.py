"""Stripe's list endpoints as the local Stripe-compatible server serves them: `GET
/v1/payment_intents` (https://docs.stripe.com/api/payment_intents/list), newest first, with
`limit` (1 to 100, default 10), `starting_after`, `ending_before`, `customer` and `created`.

Like every object of the server, a list is scoped to the mode of the API key (test or live): the
server has one account per mode, so any key of a mode sees that mode's objects, as a retrieve does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from learnflow_cli.local.stripe_params import (
    JSON,
    StripeError,
    integer_param,
    param_error,
    reject_unknown,
    string_param,
)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_RANGE: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le
}  # fmt: skip


def list_objects(objects: list[JSON], params: JSON, *, url: str, kind: str) -> JSON:
    """A list object of `objects` (in creation order, all of the caller's mode): newest first,
    one page of them after `starting_after` or before `ending_before`."""
    reject_unknown(
        params, frozenset({"limit", "starting_after", "ending_before", "customer", "created",
                           "expand"})
    )  # fmt: skip
    limit = integer_param(params, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise param_error(
            f"Invalid integer: {limit}; must be between 1 and {MAX_LIMIT}",
            "limit",
            "parameter_invalid_integer",
        )
    after, before = string_param(params, "starting_after"), string_param(params, "ending_before")
    if after and before:
        raise param_error(
            "You may only specify one of these parameters: starting_after, ending_before.",
            "ending_before",
        )
    keep = _filter(params)
    newest_first = [item for item in reversed(objects) if keep(item)]
    ids = [str(item["id"]) for item in newest_first]
    cursor = after or before
    if cursor and cursor not in {str(item["id"]) for item in objects}:
        raise StripeError(
            400,
            "invalid_request_error",
            f"No such {kind}: '{cursor}'",
            code="resource_missing",
            param="starting_after" if after else "ending_before",
        )
    if after:
        start = ids.index(after) + 1 if after in ids else _position(objects, newest_first, after)
        page = newest_first[start : start + limit]
        has_more = start + limit < len(newest_first)
    elif before:
        end = ids.index(before) if before in ids else _position(objects, newest_first, before)
        page = newest_first[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page, has_more = newest_first[:limit], len(newest_first) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _position(objects: list[JSON], newest_first: list[JSON], cursor: str) -> int:
    """Where a cursor that the filters leave out would stand among the listed objects."""
    order = {str(item["id"]): index for index, item in enumerate(objects)}
    mark = order[cursor]
    return sum(1 for item in newest_first if order[str(item["id"])] > mark)


def _filter(params: JSON) -> Callable[[JSON], bool]:
    """Which objects `customer` and `created` (an integer, or a range of gt/gte/lt/lte) keep."""
    customer = string_param(params, "customer")
    created = params.get("created")
    bounds: list[tuple[Callable[[int, int], bool], int]] = []
    if isinstance(created, str):
        bounds.append((operator.eq, _integer(created, "created")))
    elif isinstance(created, dict) and set(created) <= set(_RANGE):
        bounds += [(_RANGE[name], _integer(value, f"created[{name}]")) for name, value in
                   created.items()]  # fmt: skip
    elif created is not None:
        raise param_error("Invalid created: must be an integer or a range", "created")

    def keep(item: JSON) -> bool:
        if customer is not None and item.get("customer") != customer:
            return False
        return all(compare(int(item["created"]), value) for compare, value in bounds)

    return keep


def _integer(value: object, name: str) -> int:
    """A `created` bound, read by the same rules as every integer parameter."""
    parsed = integer_param({name: value}, name)
    if parsed is None:  # present, but empty
        raise param_error(f"Invalid integer: {value}", name, "parameter_invalid_integer")
    return parsed
