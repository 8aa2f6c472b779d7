"""Listings from gateways that do not page properly: ``iter_servers``/``iter_tools`` always
end, quickly, with the items once each or a ProtocolError that says what the gateway did.

Each test answers the client's pages from a raw-socket peer (tests/hostile/http_peer.py) and
asserts the items, the exact error and message, and the exact page requests the peer saw.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hostile.http_peer import HostilePeer, Request, json_answer

import sark_sync
from sark_sync.wire._pagination import MAX_BARREN_PAGES

pytestmark = pytest.mark.timeout(20)

#: A walk the gateway cuts short ends within this many seconds (a page is ~1-5 ms here).
QUICKLY = 2.0

Start = Callable[[Callable[[Request], Any]], tuple[HostilePeer, sark_sync.GatewayClient]]


@pytest.fixture
def listing(peer_client: Callable[..., Any]) -> Start:
    """Start a peer answering each request with the JSON of ``handler(request)``, and a
    client pointed at it."""
    return lambda handler: peer_client(json_answer(handler))


def servers(*names: str) -> list[dict[str, Any]]:
    return [{"server_id": name, "server_name": name} for name in names]


def tools(*names: str) -> list[dict[str, Any]]:
    return [{"tool_name": name, "server_name": "demo"} for name in names]


def offsets(peer: HostilePeer) -> list[int]:
    return [int(r.query["offset"]) for r in peer.requests]


def walk(call: Callable[[], Iterator[Any]]) -> tuple[list[Any], BaseException | None, float]:
    """The items of an iterator, the error that ended it (if any) and the time taken."""
    got: list[Any] = []
    started = time.monotonic()
    try:
        for item in call():
            got.append(item)
    except sark_sync.GatewayError as exc:
        return got, exc, time.monotonic() - started
    return got, None, time.monotonic() - started


# -- item 6: pagination without end ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["servers", "tools"])
def test_a_gateway_ignoring_offset_with_total_10_12_ends_on_the_second_page(
        listing: Start, kind: str) -> None:
    items = servers("a", "b") if kind == "servers" else tools("a", "b")
    peer, client = listing(lambda request: {kind: items, "total": 10**12})
    call = client.iter_servers if kind == "servers" else client.iter_tools
    got, error, elapsed = walk(call)
    assert len(got) == 2 and elapsed < QUICKLY
    assert type(error) is sark_sync.ProtocolError
    assert error.message == (
        f"the gateway repeated items it had already listed at offset 2 of /api/v1/{kind}, and "
        "its total did not grow (it ignores 'offset'?)")
    assert offsets(peer) == [0, 2]
    assert [r.path for r in peer.requests] == [f"/api/v1/{kind}"] * 2


def test_a_gateway_echoing_offset_0_to_every_page_is_caught_by_its_answer(
        listing: Start) -> None:
    peer, client = listing(lambda request: {"servers": servers("a", "b"), "total": 10**12,
                                            "offset": 0, "limit": 100})
    got, error, elapsed = walk(lambda: client.iter_servers(page_size=2))
    assert [s.server_name for s in got] == ["a", "b"] and elapsed < QUICKLY
    assert type(error) is sark_sync.ProtocolError
    assert error.message == (
        "malformed listing from /api/v1/servers: asked for the page at offset 2, the gateway "
        "answered the page at offset 0 (it ignores 'offset')")
    assert [r.query for r in peer.requests] == [{"offset": "0", "limit": "2"},
                                                {"offset": "2", "limit": "2"}]


# -- further hostile listings -----------------------------------------------------------------


def test_pages_of_items_that_are_not_objects_end_after_max_barren_pages(listing: Start) -> None:
    peer, client = listing(lambda request: {"servers": [1, "two", None, [3]], "total": 10**12})
    got, error, elapsed = walk(lambda: client.iter_servers(page_size=4))
    assert got == [] and elapsed < QUICKLY
    assert type(error) is sark_sync.ProtocolError
    assert error.message == (
        f"the gateway sent {MAX_BARREN_PAGES} pages in a row without a new item (up to offset "
        f"{4 * (MAX_BARREN_PAGES - 1)} of /api/v1/servers, total 1000000000000); stopped")
    assert offsets(peer) == [4 * n for n in range(MAX_BARREN_PAGES)]


def test_a_tools_key_holding_a_string_is_a_protocol_error_on_the_first_page(
        listing: Start) -> None:
    peer, client = listing(lambda request: {"tools": "echo,fail", "total": 2})
    got, error, _ = walk(client.iter_tools)
    assert got == [] and type(error) is sark_sync.ProtocolError
    assert error.message == ("malformed listing from /api/v1/tools: expected an object with a "
                             "'tools' list")
    assert offsets(peer) == [0]


@pytest.mark.parametrize("total", [-1, 1.5, "10", True, None, 1e400],
                         ids=["negative", "float", "string", "bool", "null", "Infinity"])
def test_a_total_that_is_not_an_int_from_0_is_a_protocol_error(
        listing: Start, total: object) -> None:
    peer, client = listing(lambda request: {"servers": servers("a"), "total": total})
    got, error, _ = walk(client.iter_servers)
    assert got == [] and type(error) is sark_sync.ProtocolError
    assert error.message == "malformed listing from /api/v1/servers: 'total' must be an int >= 0"
    assert offsets(peer) == [0]


def test_a_total_of_10_400_is_fine_and_the_empty_page_ends_the_walk(listing: Start) -> None:
    names = ["a", "b", "c"]
    peer, client = listing(lambda request: {
        "servers": servers(*names[int(request.query["offset"]):][:2]), "total": 10**400})
    got, error, _ = walk(lambda: client.iter_servers(page_size=2))
    assert ([s.server_name for s in got], error) == (names, None)
    assert offsets(peer) == [0, 2, 3]


def test_an_answered_offset_going_backwards_is_a_protocol_error(listing: Start) -> None:
    def page(request: Request) -> Any:
        offset = int(request.query["offset"])
        return {"servers": servers(f"s{offset}", f"s{offset + 1}"), "total": 10,
                "offset": offset if offset < 4 else offset - 2}

    peer, client = listing(page)
    got, error, _ = walk(lambda: client.iter_servers(page_size=2))
    assert [s.server_name for s in got] == ["s0", "s1", "s2", "s3"]
    assert type(error) is sark_sync.ProtocolError
    assert error.message == (
        "malformed listing from /api/v1/servers: asked for the page at offset 4, the gateway "
        "answered the page at offset 2 (it ignores 'offset')")
    assert offsets(peer) == [0, 2, 4]


def test_a_page_longer_than_the_limit_is_taken_whole(listing: Start) -> None:
    names = [f"s{i}" for i in range(7)]
    peer, client = listing(lambda request: {
        "servers": servers(*names[int(request.query["offset"]):]), "total": 7})
    got, error, _ = walk(lambda: client.iter_servers(page_size=2))
    assert ([s.server_name for s in got], error) == (names, None)
    assert offsets(peer) == [0]


def test_a_page_cycling_back_to_the_first_never_yields_it_twice(listing: Start) -> None:
    def page(request: Request) -> Any:
        offset = int(request.query["offset"])
        return {"servers": servers("a", "b") if offset != 2 else servers("c", "d"), "total": 9}

    peer, client = listing(page)
    got, error, _ = walk(lambda: client.iter_servers(page_size=2))
    assert [s.server_name for s in got] == ["a", "b", "c", "d"]
    assert type(error) is sark_sync.ProtocolError
    assert error.message.startswith("the gateway repeated items it had already listed at "
                                    "offset 4 of /api/v1/servers")
    assert offsets(peer) == [0, 2, 4]


def test_a_different_total_on_each_page_is_followed_and_the_walk_ends(listing: Start) -> None:
    totals = iter([1000, 3, 10**9])  # the walk stops once the offset passes the latest total
    peer, client = listing(lambda request: {
        "servers": servers(*(f"s{int(request.query['offset']) + i}" for i in range(2))),
        "total": next(totals)})
    got, error, _ = walk(lambda: client.iter_servers(page_size=2))
    assert ([s.server_name for s in got], error) == (["s0", "s1", "s2", "s3"], None)
    assert offsets(peer) == [0, 2]


def test_a_listing_that_grows_ahead_of_the_walk_repeats_a_page_without_failing(
        listing: Start) -> None:
    """A server registered at the front between pages pushes one seen item onto the next
    page; with pages of one, that page brings nothing new, and total grew: no error."""
    names = ["a", "b", "c"]

    def page(request: Request) -> Any:
        offset = int(request.query["offset"])
        if offset == 1 and names[0] != "new":
            names.insert(0, "new")
        return {"servers": servers(*names[offset:offset + 1]), "total": len(names)}

    peer, client = listing(page)
    got, error, _ = walk(lambda: client.iter_servers(page_size=1))
    assert ([s.server_name for s in got], error) == (["a", "b", "c"], None)
    assert offsets(peer) == [0, 1, 2, 3]
