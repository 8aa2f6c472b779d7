"""Event streams from hostile gateways: every field value is read as the HTML standard says,
every wait is bounded, reconnection stays possible, and only GatewayErrors come out.

Each test points ``GatewayClient.stream_events`` at a raw-socket peer of
tests/hostile/http_peer.py and asserts the events delivered, the exact error type and message,
the bound, and what the peer saw (the ``Last-Event-ID`` of each reconnect).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hostile.http_peer import (
    CLOSE,
    RESET,
    HostilePeer,
    Pause,
    Request,
    sse_head,
    sse_script,
    sse_stall,
    trickle_headers,
)
from support import API_KEY, FAST_RETRY, wait_for

import sark_sync
from sark_sync import Event
from sark_sync.resilience._watchdog import DEADLINE_MARGIN
from sark_sync.transports.sse import EventStream
from sark_sync.wire._sse import MAX_RETRY_MS

Start = Callable[..., tuple[HostilePeer, sark_sync.GatewayClient]]

#: The documented bound: no wait outlives its timeout by more than this.
MARGIN = DEADLINE_MARGIN


def take(stream: EventStream, count: int) -> list[Event]:
    """The next ``count`` events (the test's timeout bounds the wait)."""
    return [next(stream) for _ in range(count)]


def resumed_from(peer: HostilePeer) -> list[bytes | None]:
    """The raw ``Last-Event-ID`` of each request the peer saw (the peer decodes heads as
    latin-1, so encoding back gives the bytes sent)."""
    return [None if "last-event-id" not in r.headers else
            r.headers["last-event-id"].encode("latin-1") for r in peer.requests]


@pytest.fixture
def ceilings(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every reconnect wait's ceiling and do not wait (the cap is 60 s)."""
    seen: list[float] = []

    def jittered(self: sark_sync.RetryPolicy, ceiling: float) -> float:
        seen.append(ceiling)
        return 0.0

    monkeypatch.setattr(sark_sync.RetryPolicy, "jittered", jittered)
    return seen


# -- item 4 (SSE): deep nesting ----------------------------------------------------------------


@pytest.mark.timeout(20)
def test_data_of_100000_nested_arrays_is_delivered_as_text_and_the_stream_goes_on(
        peer_client: Start) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    peer, client = peer_client(sse_script(
        [b"id: 1\nevent: deep\ndata: " + deep + b"\n\n", b'id: 2\ndata: {"n": 2}\n\n',
         *sse_stall()]))
    with client.stream_events(idle_timeout=5.0, max_reconnects=0) as stream:
        first, second = take(stream, 2)
    assert (first.id, first.type, first.data) == ("1", "deep", deep.decode())
    assert (second.id, second.type, second.data) == ("2", "message", {"n": 2})
    assert len(peer.requests) == 1


# -- item 5: hostile fields ---------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("field", "retry_ms", "ceiling"), [
    (b"retry: \xc2\xb2", None, FAST_RETRY.backoff_base),  # superscript two: not an ASCII digit
    (b"retry: " + b"9" * 300, MAX_RETRY_MS, 60.0),
    (b"retry: " + b"1" * 5000, MAX_RETRY_MS, 60.0),  # past int()'s digit limit on 3.11
    (b"retry: 9999999999", MAX_RETRY_MS, 60.0),
    (b"retry: 250", 250, 0.25),
], ids=["superscript", "300-digits", "5000-digits", "ten-nines", "plain"])
def test_a_hostile_retry_is_ignored_or_capped_and_the_stream_reconnects(
        peer_client: Start, ceilings: list[float], field: bytes, retry_ms: int | None,
        ceiling: float) -> None:
    peer, client = peer_client(sse_script(
        [field + b"\nid: 1\ndata: a\n\n"], [b"id: 2\ndata: b\n\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0, max_reconnects=0) as stream:
        first, second = take(stream, 2)
        assert stream.retry_ms == retry_ms
    assert ([first.data, second.data], first.retry) == (["a", "b"], retry_ms)
    assert ceilings == [pytest.approx(ceiling)]  # the one wait before the reconnect
    assert resumed_from(peer) == [None, b"1"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("id_line", "event_id", "sent"), [
    ("id: €1", "€1", "€1".encode()),  # not latin-1: its UTF-8 bytes, as browsers send it
    ("id:  7", " 7", b"7"),  # one space stripped; HTTP strips the other on receipt anyway
    ("id: a\x01b", "a\x01b", b"0"),  # no header can carry it: resume from the last that can
    ("id: a\0b", "0", b"0"),  # NUL: the field is ignored
    ("id: " + "9" * 5000, "9" * 5000, b"0"),  # longer than MAX_RESUME_ID_BYTES
], ids=["euro", "two-spaces", "control", "nul", "5000-chars"])
def test_a_hostile_id_is_read_as_the_spec_says_and_never_breaks_the_reconnect(
        peer_client: Start, ceilings: list[float], id_line: str, event_id: str,
        sent: bytes) -> None:
    peer, client = peer_client(sse_script(
        [b"id: 0\ndata: zero\n\n", id_line.encode() + b"\ndata: a\n\n"],
        [b"id: 2\ndata: b\n\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0, max_reconnects=0) as stream:
        _zero, first, second = take(stream, 3)
    assert (first.id, first.data, second.id, second.data) == (event_id, "a", "2", "b")
    assert resumed_from(peer) == [None, sent]
    assert all(b"\r" not in s and b"\n" not in s for s in resumed_from(peer) if s)


@pytest.mark.timeout(20)
def test_a_users_non_ascii_last_event_id_is_sent_as_utf8(peer_client: Start) -> None:
    peer, client = peer_client(sse_script([b"id: 8\ndata: x\n\n", *sse_stall()]))
    with client.stream_events(last_event_id="é7", idle_timeout=5.0) as stream:
        assert next(stream).id == "8"
    assert resumed_from(peer) == ["é7".encode()]


# -- SSE connect: trickled response headers -------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("max_reconnects", [0, 1])
def test_trickled_headers_fail_each_attempt_within_connect_plus_idle_timeout(
        peer_client: Start, max_reconnects: int) -> None:
    peer, client = peer_client(trickle_headers(0.05),
                               timeout=sark_sync.Timeouts(connect=0.2))
    budget = 0.2 + 0.3
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        client.stream_events(idle_timeout=0.3, max_reconnects=max_reconnects)
    elapsed = time.monotonic() - started
    attempts = max_reconnects + 1
    # Each attempt is cut at the budget; between two, one backoff of at most backoff_max.
    assert budget * attempts <= elapsed <= (budget + MARGIN) * attempts + FAST_RETRY.backoff_max
    assert len(peer.requests) == attempts
    error = caught.value
    assert error.message == (
        "the gateway did not answer the event stream's request within 0.5s (connect_timeout "
        f"+ idle_timeout) (the event stream gave up after {attempts} consecutive failed "
        "attempts)")
    assert (error.method, error.url) == ("GET", peer.url + "/api/v1/events")
    assert API_KEY not in str(error) and API_KEY not in repr(error)


# -- further hostile streams ---------------------------------------------------------------------


def _endless(prefix: bytes, step: int = 65536) -> Iterator[bytes]:
    yield prefix
    while True:
        yield b"x" * step


@pytest.mark.timeout(20)
@pytest.mark.parametrize("prefix", [b"", b"data: "], ids=["endless-line", "endless-data"])
def test_an_endless_line_ends_the_stream_at_max_event_bytes(peer_client: Start,
                                                           prefix: bytes) -> None:
    peer, client = peer_client(sse_script(_endless(prefix)))
    started = time.monotonic()
    with client.stream_events(idle_timeout=5.0, max_event_bytes=1 << 20) as stream:
        with pytest.raises(sark_sync.ProtocolError) as caught:
            next(stream)
        assert stream.closed
    assert time.monotonic() - started < 3.0
    assert caught.value.message.startswith(
        "the event stream sent an event of more than 1048576 bytes (at least ")
    assert caught.value.message.endswith(") (max_event_bytes)")
    assert len(peer.requests) == 1  # not retried: the same event would come back


@pytest.mark.timeout(20)
def test_a_flood_of_100000_comments_is_skipped_and_the_next_event_arrives(
        peer_client: Start) -> None:
    peer, client = peer_client(sse_script(
        [b": ping\n\n" * 100_000, b":\n" * 100_000 + b"id: 1\ndata: after\n\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0, max_event_bytes=1 << 20) as stream:
        (event,) = take(stream, 1)
    assert (event.id, event.data) == ("1", "after")
    assert len(peer.requests) == 1


@pytest.mark.timeout(20)
def test_a_bom_in_the_middle_hides_its_line_and_cr_only_line_ends_frame_events(
        peer_client: Start) -> None:
    _peer, client = peer_client(sse_script(
        [b"\xef\xbb\xbfid: 1\rdata: first\r\r",  # a leading BOM is dropped
         b"\xef\xbb\xbfdata: hidden\r\r",  # a later one makes "\ufeffdata" an unknown field
         b"id: 2\r\ndata: second\n\r\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0) as stream:
        events = take(stream, 2)
    assert [(e.id, e.data) for e in events] == [("1", "first"), ("2", "second")]


@pytest.mark.timeout(20)
def test_control_characters_in_event_are_the_type_and_filter_like_any_other(
        peer_client: Start) -> None:
    peer, client = peer_client(sse_script(
        [b"event: tick\x1b[2J\x07\ndata: 1\n\nevent: tick\ndata: 2\n\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0) as stream:
        assert [e.type for e in take(stream, 2)] == ["tick\x1b[2J\x07", "tick"]
    with client.stream_events(types=["tick"], idle_timeout=5.0) as stream:
        assert [(e.type, e.data) for e in take(stream, 1)] == [("tick", 2)]
    assert [r.query for r in peer.requests] == [{}, {"types": "tick"}]


@pytest.mark.timeout(20)
def test_a_content_type_with_parameters_is_an_event_stream(peer_client: Start) -> None:
    head = sse_head("Text/Event-Stream ; charset=utf-8")
    _peer, client = peer_client(sse_script([b"data: ok\n\n", *sse_stall()], head=head))
    with client.stream_events(idle_timeout=5.0) as stream:
        assert next(stream).data == "ok"


@pytest.mark.timeout(20)
def test_another_content_type_is_a_protocol_error_at_once(peer_client: Start) -> None:
    head = sse_head("text/html; charset=utf-8")
    peer, client = peer_client(sse_script([b"data: ok\n\n"], head=head))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.stream_events(idle_timeout=5.0, max_reconnects=3)
    assert caught.value.message == "expected an event stream, got Content-Type 'text/html'"
    assert len(peer.requests) == 1


@pytest.mark.timeout(20)
def test_a_content_type_of_60_kib_is_cut_short_in_the_error(peer_client: Start) -> None:
    head = sse_head("text/" + "x" * 60_000 + "\x01")
    peer, client = peer_client(sse_script([b"data: ok\n\n"], head=head))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.stream_events(idle_timeout=5.0)
    assert caught.value.message == (
        "expected an event stream, got Content-Type '" + "text/" + "x" * 75 + "...'")
    assert len(peer.requests) == 1


@pytest.mark.timeout(20)
def test_a_200_with_content_length_0_is_a_failed_attempt_each_time(peer_client: Start) -> None:
    peer, client = peer_client(sse_script([], head=sse_head(length=0)))
    with client.stream_events(idle_timeout=5.0, max_reconnects=2) as stream:
        with pytest.raises(sark_sync.ConnectionFailed) as caught:
            next(stream)
    assert caught.value.message == ("the event stream ended before any event arrived (the "
                                    "event stream gave up after 3 consecutive failed attempts)")
    assert len(peer.requests) == 3


@pytest.mark.timeout(20)
def test_a_gateway_closing_after_each_event_with_retry_0_is_followed_without_loss(
        peer_client: Start) -> None:
    def script(request: Request) -> Iterator[Any]:
        last = int(request.headers.get("last-event-id", "0"))
        yield sse_head()
        yield b"retry: 0\nid: %d\ndata: %d\n\n" % (last + 1, last + 1)
        yield CLOSE

    peer, client = peer_client(script)
    started = time.monotonic()
    with client.stream_events(idle_timeout=5.0, max_reconnects=0) as stream:
        events = take(stream, 20)
    assert [e.data for e in events] == list(range(1, 21))
    assert resumed_from(peer)[:20] == [None] + [b"%d" % n for n in range(1, 20)]
    assert time.monotonic() - started < 5.0


@pytest.mark.timeout(20)
def test_a_reset_in_the_middle_of_an_event_is_resumed_from_the_last_whole_one(
        peer_client: Start) -> None:
    peer, client = peer_client(sse_script(
        [b"id: 1\ndata: one\n\nid: 2\ndata: tw", Pause(0.05), RESET],
        [b"id: 2\ndata: two\n\n", *sse_stall()]))
    with client.stream_events(idle_timeout=5.0, max_reconnects=0) as stream:
        events = take(stream, 2)
    assert [(e.id, e.data) for e in events] == [("1", "one"), ("2", "two")]
    assert resumed_from(peer) == [None, b"1"]


@pytest.mark.timeout(20)
def test_close_from_another_thread_ends_a_stream_blocked_on_an_endless_comment(
        peer_client: Start) -> None:
    """A stream that trickles one comment byte at a time never idles out; close() ends it."""
    def trickle_comment() -> Iterator[Any]:
        yield b":"
        while True:
            yield Pause(0.01)
            yield b"x"

    _peer, client = peer_client(sse_script(trickle_comment()))
    stream = client.stream_events(idle_timeout=1.0)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            next(stream)
            outcome.append(None)
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: stream._reader is not None, 5.0, what="the reader inside next()")
    started = time.monotonic()
    stream.close()
    reader.join(5.0)
    assert not reader.is_alive() and time.monotonic() - started < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], StopIteration)


class SoftTimeLimit(Exception):
    """What a task runner's signal handler raises in the middle of whatever the task does."""


@pytest.mark.timeout(20)
def test_an_exception_a_signal_handler_raises_while_iterating_passes_through_unchanged(
        peer_client: Start) -> None:
    # Celery's soft time limit raises an Exception subclass from a signal handler: it must
    # reach the task as itself, not as a ProtocolError of the stream it interrupted.
    _peer, client = peer_client(sse_script([b"id: 1\ndata: a\n\n", *sse_stall()]))

    def on_signal(signum: int, frame: Any) -> None:
        raise SoftTimeLimit

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        with client.stream_events(idle_timeout=30) as stream:
            assert next(stream).data == "a"
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
            timer.start()
            try:
                with pytest.raises(SoftTimeLimit):
                    next(stream)  # blocked reading the stalled stream when the signal comes
            finally:
                timer.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
