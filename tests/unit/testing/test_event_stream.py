"""The writer of one event stream (``sark_sync.testing.gateway._event_stream``) against a recording
``send``: the order of what it writes, framing, filtering, pings, stream faults and how it
ends. No sockets: ``send`` appends to a list, and the stop event ends the stream."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from support import wait_for

from sark_sync.testing import Fault
from sark_sync.testing.gateway._event_stream import LAST_CHUNK, EventStream, StreamSettings
from sark_sync.testing.gateway._events import (
    Event,
    EventLog,
    StreamReset,
    Subscription,
    parse_last_event_id,
)

#: A fresh subscriber (no ``Last-Event-ID``): only the events published after it connects.
ALL = Subscription(None, None)
#: ``Last-Event-ID: 0``: the whole buffer of a log whose ids start at 1, then what follows.
REPLAY = Subscription(None, 0)


class Recorder:
    """A ``send`` that records each write and can stop the stream after some of them."""

    def __init__(self, stopping: threading.Event, *, stop_after: int | None = None,
                 fail_after: int | None = None) -> None:
        self.writes: list[bytes] = []
        self.wrote = threading.Event()
        self._stopping = stopping
        self._stop_after = stop_after
        self._fail_after = fail_after

    def __call__(self, data: bytes) -> None:
        if self._fail_after is not None and len(self.writes) >= self._fail_after:
            raise BrokenPipeError("the client went away")
        self.writes.append(data)
        self.wrote.set()
        if self._stop_after is not None and len(self.writes) >= self._stop_after:
            self._stopping.set()


def stream(
    log: EventLog,
    send: Callable[[bytes], None],
    stopping: threading.Event,
    *,
    subscription: Subscription = ALL,
    framing: str = "close",
    fault: Fault | None = None,
    clock: Callable[[], float] | None = None,
    ping_interval: float = 60.0,
    is_peer_closed: Callable[[], bool] = lambda: False,
) -> EventStream:
    settings = StreamSettings(ping_interval=ping_interval, retry=0.5, framing=framing)
    extra = {"clock": clock} if clock is not None else {}
    return EventStream(log, subscription, settings, send=send, is_peer_closed=is_peer_closed,
                       stopping=stopping, fault=fault, **extra)


def published(count: int, type: str = "custom", first_id: int = 1) -> EventLog:
    log = EventLog(first_id=first_id)
    for n in range(count):
        log.publish(type, {"n": n})
    return log


def frame(event_id: int, n: int, type: str = "custom") -> bytes:
    return b'id: %d\nevent: %s\ndata: {"n":%d}\n\n' % (event_id, type.encode(), n)


def test_head_and_opening_go_in_the_first_write_then_one_write_per_event() -> None:
    stopping, log = threading.Event(), published(2)
    send = Recorder(stopping, stop_after=3)
    assert stream(log, send, stopping, subscription=REPLAY).run(b"HEAD\r\n\r\n") == "stopped"
    assert send.writes == [
        b"HEAD\r\n\r\nretry: 500\nid: 0\n\n",
        b'id: 1\nevent: custom\ndata: {"n":0}\n\n',
        b'id: 2\nevent: custom\ndata: {"n":1}\n\n',
    ]


def test_chunked_framing_makes_each_write_one_chunk_and_ends_with_the_last_chunk() -> None:
    stopping, log = threading.Event(), published(1)
    send = Recorder(stopping, stop_after=2)
    stream(log, send, stopping, subscription=REPLAY, framing="chunked").run()
    frame = b'id: 1\nevent: custom\ndata: {"n":0}\n\n'
    assert send.writes == [
        b"12\r\nretry: 500\nid: 0\n\n\r\n",
        b"%x\r\n%s\r\n" % (len(frame), frame),
        LAST_CHUNK,
    ]


def test_a_reset_comes_right_after_retry_and_types_filter_the_rest() -> None:
    stopping, log = threading.Event(), EventLog()
    for type in ("alpha", "beta", "alpha"):
        log.publish(type, {})
    send = Recorder(stopping, stop_after=4)
    subscription = Subscription(frozenset({"alpha"}), 99)
    writer = stream(log, send, stopping, subscription=subscription)
    writer.run()
    assert [w.split(b"\n")[0] for w in send.writes] == [
        b"retry: 500", b"event: stream_reset", b"id: 1", b"id: 3"]
    assert send.writes[0] == b"retry: 500\n\n"  # no id line before a reset
    assert writer.sent == 2


def test_a_ping_is_written_after_ping_interval_without_writes() -> None:
    stopping, log = threading.Event(), EventLog()
    ticks = iter(range(0, 1000, 10))  # every reading of the clock is 10 s later
    send = Recorder(stopping, stop_after=2)
    stream(log, send, stopping, clock=lambda: next(ticks), ping_interval=15.0).run()
    assert send.writes == [b"retry: 500\nid: 0\n\n", b": ping\n\n"]


def test_drop_after_events_ends_the_stream_without_the_last_chunk() -> None:
    stopping, log = threading.Event(), published(5)
    send = Recorder(stopping)
    writer = stream(log, send, stopping, subscription=REPLAY, framing="chunked",
                    fault=Fault(path=None, drop_after_events=3))
    assert writer.run() == "dropped"
    assert writer.sent == 3 and len(send.writes) == 4 and LAST_CHUNK not in send.writes


def test_a_zero_stall_after_events_ends_the_stream_at_once() -> None:
    stopping, log = threading.Event(), published(5)
    send = Recorder(stopping)
    writer = stream(log, send, stopping, subscription=REPLAY,
                    fault=Fault(path=None, stall_after_events=1, stall=0))
    assert writer.run() == "stalled"
    assert writer.sent == 1


def test_a_stall_without_end_ends_when_the_gateway_stops() -> None:
    stopping, log = threading.Event(), published(2)
    send = Recorder(stopping)
    probes: list[int] = []  # how many writes there were at each check of the peer

    def is_peer_closed() -> bool:
        probes.append(len(send.writes))
        return False

    writer = stream(log, send, stopping, subscription=REPLAY, is_peer_closed=is_peer_closed,
                    fault=Fault(path=None, stall_after_events=2))
    ended: list[str] = []
    runner = threading.Thread(target=lambda: ended.append(writer.run()))
    runner.start()
    try:
        # The stall checks its peer after each pause and goes on: once it has checked twice,
        # it has outlived a pause without ending or writing (the opening and the two events).
        wait_for(lambda: len(probes) >= 2, what="the stalled stream to check its peer twice")
        assert ended == [] and len(send.writes) == 3 and probes[:2] == [3, 3]
    finally:
        stopping.set()
        runner.join(5.0)
    assert ended == ["stalled"] and writer.sent == 2


# -- where a stream starts -------------------------------------------------------------------


def test_a_fresh_stream_writes_no_buffered_event_only_those_published_after_it_opened() -> None:
    stopping, log = threading.Event(), published(3)
    send = Recorder(stopping, stop_after=3)
    writer = stream(log, send, stopping)
    runner = threading.Thread(target=writer.run)
    runner.start()
    try:
        wait_for(lambda: len(send.writes) == 1, what="the opening block")
        assert send.writes == [b"retry: 500\nid: 3\n\n"]
        log.publish("custom", {"n": 3})
        log.publish("custom", {"n": 4})
        runner.join(5.0)
    finally:
        stopping.set()
        runner.join(5.0)
    assert send.writes == [b"retry: 500\nid: 3\n\n", frame(4, 3), frame(5, 4)]
    assert writer.sent == 2


@pytest.mark.parametrize(
    ("last_event_id", "first_id", "cursor"),
    [
        (None, 1, 3),  # a fresh subscriber: the newest id
        ("", 1, 3),  # an empty header is no header
        (0, 1, 0),  # the whole buffer
        (1, 1, 1),
        (3, 1, 3),  # the newest: nothing to replay
        (None, 100, 102),  # ids continued from 100
        (99, 100, 99),
    ],
)
def test_the_opening_block_carries_the_id_after_which_events_are_due(
    last_event_id: int | str | None, first_id: int, cursor: int
) -> None:
    stopping, log = threading.Event(), published(3, first_id=first_id)
    send = Recorder(stopping, stop_after=1)
    wanted = parse_last_event_id(None if last_event_id is None else str(last_event_id))
    subscription = Subscription(None, *wanted)
    assert stream(log, send, stopping, subscription=subscription).run() == "stopped"
    assert send.writes == [b"retry: 500\nid: %d\n\n" % cursor]


@pytest.mark.parametrize(
    ("subscription", "first_id", "reset"),
    [
        (Subscription(None, 4), 1, StreamReset(4, 1, "future")),
        (Subscription(None, 10), 100, StreamReset(10, 100, "expired")),
        (Subscription(None, None, malformed=True), 1, StreamReset(None, 1, "malformed")),
    ],
)
@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_the_opening_block_has_no_id_when_a_stream_reset_follows(
    subscription: Subscription, first_id: int, reset: StreamReset, framing: str
) -> None:
    stopping, log = threading.Event(), published(2, first_id=first_id)
    send = Recorder(stopping, stop_after=2)
    writer = stream(log, send, stopping, subscription=subscription, framing=framing)
    assert writer.run() == "stopped"
    if framing == "chunked":
        assert send.writes == [b"c\r\nretry: 500\n\n\r\n",
                               b"%x\r\n%s\r\n" % (len(reset.frame), reset.frame), LAST_CHUNK]
    else:
        assert send.writes == [b"retry: 500\n\n", reset.frame]
    assert reset.frame.startswith(b"event: stream_reset\n") and b"id:" not in reset.frame


def test_the_opening_id_resumes_what_was_published_before_the_first_event() -> None:
    # A fresh stream that ends after its opening block; events are published; a stream
    # resumed from the opening's id gets them all, and nothing older.
    stopping, log = threading.Event(), published(3)
    send = Recorder(stopping)
    first = stream(log, send, stopping, fault=Fault(path=None, drop_after_events=0))
    assert first.run() == "dropped" and send.writes == [b"retry: 500\nid: 3\n\n"]
    position = int(send.writes[0].split(b"id: ")[1].split(b"\n")[0])
    log.publish("custom", {"n": 3})
    log.publish("custom", {"n": 4})
    again = Recorder(stopping, stop_after=3)
    stream(log, again, stopping, subscription=Subscription(None, position)).run()
    assert again.writes == [b"retry: 500\nid: 3\n\n", frame(4, 3), frame(5, 4)]


# -- how a stream ends -----------------------------------------------------------------------


@pytest.mark.parametrize("fail_after", [0, 1, 2])
def test_a_failed_write_ends_the_stream_as_disconnected(fail_after: int) -> None:
    stopping, log = threading.Event(), published(3)
    send = Recorder(stopping, fail_after=fail_after)
    assert stream(log, send, stopping, subscription=REPLAY).run() == "disconnected"


def test_closing_the_log_ends_a_waiting_stream() -> None:
    stopping, log = threading.Event(), EventLog()
    send = Recorder(stopping)
    writer = stream(log, send, stopping)
    ended: list[str] = []
    runner = threading.Thread(target=lambda: ended.append(writer.run()))
    runner.start()
    log.close()
    runner.join(5.0)
    assert ended == ["stopped"]


@pytest.mark.parametrize(
    "options",
    [{"ping_interval": 0}, {"retry": -1}, {"framing": "gzip"}, {"ping_interval": True}],
)
def test_bad_settings_are_value_errors(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        StreamSettings(**options)  # type: ignore[arg-type]


class FloodLog(EventLog):
    """A log in which another event has always just arrived when a stream reads; after 500
    of them it sets ``stopping``, a safety net for a stream that would never ping."""

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__()
        self.stopping = stopping

    def read(self, cursor: int, limit: int) -> tuple[StreamReset | None, list[Event]]:
        if self.publish("other", {}) > 500:
            self.stopping.set()
        return super().read(cursor, limit)


def test_a_flood_of_events_filtered_out_does_not_hold_back_the_ping() -> None:
    stopping = threading.Event()
    log = FloodLog(stopping)
    ticks = iter(range(0, 10_000, 10))  # every reading of the clock is 10 s later
    send = Recorder(stopping, stop_after=2)
    subscription = Subscription(frozenset({"wanted"}), None)
    writer = stream(log, send, stopping, subscription=subscription, clock=lambda: next(ticks),
                    ping_interval=15.0)
    writer.run()
    assert send.writes == [b"retry: 500\nid: 0\n\n", b": ping\n\n"]
