"""Offset/limit pagination over gateway listings (``offset``, ``limit``, ``total``).

:func:`parse_page` reads one page leniently: a malformed item is logged and skipped, never
fatal, and it still occupies its offset. :func:`paginate` walks the pages lazily, holding one
page at a time, and stops on ``offset >= total`` or an empty page, never on a short page (a
gateway may cap a page below the asked limit; a page longer than the limit is taken whole and
the offset moves past it). No item is yielded twice: an item seen on an earlier page, as
happens when the listing shifts while it is walked, is skipped. For that the walk remembers the
64-bit hash of each key yielded (about 80 bytes an item, an eighth of a parsed ServerInfo),
never the items.

A gateway that does not page properly must not keep a client asking forever. Each bound ends
the iteration with a :class:`ProtocolError` that says what the gateway did:

- a page answered for another offset than the one asked (the gateway ignores ``offset``);
- a page of items all seen before while the listing's ``total`` did not grow (only items
  inserted ahead of the walk can push seen items onto a later page, and they grow ``total``);
- :data:`MAX_BARREN_PAGES` pages in a row that bring nothing new (repeats or malformed items);
- more than :data:`MAX_PAGES` pages in one walk.

``total`` must be an int >= 0 (not a bool, a float or a string); any size is fine, since the
walk is bounded by the pages it really gets.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping
from typing import Callable, TypeVar

from .._exceptions import ProtocolError

__all__ = ["MAX_BARREN_PAGES", "MAX_PAGES", "paginate", "parse_page"]

log = logging.getLogger("sark_sync")

T = TypeVar("T")

#: Most pages one walk fetches: 1,000,000 items at the default page size of 100.
MAX_PAGES = 10_000
#: Pages in a row without a new item after which a walk ends (the listing shifting ahead of
#: the walk by a whole page can repeat one or two; a gateway that ignores ``offset`` repeats
#: forever).
MAX_BARREN_PAGES = 10


def parse_page(
    data: object, key: str, parse: Callable[[object], T], offset: int, where: str
) -> tuple[list[T], int, int]:
    """``(items, raw item count, total)`` of one listing response, the page at ``offset``.

    Raises :class:`ProtocolError` for a response without the ``key`` list, without a valid
    ``total``, or whose ``offset`` (when it sends an int one for a page with items) is not the
    one asked for.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
        raise ProtocolError(f"malformed listing from {where}: expected an object with a "
                            f"{key!r} list")
    raw_items = data[key]
    total = data.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ProtocolError(f"malformed listing from {where}: 'total' must be an int >= 0")
    answered = data.get("offset")
    if raw_items and isinstance(answered, int) and not isinstance(answered, bool) \
            and answered != offset:
        raise ProtocolError(f"malformed listing from {where}: asked for the page at offset "
                            f"{offset}, the gateway answered the page at offset "
                            f"{_short(answered)} (it ignores 'offset')")
    items: list[T] = []
    for index, raw in enumerate(raw_items):
        try:
            items.append(parse(raw))
        except ValueError as exc:
            log.warning("skipping malformed item %d of %s: %s", offset + index, where, exc)
    return items, len(raw_items), total


def paginate(
    fetch: Callable[[int], tuple[list[T], int, int]], *, key: Callable[[T], Hashable],
    where: str = "the gateway",
) -> Iterator[T]:
    """Yield every item of the pages ``fetch(offset)`` returns, lazily, each once.

    ``fetch`` returns :func:`parse_page`'s ``(items, raw count, total)``; ``key`` names an
    item (two items with one key are the same item); ``where`` names the listing in errors.
    Raises :class:`ProtocolError` when the gateway repeats itself or the walk passes its
    bounds (see the module's docstring), and whatever ``fetch`` raises.
    """
    offset = 0
    seen: set[int] = set()  # hashes, not keys: half the memory; a collision is a 2**-64 chance
    barren = 0
    last_total: int | None = None
    for _ in range(MAX_PAGES):
        items, count, total = fetch(offset)
        if count == 0:
            return
        new = 0
        for item in items:
            item_key = hash(key(item))
            if item_key in seen:
                continue
            seen.add(item_key)
            new += 1
            yield item
        if new == 0 and items and (last_total is None or total <= last_total):
            raise ProtocolError(f"the gateway repeated items it had already listed at offset "
                                f"{offset} of {where}, and its total did not grow (it ignores "
                                f"'offset'?)")
        barren = barren + 1 if new == 0 else 0
        if barren >= MAX_BARREN_PAGES:
            raise ProtocolError(f"the gateway sent {barren} pages in a row without a new item "
                                f"(up to offset {offset} of {where}, total {_short(total)}); "
                                f"stopped")
        last_total = total
        offset += count
        if offset >= total:
            return
    raise ProtocolError(f"the listing of {where} did not end within {MAX_PAGES} pages "
                        f"(offset {offset}, total {_short(total)}); ask for larger pages")


def _short(number: int) -> str:
    """An int for a message: a hostile gateway's 10**400 is not worth 400 digits."""
    return str(number) if -10**30 < number < 10**30 else f"~2**{abs(number).bit_length()}"
