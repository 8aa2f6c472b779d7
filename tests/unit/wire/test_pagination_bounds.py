"""Pagination against gateways that do not page properly: every walk ends, with a
ProtocolError that says what the gateway did, and never yields an item twice.

The contract kept: the walk stops on ``offset >= total`` or an empty page, never on a short
page (tests/unit/wire/test_pagination.py pins it); these tests pin the bounds around it.
"""

from __future__ import annotations

from typing import Any

import pytest

from sark_sync import ProtocolError, ServerInfo
from sark_sync.wire._pagination import MAX_BARREN_PAGES, MAX_PAGES, paginate, parse_page

WHERE = "/api/v1/servers"
Page = tuple[list[str], int, int]


class Script:
    """fetch(offset) answering from a function of the call number; records the offsets."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.offsets: list[int] = []

    def __call__(self, offset: int) -> Page:
        self.offsets.append(offset)
        page: Page = self.answer(len(self.offsets) - 1, offset)
        return page


def walk(fetch: Script) -> list[str]:
    return list(paginate(fetch, key=str, where=WHERE))


def test_a_gateway_ignoring_offset_with_a_huge_total_ends_on_the_second_page() -> None:
    fetch = Script(lambda n, offset: (["a", "b"], 2, 10**12))
    got: list[str] = []
    with pytest.raises(ProtocolError) as caught:
        for item in paginate(fetch, key=str, where=WHERE):
            got.append(item)
    assert got == ["a", "b"]
    assert fetch.offsets == [0, 2]
    assert str(caught.value) == (
        "the gateway repeated items it had already listed at offset 2 of /api/v1/servers, "
        "and its total did not grow (it ignores 'offset'?)")


def test_a_page_cycling_back_to_an_earlier_one_ends_without_duplicates() -> None:
    pages = [["a", "b"], ["c", "d"], ["a", "b"], ["e"]]
    fetch = Script(lambda n, offset: (pages[n], len(pages[n]), 7))
    got: list[str] = []
    with pytest.raises(ProtocolError, match="repeated items it had already listed at offset 4"):
        got.extend(paginate(fetch, key=str, where=WHERE))
    assert got == ["a", "b", "c", "d"]
    assert fetch.offsets == [0, 2, 4]


def test_repeated_pages_while_total_grows_are_tolerated_up_to_the_barren_bound() -> None:
    """A listing growing ahead of the walk may repeat a page; one that always repeats while
    claiming growth (a different total on each page) still ends."""
    fetch = Script(lambda n, offset: (["a"], 1, 100 + n))
    with pytest.raises(ProtocolError) as caught:
        assert walk(fetch) == ["a"]
    assert len(fetch.offsets) == MAX_BARREN_PAGES + 1
    assert str(caught.value) == (
        f"the gateway sent {MAX_BARREN_PAGES} pages in a row without a new item (up to offset "
        f"{MAX_BARREN_PAGES} of /api/v1/servers, total {100 + MAX_BARREN_PAGES}); stopped")


def test_pages_of_only_malformed_items_end_at_the_barren_bound() -> None:
    """Items that are not objects are skipped (lenient), so such a page brings nothing new."""
    def answer(n: int, offset: int) -> Page:
        items, count, total = parse_page({"servers": [1, "x", None], "total": 10**12},
                                         "servers", ServerInfo.from_dict, offset, WHERE)
        return [s.server_name for s in items], count, total

    fetch = Script(answer)
    with pytest.raises(ProtocolError, match=f"sent {MAX_BARREN_PAGES} pages in a row"):
        walk(fetch)
    assert fetch.offsets == [3 * n for n in range(MAX_BARREN_PAGES)]


def test_a_run_of_malformed_items_shorter_than_the_bound_does_not_end_the_walk() -> None:
    pages = [["a"]] + [[]] * (MAX_BARREN_PAGES - 1) + [["b"]]
    fetch = Script(lambda n, offset: (pages[n], 1, len(pages)))
    assert walk(fetch) == ["a", "b"]
    assert fetch.offsets == list(range(len(pages)))


def test_endless_new_items_end_at_max_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sark_sync.wire._pagination.MAX_PAGES", 50)
    fetch = Script(lambda n, offset: ([f"s{offset}", f"s{offset + 1}"], 2, 10**400))
    with pytest.raises(ProtocolError) as caught:
        assert len(walk(fetch)) == 100
    assert len(fetch.offsets) == 50
    assert str(caught.value) == ("the listing of /api/v1/servers did not end within 50 pages "
                                 "(offset 100, total ~2**1329); ask for larger pages")


def test_max_pages_is_a_documented_generous_bound() -> None:
    assert (MAX_PAGES, MAX_BARREN_PAGES) == (10_000, 10)


def test_a_page_longer_than_the_limit_is_taken_whole_and_the_offset_moves_past_it() -> None:
    items = [f"s{i}" for i in range(25)]
    # The gateway ignores limit=10 and answers everything from the offset.
    fetch = Script(lambda n, offset: (items[offset:], len(items) - offset, 25))
    assert walk(fetch) == items
    assert fetch.offsets == [0]


def test_a_total_that_shrinks_below_the_offset_ends_the_walk() -> None:
    totals = [100, 3]
    fetch = Script(lambda n, offset: ([f"s{offset}", f"s{offset + 1}"], 2, totals[n]))
    assert walk(fetch) == ["s0", "s1", "s2", "s3"]
    assert fetch.offsets == [0, 2]


def test_a_short_page_then_the_rest_is_not_a_repeat() -> None:
    pages = {0: (["a"], 1, 3), 1: (["b", "c"], 2, 3)}
    fetch = Script(lambda n, offset: pages[offset])
    assert walk(fetch) == ["a", "b", "c"]


@pytest.mark.parametrize("answered", [0, 5, -10, 10**40], ids=repr)
def test_parse_page_answered_for_another_offset_is_a_protocol_error(answered: int) -> None:
    data = {"servers": [{"server_name": "a"}], "total": 100, "offset": answered}
    with pytest.raises(ProtocolError) as caught:
        parse_page(data, "servers", ServerInfo.from_dict, 2, WHERE)
    shown = str(answered) if answered < 10**30 else "~2**133"
    assert str(caught.value) == (
        f"malformed listing from /api/v1/servers: asked for the page at offset 2, the gateway "
        f"answered the page at offset {shown} (it ignores 'offset')")


@pytest.mark.parametrize("answered", [2, None, "0", 0.0, True, [0]], ids=repr)
def test_parse_page_accepts_the_asked_offset_or_one_it_cannot_read(answered: object) -> None:
    data: dict[str, Any] = {"servers": [{"server_name": "a"}], "total": 100}
    if answered is not None:
        data["offset"] = answered
    items, count, total = parse_page(data, "servers", ServerInfo.from_dict, 2, WHERE)
    assert ([s.server_name for s in items], count, total) == (["a"], 1, 100)


def test_parse_page_of_an_empty_page_does_not_check_its_offset() -> None:
    # Past the end, a gateway may clamp offset to total: the walk ends on the empty page.
    data = {"servers": [], "total": 3, "offset": 3}
    assert parse_page(data, "servers", ServerInfo.from_dict, 10, WHERE) == ([], 0, 3)


@pytest.mark.parametrize(
    "total", [-1, 1.5, 1e400, "10", True, False, None, [], {"n": 1}], ids=repr
)
def test_parse_page_refuses_every_total_but_a_non_negative_int(total: object) -> None:
    data = {"servers": [], "total": total}
    with pytest.raises(ProtocolError, match=r"^malformed listing from /api/v1/servers: "
                                            r"'total' must be an int >= 0$"):
        parse_page(data, "servers", ServerInfo.from_dict, 0, WHERE)


def test_parse_page_with_a_string_instead_of_the_list_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^malformed listing from /api/v1/tools: expected "
                                            r"an object with a 'tools' list$"):
        parse_page({"tools": "tool_a,tool_b", "total": 2}, "tools", ServerInfo.from_dict, 0,
                   "/api/v1/tools")
