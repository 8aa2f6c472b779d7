"""parse_page (lenient pages) and paginate (lazy, stops right, no duplicates)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from sark_sync import ProtocolError, ServerInfo
from sark_sync.wire._pagination import paginate, parse_page

WHERE = "/api/v1/servers"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name.startswith("sark_sync")]


# -- parse_page ------------------------------------------------------------------------------------


def test_parse_page_returns_items_raw_count_and_total() -> None:
    data = {"servers": [{"server_name": "a"}, {"server_name": "b"}], "total": 7, "offset": 0}
    items, count, total = parse_page(data, "servers", ServerInfo.from_dict, 0, WHERE)
    assert ([s.server_name for s in items], count, total) == (["a", "b"], 2, 7)


def test_parse_page_skips_malformed_items_with_one_warning_each(
    caplog: pytest.LogCaptureFixture
) -> None:
    data = {"servers": [{"server_name": "a"}, {"server_name": 5}, "junk",
                        {"server_name": "d", "tools_count": "x"}, {"server_name": "e"}],
            "total": 5}
    with caplog.at_level(logging.WARNING, logger="sark_sync"):
        items, count, total = parse_page(data, "servers", ServerInfo.from_dict, 100, WHERE)
    assert ([s.server_name for s in items], count, total) == (["a", "e"], 5, 5)
    warnings = _warnings(caplog)
    assert len(warnings) == 3
    # Each warning names the item's absolute offset and the listing.
    assert [w.split(":")[0] for w in warnings] == [
        f"skipping malformed item {n} of {WHERE}" for n in (101, 102, 103)]


def test_parse_page_of_valid_items_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="sark_sync"):
        parse_page({"servers": [{"server_name": "a"}], "total": 1}, "servers",
                   ServerInfo.from_dict, 0, WHERE)
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    "data",
    [{}, {"servers": None, "total": 0}, {"servers": {"a": 1}, "total": 1},
     {"tools": [], "total": 0}, [], None, "servers"],
    ids=repr,
)
def test_parse_page_without_the_list_raises_protocol_error(data: object) -> None:
    with pytest.raises(ProtocolError, match="expected an object with a 'servers' list"):
        parse_page(data, "servers", ServerInfo.from_dict, 0, WHERE)


@pytest.mark.parametrize("total", [None, "3", -1, 2.0, True], ids=repr)
def test_parse_page_with_a_bad_total_raises_protocol_error(total: object) -> None:
    data: dict[str, Any] = {"servers": []}
    if total is not None:
        data["total"] = total
    with pytest.raises(ProtocolError, match="'total' must be an int >= 0"):
        parse_page(data, "servers", ServerInfo.from_dict, 0, WHERE)


# -- paginate --------------------------------------------------------------------------------------


class Listing:
    """A fake fetch(offset) over a list that may change between pages."""

    def __init__(self, items: list[str], limit: int, *, total: int | None = None,
                 short_pages: dict[int, int] | None = None) -> None:
        self.items = list(items)
        self.limit = limit
        self.total = total
        self.short_pages = short_pages or {}
        self.offsets: list[int] = []
        self.before_fetch: Callable[[Listing], None] | None = None

    def __call__(self, offset: int) -> tuple[list[str], int, int]:
        if self.before_fetch is not None and self.offsets:
            self.before_fetch(self)
        self.offsets.append(offset)
        page = self.items[offset:offset + self.short_pages.get(offset, self.limit)]
        total = len(self.items) if self.total is None else self.total
        return list(page), len(page), total


def test_paginate_yields_every_item_once_in_order() -> None:
    listing = Listing([f"s{i}" for i in range(7)], limit=3)
    assert list(paginate(listing, key=str)) == [f"s{i}" for i in range(7)]
    assert listing.offsets == [0, 3, 6]


def test_paginate_stops_when_offset_reaches_total_without_an_extra_fetch() -> None:
    listing = Listing([f"s{i}" for i in range(6)], limit=3)
    assert len(list(paginate(listing, key=str))) == 6
    assert listing.offsets == [0, 3]


def test_paginate_stops_on_an_empty_page_even_if_total_says_more() -> None:
    listing = Listing(["a", "b"], limit=2, total=100)
    assert list(paginate(listing, key=str)) == ["a", "b"]
    assert listing.offsets == [0, 2]


def test_paginate_continues_after_a_short_page() -> None:
    # The gateway caps the first page at 2 items although 3 were asked for.
    listing = Listing(["a", "b", "c", "d", "e"], limit=3, short_pages={0: 2})
    assert list(paginate(listing, key=str)) == ["a", "b", "c", "d", "e"]
    assert listing.offsets == [0, 2]


def test_paginate_advances_past_malformed_items_by_the_raw_count() -> None:
    pages = {0: (["a"], 3, 5), 3: (["d", "e"], 2, 5)}
    offsets: list[int] = []

    def fetch(offset: int) -> tuple[list[str], int, int]:
        offsets.append(offset)
        return pages[offset]

    assert list(paginate(fetch, key=str)) == ["a", "d", "e"]
    assert offsets == [0, 3]


@pytest.mark.parametrize(("limit", "inserts"), [(2, 3), (3, 2), (1, 2)])
def test_paginate_never_yields_duplicates_when_the_listing_shifts_by_one_between_pages(
    limit: int, inserts: int
) -> None:
    listing = Listing(["a", "b", "c", "d", "e", "f"], limit=limit)
    # A server is registered at the front before each of the next `inserts` pages.
    counter = iter(range(inserts))

    def shift(lst: Listing) -> None:
        for n in counter:
            lst.items.insert(0, f"new{n}")
            return

    listing.before_fetch = shift
    assert list(paginate(listing, key=str)) == ["a", "b", "c", "d", "e", "f"]


def test_paginate_skips_duplicates_within_a_page() -> None:
    def fetch(offset: int) -> tuple[list[str], int, int]:
        return (["a", "a", "b"], 3, 3)

    assert list(paginate(fetch, key=str)) == ["a", "b"]


def test_paginate_fetches_lazily_one_page_at_a_time() -> None:
    listing = Listing([f"s{i}" for i in range(10)], limit=3)
    iterator = paginate(listing, key=str)
    assert listing.offsets == []
    assert next(iterator) == "s0"
    assert listing.offsets == [0]
    assert [next(iterator), next(iterator), next(iterator)] == ["s1", "s2", "s3"]
    assert listing.offsets == [0, 3]


def test_paginate_propagates_a_fetch_error() -> None:
    def fetch(offset: int) -> tuple[list[str], int, int]:
        if offset:
            raise ProtocolError("bad page")
        return (["a"], 1, 2)

    iterator = paginate(fetch, key=str)
    assert next(iterator) == "a"
    with pytest.raises(ProtocolError, match="bad page"):
        next(iterator)
