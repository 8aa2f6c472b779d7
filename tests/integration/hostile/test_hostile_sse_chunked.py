"""Event streams in HTTP chunked framing, read through http.client's ``read1`` under urllib3's
(``sark_sync.transports._common.short_reads``), and the streams that must still go through
urllib3 (a ``Content-Encoding`` to undo).

Hostile framing (a chunk size that is not hex, a chunk-size line without end, a chunk cut by
a reset) is a dropped connection like any other: the stream resumes from the last whole event
and only events or GatewayErrors come out.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import urllib3.response
from hostile.http_peer import CLOSE, RESET, HostilePeer, Pause, Request, sse_stall

import sark_sync
from sark_sync import Event
from sark_sync.transports.sse import EventStream

Start = Callable[..., tuple[HostilePeer, sark_sync.GatewayClient]]


def take(stream: EventStream, count: int) -> list[Event]:
    return [next(stream) for _ in range(count)]


def chunked_head(*extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache",
             "Transfer-Encoding: chunked", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), extension, data)


def resumed(request: Request) -> int:
    return int(request.headers.get("last-event-id", "0"))


def events_from(first: int, count: int) -> Iterator[bytes]:
    for n in range(first, first + count):
        yield chunk(b"id: %d\ndata: {\"n\": %d}\n\n" % (n, n))


def breaking_once(events: int, *breakage: Any) -> Callable[[Request], Iterator[Any]]:
    """A chunked stream that resumes from ``Last-Event-ID``: each connection sends ``events``
    events from there; the first one then sends ``breakage``, the others stall."""
    def script(request: Request) -> Iterator[Any]:
        first = resumed(request) + 1
        yield chunked_head()
        yield from events_from(first, events)
        if first == 1:
            yield from breakage
        else:
            yield from sse_stall()
    return script


@pytest.mark.timeout(20)
def test_one_event_per_chunk_arrives_whole_and_in_order(peer_client: Start) -> None:
    def script(request: Request) -> Iterator[Any]:
        yield chunked_head()
        yield from events_from(1, 500)
        yield from sse_stall()

    _peer, client = peer_client(script)
    with client.stream_events(idle_timeout=5.0) as stream:
        events = take(stream, 500)
    assert [e.data for e in events] == [{"n": n} for n in range(1, 501)]
    assert events[-1].id == "500"


@pytest.mark.timeout(20)
def test_events_split_across_chunks_with_extensions_are_framed_by_their_blank_line(
        peer_client: Start) -> None:
    body = b"".join(b"id: %d\ndata: %d\n\n" % (n, n) for n in range(1, 41))
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]

    def script(request: Request) -> Iterator[Any]:
        yield chunked_head()
        for index, piece in enumerate(pieces):
            yield chunk(piece, b";ext=%d" % index if index % 3 == 0 else b"")
            if index % 10 == 0:
                yield Pause(0.005)
        yield from sse_stall()

    _peer, client = peer_client(script)
    with client.stream_events(idle_timeout=5.0) as stream:
        assert [e.data for e in take(stream, 40)] == list(range(1, 41))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("bad", [b"zz\r\n", b"f" * 70_000 + b"\r\n"],
                         ids=["not-hex", "70k-size-line"])
def test_a_broken_chunk_size_is_a_drop_and_the_stream_resumes(peer_client: Start,
                                                              bad: bytes) -> None:
    peer, client = peer_client(breaking_once(3, bad + b"data: lost\n\n", CLOSE))
    with client.stream_events(idle_timeout=5.0, max_reconnects=2) as stream:
        events = take(stream, 6)
    assert [e.data for e in events] == [{"n": n} for n in range(1, 7)]
    assert [r.headers.get("last-event-id") for r in peer.requests[:2]] == [None, "3"]


@pytest.mark.timeout(20)
def test_a_reset_inside_a_chunk_resumes_from_the_last_whole_event(peer_client: Start) -> None:
    peer, client = peer_client(breaking_once(2, b"40\r\nid: 3\ndata: cut", Pause(0.05), RESET))
    with client.stream_events(idle_timeout=5.0, max_reconnects=2) as stream:
        events = take(stream, 4)
    assert [e.id for e in events] == ["1", "2", "3", "4"]
    assert [r.headers.get("last-event-id") for r in peer.requests[:2]] == [None, "2"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_stream_still_goes_through_urllib3s_decoder(peer_client: Start,
                                                                 encoding: str) -> None:
    body = b"".join(b"id: %d\ndata: %d\n\n" % (n, n) for n in range(1, 6))
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)

    def script(request: Request) -> Iterator[Any]:
        yield chunked_head(f"Content-Encoding: {encoding}")
        yield chunk(packed)
        yield from sse_stall()

    _peer, client = peer_client(script)
    with client.stream_events(idle_timeout=5.0) as stream:
        assert [e.data for e in take(stream, 5)] == [1, 2, 3, 4, 5]


@pytest.mark.timeout(20)
def test_the_end_chunk_is_the_end_of_a_connection_and_the_stream_reconnects(
        peer_client: Start) -> None:
    peer, client = peer_client(breaking_once(2, b"0\r\n\r\n"))
    with client.stream_events(idle_timeout=5.0, max_reconnects=1) as stream:
        events = take(stream, 4)
    assert [e.data for e in events] == [{"n": n} for n in range(1, 5)]
    assert [r.headers.get("last-event-id") for r in peer.requests[:2]] == [None, "2"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("encoding", "through_urllib3"), [(None, False), ("gzip", True)])
def test_only_a_stream_with_something_to_decode_is_read_through_urllib3(
        peer_client: Start, monkeypatch: pytest.MonkeyPatch, encoding: str | None,
        through_urllib3: bool) -> None:
    """The fast path (issue 16): urllib3's read1 costs as much per chunk as the event."""
    calls = []
    read1 = urllib3.response.HTTPResponse.read1

    def counting(self: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return read1(self, *args, **kwargs)

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", counting)
    body = b"".join(b"data: %d\n\n" % n for n in range(1, 4))

    def script(request: Request) -> Iterator[Any]:
        yield chunked_head(*([f"Content-Encoding: {encoding}"] if encoding else []))
        yield chunk(gzip.compress(body) if encoding else body)
        yield from sse_stall()

    _peer, client = peer_client(script)
    with client.stream_events(idle_timeout=5.0) as stream:
        assert [e.data for e in take(stream, 3)] == [1, 2, 3]
    assert bool(calls) is through_urllib3
