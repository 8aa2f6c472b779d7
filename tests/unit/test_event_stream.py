"""The writer of one event stream (``sark_sync.testing._event_stream``) against a recording
``send``: the order of what it writes, framing, filtering, pings, stream faults and how it
ends. No sockets: ``send`` appends to a list, and the stop event ends the stream."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from sark_sync.testing import Fault
from sark_sync.testing._event_stream import LAST_CHUNK, EventStream, StreamSettings
from sark_sync.testing._events import Event, EventLog, StreamReset, Subscription

ALL = Subscription(None, None)


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
) -> EventStream:
    settings = StreamSettings(ping_interval=ping_interval, retry=0.5, framing=framing)
    extra = {"clock": clock} if clock is not None else {}
    return EventStream(log, subscription, settings, send=send, is_peer_closed=lambda: False,
                       stopping=stopping, fault=fault, **extra)


def published(count: int, type: str = "custom") -> EventLog:
    log = EventLog()
    for n in range(count):
        log.publish(type, {"n": n})
    return log


def test_head_and_retry_go_in_the_first_write_then_one_write_per_event() -> None:
    stopping, log = threading.Event(), published(2)
    send = Recorder(stopping, stop_after=3)
    assert stream(log, send, stopping).run(b"HEAD\r\n\r\n") == "stopped"
    assert send.writes == [
        b"HEAD\r\n\r\nretry: 500\n\n",
        b'id: 1\nevent: custom\ndata: {"n":0}\n\n',
        b'id: 2\nevent: custom\ndata: {"n":1}\n\n',
    ]


def test_chunked_framing_makes_each_write_one_chunk_and_ends_with_the_last_chunk() -> None:
    stopping, log = threading.Event(), published(1)
    send = Recorder(stopping, stop_after=2)
    stream(log, send, stopping, framing="chunked").run()
    frame = b'id: 1\nevent: custom\ndata: {"n":0}\n\n'
    assert send.writes == [
        b"c\r\nretry: 500\n\n\r\n",
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
    assert writer.sent == 2


def test_a_ping_is_written_after_ping_interval_without_writes() -> None:
    stopping, log = threading.Event(), EventLog()
    ticks = iter(range(0, 1000, 10))  # every reading of the clock is 10 s later
    send = Recorder(stopping, stop_after=2)
    stream(log, send, stopping, clock=lambda: next(ticks), ping_interval=15.0).run()
    assert send.writes == [b"retry: 500\n\n", b": ping\n\n"]


def test_drop_after_events_ends_the_stream_without_the_last_chunk() -> None:
    stopping, log = threading.Event(), published(5)
    send = Recorder(stopping)
    writer = stream(log, send, stopping, framing="chunked",
                    fault=Fault(path=None, drop_after_events=3))
    assert writer.run() == "dropped"
    assert writer.sent == 3 and len(send.writes) == 4 and LAST_CHUNK not in send.writes


def test_a_zero_stall_after_events_ends_the_stream_at_once() -> None:
    stopping, log = threading.Event(), published(5)
    send = Recorder(stopping)
    writer = stream(log, send, stopping, fault=Fault(path=None, stall_after_events=1, stall=0))
    assert writer.run() == "stalled"
    assert writer.sent == 1


def test_a_stall_without_end_ends_when_the_gateway_stops() -> None:
    stopping, log = threading.Event(), published(2)
    send = Recorder(stopping)
    writer = stream(log, send, stopping, fault=Fault(path=None, stall_after_events=2))
    ended: list[str] = []
    runner = threading.Thread(target=lambda: ended.append(writer.run()))
    runner.start()
    assert send.wrote.wait(5.0)
    stopping.set()
    runner.join(5.0)
    assert ended == ["stalled"] and writer.sent == 2


@pytest.mark.parametrize("fail_after", [0, 1, 2])
def test_a_failed_write_ends_the_stream_as_disconnected(fail_after: int) -> None:
    stopping, log = threading.Event(), published(3)
    send = Recorder(stopping, fail_after=fail_after)
    assert stream(log, send, stopping).run() == "disconnected"


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
    assert send.writes == [b"retry: 500\n\n", b": ping\n\n"]
