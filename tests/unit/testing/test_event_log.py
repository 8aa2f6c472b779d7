"""The LocalGateway's event log (``sark_sync.testing.gateway._events``):
ids, frames, the ring buffer,
resuming after ``Last-Event-ID`` and the parsers of the request; plus the validation of the
event options and of stream faults. Pure: no sockets, no processes."""

from __future__ import annotations

import math
import threading
import time

import pytest

from sark_sync.testing import Fault, LocalGateway
from sark_sync.testing.gateway._events import (
    MIN_BUFFER,
    EventLog,
    StreamReset,
    Subscription,
    parse_last_event_id,
    parse_types,
)


def filled(count: int, capacity: int = MIN_BUFFER, first_id: int = 1) -> EventLog:
    log = EventLog(capacity, first_id)
    for n in range(count):
        log.publish("custom", {"n": n})
    return log


def resume(log: EventLog, last_event_id: int | None, malformed: bool = False) -> tuple[
    StreamReset | None, int
]:
    return log.resume(Subscription(None, last_event_id, malformed))


# -- publishing ------------------------------------------------------------------------------


def test_ids_start_at_first_id_and_increase_by_one() -> None:
    log = EventLog(first_id=41)
    assert log.newest_id == 40
    assert [log.publish("a", {}) for _ in range(3)] == [41, 42, 43]
    assert log.newest_id == 43


def test_the_frame_is_id_event_and_one_line_of_compact_json() -> None:
    log = EventLog()
    log.publish("tool_invoked", {"text": "a\nb\r\u2028", "n": 1.5, "none": None})
    event = log.snapshot()[0]
    assert event.frame == (
        b'id: 1\nevent: tool_invoked\ndata: {"text":"a\\nb\\r\xe2\x80\xa8","n":1.5,'
        b'"none":null}\n\n'
    )
    assert event.payload() == {"text": "a\nb\r\u2028", "n": 1.5, "none": None}


@pytest.mark.parametrize("type", ["", "Tool", "tool-invoked", "a" * 65, "stream_reset", 3])
def test_a_bad_or_reserved_type_is_a_value_error(type: object) -> None:
    with pytest.raises(ValueError):
        EventLog().publish(type, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [[1], "text", {"x": math.nan}, {"x": object()}])
def test_data_that_is_not_a_json_object_is_a_type_error(data: object) -> None:
    log = EventLog()
    with pytest.raises(TypeError):
        log.publish("custom", data)  # type: ignore[arg-type]
    assert log.newest_id == 0


@pytest.mark.parametrize("capacity", [MIN_BUFFER - 1, 0, -1, True, 10_000.0])
def test_a_buffer_below_the_minimum_is_refused(capacity: object) -> None:
    with pytest.raises(ValueError, match="at least 10000"):
        EventLog(capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize("first_id", [0, -5, True, 1.0])
def test_first_id_must_be_a_positive_integer(first_id: object) -> None:
    with pytest.raises(ValueError):
        EventLog(first_id=first_id)  # type: ignore[arg-type]


def test_the_buffer_keeps_the_last_capacity_events_in_order() -> None:
    log = filled(MIN_BUFFER + 25, first_id=7)
    kept = log.snapshot()
    assert len(kept) == MIN_BUFFER
    assert (kept[0].id, kept[-1].id) == (32, MIN_BUFFER + 31)
    assert kept[0].payload() == {"n": 25}


# -- resuming --------------------------------------------------------------------------------


def test_without_last_event_id_the_cursor_is_the_newest_event() -> None:
    assert resume(filled(3), None) == (None, 3)
    assert resume(filled(MIN_BUFFER + 5), None) == (None, MIN_BUFFER + 5)
    assert resume(EventLog(), None) == (None, 0)
    assert resume(EventLog(first_id=100), None) == (None, 99)
    assert resume(filled(2, first_id=100), None) == (None, 101)


def test_without_last_event_id_no_old_event_is_read_only_later_ones() -> None:
    log = filled(3)
    reset, cursor = resume(log, None)
    assert reset is None and log.read(cursor, 10) == (None, [])
    log.publish("custom", {"n": 3})
    assert [e.id for e in log.read(cursor, 10)[1]] == [4]


def test_last_event_id_zero_replays_the_whole_buffer() -> None:
    log = filled(3)
    assert resume(log, 0) == (None, 0)
    assert [e.id for e in log.read(0, 10)[1]] == [1, 2, 3]
    assert resume(EventLog(), 0) == (None, 0)  # nothing published yet: not from the future
    # Ids continued from 100: "the whole buffer" is asked for with the id before the first.
    assert resume(filled(2, first_id=100), 99) == (None, 99)


def test_a_last_event_id_still_covered_is_the_cursor() -> None:
    log = filled(MIN_BUFFER + 5)  # holds 6..10005
    assert resume(log, 5) == (None, 5)
    assert resume(log, 9000) == (None, 9000)
    assert resume(log, MIN_BUFFER + 5) == (None, MIN_BUFFER + 5)


def test_a_last_event_id_before_the_buffer_is_expired() -> None:
    log = filled(MIN_BUFFER + 5)
    assert resume(log, 4) == (StreamReset(4, 6, "expired"), 5)
    assert resume(log, 0) == (StreamReset(0, 6, "expired"), 5)


def test_a_last_event_id_after_the_newest_is_future() -> None:
    assert resume(filled(3), 4) == (StreamReset(4, 1, "future"), 0)
    assert resume(EventLog(), 1) == (StreamReset(1, None, "future"), 0)


def test_a_gateway_continuing_ids_resumes_its_predecessors_newest_id_only() -> None:
    log = EventLog(first_id=501)  # the previous instance issued 1..500
    assert resume(log, 500) == (None, 500)
    assert resume(log, 499) == (StreamReset(499, None, "expired"), 500)


def test_a_malformed_last_event_id_resets_with_a_null_id() -> None:
    assert resume(filled(2), None, malformed=True) == (StreamReset(None, 1, "malformed"), 0)


def test_the_reset_frame_has_no_id_line() -> None:
    assert StreamReset(None, 6, "malformed").frame == (
        b'event: stream_reset\ndata: {"last_event_id":null,"oldest_available":6,'
        b'"reason":"malformed"}\n\n'
    )


# -- reading and waiting ---------------------------------------------------------------------


def test_read_returns_at_most_limit_events_after_the_cursor() -> None:
    log = filled(10)
    reset, events = log.read(3, 4)
    assert reset is None and [e.id for e in events] == [4, 5, 6, 7]
    assert log.read(10, 4) == (None, [])


def test_read_behind_the_buffer_is_a_lagged_reset_then_the_oldest_events() -> None:
    log = filled(MIN_BUFFER + 50)
    reset, events = log.read(20, 3)
    assert reset == StreamReset(20, 51, "lagged")
    assert [e.id for e in events] == [51, 52, 53]


def test_wait_times_out_without_events_and_returns_at_once_with_them() -> None:
    log = filled(2)
    assert log.wait(1, 10.0) is True
    began = time.monotonic()
    assert log.wait(2, 0.05) is False
    assert time.monotonic() - began >= 0.05


def test_publish_and_close_wake_a_waiting_reader() -> None:
    log = EventLog()
    woken: list[bool] = []

    def wait(cursor: int) -> None:
        woken.append(log.wait(cursor, 10.0))

    for wake in (lambda: log.publish("a", {}), log.close):
        waiter = threading.Thread(target=wait, args=(log.newest_id,))
        waiter.start()
        wake()
        waiter.join(5.0)
    assert woken == [True, True]
    assert log.closed and log.publish("a", {}) == 2  # still recorded after close


# -- parsing the request ---------------------------------------------------------------------


def test_types_are_parsed_into_a_set() -> None:
    assert parse_types(None) is None
    assert parse_types("tool_invoked") == frozenset({"tool_invoked"})
    assert parse_types("a,b,a") == frozenset({"a", "b"})


@pytest.mark.parametrize("raw", ["", ",", "a,", "a b", "A", "a-b", "a" * 65, "é"])
def test_bad_types_are_value_errors(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_types(raw)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, (None, False)),
        ("", (None, False)),
        ("  ", (None, False)),
        ("0", (0, False)),
        (" 42 ", (42, False)),
        ("9" * 30, (int("9" * 30), False)),
        ("9" * 31, (None, True)),
        ("-1", (None, True)),
        ("1.0", (None, True)),
        ("abc", (None, True)),
        ("٣", (None, True)),  # a digit, but not an ASCII one
    ],
)
def test_last_event_id_parsing(raw: str | None, parsed: tuple[int | None, bool]) -> None:
    assert parse_last_event_id(raw) == parsed


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"event_buffer": 9_999},
        {"first_event_id": 0},
        {"ping_interval": 0},
        {"ping_interval": -1.0},
        {"ping_interval": math.nan},
        {"event_retry": -0.001},
        {"event_framing": "gzip"},
    ],
)
def test_bad_event_options_are_value_errors(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LocalGateway(**options)  # type: ignore[arg-type]


def test_publish_event_works_before_start_and_returns_the_id() -> None:
    gw = LocalGateway(first_event_id=10)
    assert gw.last_event_id == 9
    assert gw.publish_event("authorization_denied", {"server": "s", "tool": "t",
                                                     "principal": None, "reason": "no"}) == 10
    assert gw.last_event_id == 10


@pytest.mark.parametrize(
    "options",
    [
        {"drop_after_events": -1},
        {"stall_after_events": -1},
        {"drop_after_events": 1.5},
        {"drop_after_events": True},
        {"drop_after_events": 1, "stall_after_events": 1},
        {"stall": 1.0},
        {"stall_after_events": 1, "stall": -1.0},
    ],
)
def test_bad_stream_faults_are_value_errors(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Fault(path="/api/v1/events", **options)  # type: ignore[arg-type]


def test_stream_faults_are_not_answering_faults() -> None:
    assert not Fault(drop_after_events=0).answers
    assert not Fault(stall_after_events=3, stall=None).answers
