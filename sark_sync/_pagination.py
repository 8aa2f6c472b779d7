"""Offset/limit pagination over gateway listings (DESIGN §4).

:func:`parse_page` reads one page leniently: a malformed item is logged and skipped, never
fatal, and it still occupies its offset. :func:`paginate` walks the pages lazily, holding one
page at a time (constant memory), and stops on ``offset >= total`` or an empty page, never on a
short page (a gateway may cap a page below the asked limit). Items repeated from the previous
page, as happens when the listing shifts while it is walked, are not yielded twice.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping
from typing import Callable, TypeVar

from ._exceptions import ProtocolError

__all__ = ["paginate", "parse_page"]

log = logging.getLogger("sark_sync")

T = TypeVar("T")


def parse_page(
    data: object, key: str, parse: Callable[[object], T], offset: int, where: str
) -> tuple[list[T], int, int]:
    """``(items, raw item count, total)`` of one listing response."""
    if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
        raise ProtocolError(f"malformed listing from {where}: expected an object with a "
                            f"{key!r} list")
    raw_items = data[key]
    total = data.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ProtocolError(f"malformed listing from {where}: 'total' must be an int >= 0")
    items: list[T] = []
    for index, raw in enumerate(raw_items):
        try:
            items.append(parse(raw))
        except ValueError as exc:
            log.warning("skipping malformed item %d of %s: %s", offset + index, where, exc)
    return items, len(raw_items), total


def paginate(
    fetch: Callable[[int], tuple[list[T], int, int]], *, key: Callable[[T], Hashable]
) -> Iterator[T]:
    """Yield every item of the pages ``fetch(offset)`` returns, lazily."""
    offset = 0
    previous: set[Hashable] = set()
    while True:
        items, count, total = fetch(offset)
        if count == 0:
            return
        page_keys = [key(item) for item in items]
        yielded: set[Hashable] = set()
        for item, item_key in zip(items, page_keys):
            if item_key in previous or item_key in yielded:
                continue
            yielded.add(item_key)
            yield item
        # Every key of this page, yielded or skipped, guards the next page.
        previous = set(page_keys)
        offset += count
        if offset >= total:
            return
