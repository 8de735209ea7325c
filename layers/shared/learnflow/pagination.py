"""Cursor pagination over one DynamoDB Query: exact newest-first pages at a bounded read cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from boto3.dynamodb.conditions import ConditionBase, Key

from learnflow import errors, ids
from learnflow.db import keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

T = TypeVar("T")
Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListSource:
    """Where a list lives: a partition of the table (`index=None`) or of one of its GSIs."""

    partition: str
    index: str | None = None

    @property
    def key_attributes(self) -> tuple[str, str]:
        if self.index is None:
            return keys.PK, keys.SK
        return keys.GSI[self.index]


@dataclass(frozen=True, slots=True)
class Page:
    """Items newest first, and whether more lie beyond them in the direction of travel."""

    items: list[Item]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A page of domain objects with the list's total (what the list envelope shows)."""

    items: list[T]
    has_more: bool
    total_count: int


class PageRequest(Protocol):
    """What a list's query string asks of pagination (`models.common.ListQuery`)."""

    @property
    def limit(self) -> int: ...
    @property
    def starting_after(self) -> str | None: ...
    @property
    def ending_before(self) -> str | None: ...


def listing(
    table: Table,
    source: ListSource,
    request: PageRequest,
    *,
    id_prefix: str,
    convert: Callable[[Item], T],
    total_count: Callable[[], int],
) -> Listing[T]:
    """A repository's list: one page of `source` as domain objects, with the list's total."""
    page = query_page(
        table,
        source,
        id_prefix=id_prefix,
        limit=request.limit,
        starting_after=request.starting_after,
        ending_before=request.ending_before,
    )
    return Listing(
        items=[convert(item) for item in page.items],
        has_more=page.has_more,
        total_count=total_count(),
    )


def query_page(
    table: Table,
    source: ListSource,
    *,
    id_prefix: str,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> Page:
    """One page of `source`, newest first, from ONE Query of at most `limit + 2` items.

    A list is one partition (of the table or of a GSI) sorted by object id; ids sort in creation
    order, so newest-first is a reverse Query:
    - no cursor: newest first, `limit + 1` items (the extra one says whether there is more);
    - `starting_after=X`: `sort key <= X`, descending, `limit + 2` items: X itself first (proof
      that X is in THIS list: same tenant, same filters), then the page, then the look-ahead;
    - `ending_before=X`: `sort key >= X`, ascending, the same; the page is then reversed to be
      newest first, and `has_more` says whether newer items remain (Stripe's meaning).
    A cursor that is not the first item read is not in this list: 400 `resource_missing`.
    Filtered lists are partitions of their own, so no `FilterExpression` ever thins a page.
    """
    if starting_after is not None and ending_before is not None:
        raise errors.parameter_invalid(
            "ending_before", "Give starting_after or ending_before, not both."
        )
    partition_attr, sort_attr = source.key_attributes
    condition: ConditionBase = Key(partition_attr).eq(source.partition)
    cursor = starting_after if starting_after is not None else ending_before
    param = "starting_after" if starting_after is not None else "ending_before"
    forward = False
    if cursor is not None:
        # An id of the wrong shape cannot be in any list: no read needed to say so.
        if not ids.is_valid(cursor, id_prefix):
            raise errors.resource_missing(param, cursor)
        if starting_after is not None:
            condition = condition & Key(sort_attr).lte(cursor)
        else:
            condition = condition & Key(sort_attr).gte(cursor)
            forward = True
    wanted = limit + 1 + (cursor is not None)
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": condition,
        "ScanIndexForward": forward,
    }
    if source.index is None:
        kwargs["ConsistentRead"] = True  # the base table can; a GSI cannot
    else:
        kwargs["IndexName"] = source.index
    items: list[Item] = []
    # A Query stops at `Limit` items or 1 MB, whichever comes first: continue until `wanted`
    # items or the partition's end. Every round returns at least one item (an item is < 400 KB),
    # so this runs at most `wanted` times and never reads more than `wanted` items in all.
    while len(items) < wanted:
        response = table.query(Limit=wanted - len(items), **kwargs)
        items.extend(response.get("Items", []))
        last_key = response.get("LastEvaluatedKey")
        if not last_key:
            break
        kwargs["ExclusiveStartKey"] = last_key
    if cursor is not None:
        if not items or items[0].get(sort_attr) != cursor:
            raise errors.resource_missing(param, cursor)
        items = items[1:]
    has_more = len(items) > limit
    items = items[:limit]
    if forward:
        items.reverse()
    return Page(items=items, has_more=has_more)


def listing_of(
    items: list[T], request: PageRequest, *, id_prefix: str, id_of: Callable[[T], str]
) -> Listing[T]:
    """A list already in hand (a filter that selects at most a few objects, read directly),
    newest first, paged with the same cursor rules as `query_page`."""
    ordered = sorted(items, key=id_of, reverse=True)
    if request.starting_after is not None and request.ending_before is not None:
        raise errors.parameter_invalid(
            "ending_before", "Give starting_after or ending_before, not both."
        )
    cursor = request.starting_after or request.ending_before
    if cursor is None:
        page, has_more = ordered[: request.limit], len(ordered) > request.limit
    else:
        param = "starting_after" if request.starting_after is not None else "ending_before"
        listed = [id_of(item) for item in ordered]
        if not ids.is_valid(cursor, id_prefix) or cursor not in listed:
            raise errors.resource_missing(param, cursor)
        position = listed.index(cursor)
        if request.starting_after is not None:
            rest = ordered[position + 1 :]
            page, has_more = rest[: request.limit], len(rest) > request.limit
        else:
            rest = ordered[:position]
            page, has_more = rest[-request.limit :], len(rest) > request.limit
    return Listing(items=page, has_more=has_more, total_count=len(ordered))
