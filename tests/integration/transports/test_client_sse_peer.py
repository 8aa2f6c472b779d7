"""The event stream client against a real third-party SSE server: sse-starlette on uvicorn
(tests/realcomp/sse_server.py, run in the tools venv), which drops connections, stalls,
refuses and replays after ``Last-Event-ID``.

What the server really sends is pinned first, from raw socket reads (the facts listed in
sse_server.py's docstring); then ``GatewayClient.stream_events`` must turn it into every event
exactly once, in order, whatever the server does to the connection. Every wait is bounded:
each read by the stream's ``idle_timeout``, every collection by a deadline.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Callable
from urllib.parse import urlsplit

import pytest
from realcomp.fixtures import SsePeer
from support import API_KEY, blocked_in_socket_read, wait_for

import sark_sync
from sark_sync import Event
from sark_sync.transports.sse import EventStream

pytestmark = pytest.mark.realcomp

#: Bound for a whole collection of events (2,000 take about 0.3s).
COLLECT_TIMEOUT = 15.0
#: Bound for one raw read of the server's bytes.
RAW_TIMEOUT = 3.0
#: A ping as sse-starlette's default ping factory writes it (CRLF, UTC datetime).
PING = re.compile(rb": ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00\r\n\r\n")

StartPeer = Callable[..., SsePeer]
#: ``make_client(peer.url)``: the conftest's clients (``support.API_KEY``, fast retries).
Make = Callable[..., sark_sync.GatewayClient]


def take(stream: EventStream, count: int, timeout: float = COLLECT_TIMEOUT) -> list[Event]:
    """The next ``count`` events of ``stream``; fails if they take longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    for event in stream:
        events.append(event)
        if len(events) == count:
            return events
        assert time.monotonic() < deadline, f"only {len(events)} of {count} events in time"
    raise AssertionError(f"the stream ended after {len(events)} of {count} events")


def ids(events: list[Event]) -> list[int]:
    return [int(event.id) for event in events if event.id is not None]


def resumed_from(peer: SsePeer) -> list[str | None]:
    """The ``Last-Event-ID`` of every events request the peer received, in order."""
    return [request["last_event_id"] for request in peer.stats()["requests"]]


# -- what sse-starlette sends ----------------------------------------------------------------


class RawStream:
    """``GET /api/v1/events`` over a plain socket, to see the bytes as they come."""

    def __init__(self, peer: SsePeer, *headers: str) -> None:
        address = urlsplit(peer.url)
        self.sock = socket.create_connection((address.hostname, address.port), RAW_TIMEOUT)
        lines = ["GET /api/v1/events HTTP/1.1", "Host: peer", f"X-API-Key: {API_KEY}", *headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.data = b""
        self.ending = ""  # "eof", "reset" once the connection has ended

    def read_until(self, done: Callable[[bytes], bool], timeout: float = RAW_TIMEOUT) -> bytes:
        """Read until ``done(data)`` holds or the connection ends; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self.data) and not self.ending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; read so far: {self.data!r}"
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                self.ending = "reset"
                break
            if not chunk:
                self.ending = "eof"
            self.data += chunk
        return self.data

    def head_and_chunks(self) -> tuple[dict[str, str], list[bytes], bool]:
        """The response headers, the body's chunks, and whether the final chunk came."""
        head, _, body = self.data.partition(b"\r\n\r\n")
        status, *fields = head.decode().split("\r\n")
        assert status == "HTTP/1.1 200 OK", status
        headers = {name.lower(): value for name, _, value in
                   (field.partition(": ") for field in fields)}
        chunks: list[bytes] = []
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                return headers, chunks, True
            if len(rest) < size + 2:
                break  # a chunk still on its way
            chunks.append(rest[:size])
            assert rest[size:size + 2] == b"\r\n", rest[size:size + 2]
            body = rest[size + 2:]
        return headers, chunks, False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_streams() -> Iterator[Callable[..., RawStream]]:
    opened: list[RawStream] = []

    def open_raw(peer: SsePeer, *headers: str) -> RawStream:
        raw = RawStream(peer, *headers)
        opened.append(raw)
        return raw

    yield open_raw
    for raw in opened:
        raw.close()


def test_sse_starlette_wire_format(sse_peer: StartPeer,
                                   raw_streams: Callable[..., RawStream]) -> None:
    peer = sse_peer("--events", "2", "--retry-ms", "10", "--ping", "0.1", "--api-key", API_KEY)
    raw = raw_streams(peer)

    raw.read_until(lambda data: len(PING.findall(data)) >= 2)
    headers, chunks, complete = raw.head_and_chunks()

    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert (headers["cache-control"], headers["connection"], headers["x-accel-buffering"]) == (
        "no-store", "keep-alive", "no")
    # CRLF line ends; id, event, data, then retry (after the data, in the same block); one
    # chunk per event and per ping; pings are comments with the UTC time.
    assert chunks[0] == b'id: 1\r\nevent: tick\r\ndata: {"n": 1}\r\nretry: 10\r\n\r\n'
    assert chunks[1] == b'id: 2\r\nevent: tick\r\ndata: {"n": 2}\r\n\r\n'
    assert len(chunks) >= 4
    assert all(PING.fullmatch(chunk) for chunk in chunks[2:]), chunks[2:]
    assert not complete and not raw.ending  # all sent: the stream stays open


def test_sse_starlette_replays_after_last_event_id_on_the_wire(
        sse_peer: StartPeer, raw_streams: Callable[..., RawStream]) -> None:
    peer = sse_peer("--events", "5", "--ping", "0", "--api-key", API_KEY)
    raw = raw_streams(peer, "Last-Event-ID: 3")

    raw.read_until(lambda data: b'data: {"n": 5}\r\n\r\n\r\n' in data)

    _, chunks, _ = raw.head_and_chunks()
    assert [chunk.split(b"\r\n")[0] for chunk in chunks] == [b"id: 4", b"id: 5"]


@pytest.mark.parametrize(("mode", "ending", "complete"), [
    ("crash", "eof", False),  # uvicorn closes mid-body: no final chunk
    ("reset", "reset", False),  # RST
    ("end", "", True),  # the final chunk; the connection stays open (keep-alive)
])
def test_drop_modes_on_the_wire(sse_peer: StartPeer, raw_streams: Callable[..., RawStream],
                                mode: str, ending: str, complete: bool) -> None:
    peer = sse_peer("--events", "5", "--drop-every", "2", "--drop-mode", mode, "--ping", "0",
                    "--api-key", API_KEY)
    raw = raw_streams(peer)

    raw.read_until(lambda data: data.endswith(b"\r\n0\r\n\r\n"))

    _, chunks, finished = raw.head_and_chunks()
    assert (raw.ending, finished) == (ending, complete)
    if mode != "reset":  # a RST may discard what the client had not read yet
        assert [chunk.split(b"\r\n")[0] for chunk in chunks] == [b"id: 1", b"id: 2"]
    assert peer.stats()["drops"] == 1


def test_peer_exits_0_on_sigterm_ending_its_streams(
        sse_peer: StartPeer, raw_streams: Callable[..., RawStream]) -> None:
    peer = sse_peer("--events", "1", "--ping", "0", "--api-key", API_KEY)
    raw = raw_streams(peer)
    raw.read_until(lambda data: b'data: {"n": 1}' in data)

    started = time.monotonic()
    assert peer.stop() == 0
    assert time.monotonic() - started < 3.0
    raw.read_until(lambda data: False)
    assert raw.ending == "eof"


# -- the client against it -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["crash", "reset", "end"])
def test_2000_events_dropped_every_100_arrive_once_in_order(
        sse_peer: StartPeer, make_client: Make,
        mode: str) -> None:
    peer = sse_peer("--events", "2000", "--drop-every", "100", "--drop-mode", mode,
                    "--retry-ms", "10", "--ping", "0.2", "--api-key", API_KEY)
    client = make_client(peer.url)

    with client.stream_events(idle_timeout=2.0) as stream:
        events = take(stream, 2000)

    assert ids(events) == list(range(1, 2001))
    assert all(e.type == "tick" and e.data == {"n": int(e.id or 0)} for e in events)
    assert stream.reconnects >= 19
    assert stream.retry_ms == 10
    if mode == "reset":
        # A RST discards what the client had received but not read: it resumes from the last
        # event it did read, often before the 100th, and gets the rest again.
        resumes = resumed_from(peer)
        assert resumes[0] is None
        assert [int(r or 0) for r in resumes[1:]] == sorted({int(r or 0) for r in resumes[1:]})
        assert len(resumes) == stream.reconnects + 1
    else:
        assert stream.reconnects == 19
        assert resumed_from(peer) == [None] + [str(n) for n in range(100, 2000, 100)]
        # The retry field comes with the first event of each connection.
        assert [e.id for e in events if e.retry == 10] == [str(n) for n in range(1, 2000, 100)]


def test_resume_from_last_event_id_1500(sse_peer: StartPeer,
                                        make_client: Make) -> None:
    peer = sse_peer("--events", "2000", "--drop-every", "100", "--retry-ms", "10",
                    "--ping", "0.2", "--api-key", API_KEY)
    client = make_client(peer.url)

    with client.stream_events(last_event_id=1500, idle_timeout=2.0) as stream:
        events = take(stream, 500)

    assert ids(events) == list(range(1501, 2001))
    assert resumed_from(peer) == ["1500", "1600", "1700", "1800", "1900"]
    assert stream.last_event_id == "2000"


def test_pings_keep_a_quiet_stream_alive_and_never_become_events(
        sse_peer: StartPeer, make_client: Make) -> None:
    # An event every 0.6s, a ping every 0.1s, idle after 0.4s without a byte: only the pings
    # keep the connection from counting as stalled.
    peer = sse_peer("--events", "3", "--interval", "0.6", "--ping", "0.1",
                    "--api-key", API_KEY)
    client = make_client(peer.url)

    with client.stream_events(idle_timeout=0.4) as stream:
        events = take(stream, 3)

    assert [(e.id, e.type, e.data) for e in events] == [
        ("1", "tick", {"n": 1}), ("2", "tick", {"n": 2}), ("3", "tick", {"n": 3})]
    assert stream.reconnects == 0
    stats = peer.stats()
    assert stats["pings"] >= 8, stats  # about 12 were sent between the events
    assert len(stats["requests"]) == 1


def test_wrong_api_key_raises_authentication_error_at_once_without_retry(
        sse_peer: StartPeer, make_client: Make) -> None:
    peer = sse_peer("--events", "5", "--api-key", API_KEY)
    client = make_client(peer.url, api_key="not-the-key")

    started = time.monotonic()
    with pytest.raises(sark_sync.AuthenticationError) as raised:
        client.stream_events(max_reconnects=5)

    assert time.monotonic() - started < 1.0
    assert (raised.value.status_code, raised.value.code) == (401, "unauthenticated")
    assert [r["status"] for r in peer.stats()["requests"]] == [401]


def test_503_with_retry_after_on_first_connect_is_honoured(
        sse_peer: StartPeer, make_client: Make) -> None:
    peer = sse_peer("--status-first", "503", "--retry-after", "1", "--events", "3",
                    "--ping", "0.2", "--api-key", API_KEY)
    client = make_client(peer.url)

    started = time.monotonic()
    with client.stream_events(idle_timeout=2.0) as stream:
        waited = time.monotonic() - started  # stream_events connects before returning
        events = take(stream, 3)

    assert ids(events) == [1, 2, 3]
    assert 0.95 <= waited < 2.5
    first, second = peer.stats()["requests"]
    assert (first["status"], second["status"]) == (503, 200)
    assert 0.95 <= second["t"] - first["t"] < 2.0  # Retry-After, not the 10ms backoff


def test_stalled_stream_is_detected_and_resumed_without_gap(
        sse_peer: StartPeer, make_client: Make) -> None:
    # After id 10 the first connection sends nothing more, not even pings.
    peer = sse_peer("--events", "20", "--stall-after", "10", "--ping", "0.1",
                    "--retry-ms", "10", "--api-key", API_KEY)
    client = make_client(peer.url)

    arrived: list[float] = []
    with client.stream_events(idle_timeout=0.5) as stream:
        events = []
        for event in stream:
            events.append(event)
            arrived.append(time.monotonic())
            if len(events) == 20:
                break
            assert arrived[-1] - arrived[0] < COLLECT_TIMEOUT

    assert ids(events) == list(range(1, 21))
    assert stream.reconnects == 1
    assert 0.45 <= arrived[10] - arrived[9] < 3.0  # the idle timeout, then a reconnect
    stats = peer.stats()
    assert stats["stalls"] == 1
    assert [r["last_event_id"] for r in stats["requests"]] == [None, "10"]


def test_close_from_another_thread_ends_a_blocked_iteration(
        sse_peer: StartPeer, make_client: Make) -> None:
    # One event, then silence (no pings): the reader blocks in a socket read.
    peer = sse_peer("--events", "1", "--ping", "0", "--api-key", API_KEY)
    client = make_client(peer.url)
    stream = client.stream_events(idle_timeout=30.0)
    events: list[Event] = []
    errors: list[BaseException] = []

    def iterate() -> None:
        try:
            events.extend(stream)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=iterate, name="sse-peer-reader")
    reader.start()
    try:
        wait_for(lambda: events, 5.0, what="the first event")
        wait_for(lambda: blocked_in_socket_read(reader), 5.0,
                 what="the reader to block in a socket read")
        started = time.monotonic()
        stream.close()
        reader.join(2.0)
        elapsed = time.monotonic() - started
    finally:
        stream.close()
        reader.join(5.0)

    assert not reader.is_alive()
    assert elapsed < 1.0
    assert errors == []
    assert ids(events) == [1]
    assert stream.closed
    wait_for(lambda: peer.stats()["disconnects"] == 1, 3.0,
             what="the server to see the client leave")


@pytest.mark.parametrize("server_filters", [False, True], ids=["client-filters", "both"])
def test_types_filter_when_the_server_sends_every_type(
        sse_peer: StartPeer, make_client: Make,
        server_filters: bool) -> None:
    args = ["--events", "10", "--types", "tick,tock", "--ping", "0.2", "--api-key", API_KEY]
    peer = sse_peer(*args, *(["--filter-types"] if server_filters else []))
    client = make_client(peer.url)

    with client.stream_events(types=["tock"], idle_timeout=2.0) as stream:
        events = take(stream, 5)

    assert [(e.id, e.type) for e in events] == [(str(n), "tock") for n in (2, 4, 6, 8, 10)]
    assert stream.last_event_id == "10"
    stats = peer.stats()
    assert [r["types"] for r in stats["requests"]] == ["tock"]
    assert stats["events"] == (5 if server_filters else 10)
