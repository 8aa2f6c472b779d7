"""Hostile SSE field values, read as the HTML standard says: no value raises, retry is capped,
and Last-Event-ID carries only what an HTTP header can.

:class:`EventReader` is what the event stream runs on every framed block, so these tests pin
the stream's reading of each field without a socket; tests/integration/hostile/
test_hostile_sse.py shows the same against a real connection.
"""

from __future__ import annotations

import logging
import sys
import time

import pytest

from sark_sync import Event, GatewayClient, RetryPolicy, ValidationError
from sark_sync.transports.sse import EventStream
from sark_sync.wire._sse import (
    MAX_RESUME_ID_BYTES,
    MAX_RETRY_MS,
    EventReader,
    EventTooLarge,
    SSEFramer,
    fields_of,
    resume_header,
    retry_of,
)


def read_all(stream: bytes, reader: EventReader | None = None) -> list[Event]:
    reader = reader or EventReader()
    framer = SSEFramer()
    events = [reader.read(block) for block in framer.feed(stream)]
    return [event for event in events if event is not None]


# -- retry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2500", 2500), ("0", 0), ("000", 0), ("0060000", 60_000),
        ("60001", MAX_RETRY_MS), ("9999999999", MAX_RETRY_MS), ("9" * 500, MAX_RETRY_MS),
        ("1" + "0" * 5000, MAX_RETRY_MS),  # more digits than int() converts on 3.11
        ("²", None), ("١٢", None), ("１２", None), ("-1", None), ("+1", None), ("1.5", None),
        ("1e3", None), (" 1", None), ("1 ", None), ("", None), ("0x10", None), ("€", None),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_retry_is_ascii_digits_only_and_capped(value: str, expected: int | None) -> None:
    assert retry_of(value) == expected
    assert retry_of(value.encode()) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: \xc2\xb2", None), (b"retry: 9999999999", MAX_RETRY_MS),
        (b"retry: " + b"7" * 300, MAX_RETRY_MS), (b"retry: 250", 250),
    ],
    ids=repr,
)
def test_retry_in_fast_and_slow_blocks_sets_the_same_capped_value(
    line: bytes, expected: int | None
) -> None:
    """``retry: ²`` and 300 digits used to raise ValueError / overflow the reconnect timer."""
    fast = line + b"\ndata: x\n\n"  # simple_fields' shape
    slow = b": comment\n" + fast  # a comment sends it to sseclient-py's reading
    for stream in (fast, slow, line + b"\n\n"):
        reader = EventReader()
        events = read_all(stream, reader)
        assert reader.retry_ms == expected
        assert [e.retry for e in events] == ([expected] if b"data" in stream else [])


def test_a_later_invalid_retry_does_not_undo_a_valid_one_in_the_same_block() -> None:
    assert fields_of(b"retry: 10\nretry: x\n\n") == (None, 10)
    reader = EventReader()
    (event,) = read_all(b"retry: 10\nretry: \xc2\xb2\ndata: a\ndata: b\n\n", reader)
    assert (event.retry, reader.retry_ms, event.data) == (10, 10, "a\nb")


# -- id --------------------------------------------------------------------------------------------


def test_one_leading_space_is_stripped_from_an_id_so_two_spaces_keep_one() -> None:
    reader = EventReader()
    (event,) = read_all(b"id:  7\ndata: x\n\n", reader)
    assert event.id == reader.last_event_id == " 7"
    # An HTTP server strips spaces around a header value on receipt: "7" is what it would see.
    assert reader.resume == b"7"


def test_a_non_latin1_id_resumes_with_its_utf8_bytes() -> None:
    reader = EventReader()
    (event,) = read_all("id: €1\ndata: x\n\n".encode(), reader)
    assert event.id == "€1"
    assert reader.resume == "€1".encode() == b"\xe2\x82\xac1"


def test_an_id_with_nul_is_ignored_in_both_readings() -> None:
    for stream in (b"id: 5\ndata: a\n\nid: x\0y\ndata: b\n\n",
                   b"id: 5\ndata: a\n\n: c\nid: x\0y\ndata: b\n\n"):
        reader = EventReader()
        assert [e.id for e in read_all(stream, reader)] == ["5", "5"]
        assert reader.resume == b"5"


def test_ids_are_read_line_by_line_in_the_slow_reading() -> None:
    """sseclient-py keeps the last ``id`` line; the spec processes each: a NUL id after a
    valid one leaves the valid one."""
    reader = EventReader()
    (event,) = read_all(b"id: 5\nid: a\0b\ndata: x\n\n", reader)
    assert event.id == "5"


@pytest.mark.parametrize(
    "event_id",
    ["a\x01b", "x\x7f", "\x0b7", "   ", "\t", "9" * (MAX_RESUME_ID_BYTES + 1),
     "€" * (MAX_RESUME_ID_BYTES // 3 + 1)],
    ids=lambda v: repr(v)[:16],
)
def test_an_id_no_header_can_carry_keeps_resuming_from_the_last_one_that_can(
    event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    reader = EventReader("3")
    stream = f"id: {event_id}\ndata: a\n\nid: {event_id}\ndata: b\n\n".encode()
    with caplog.at_level(logging.WARNING, logger="sark_sync.sse"):
        events = read_all(stream, reader)
    assert [e.id for e in events] == [event_id, event_id]  # delivered as sent
    assert reader.resume == b"3"  # reconnecting replays rather than losing events
    warnings = [r.getMessage() for r in caplog.records if r.name == "sark_sync.sse"]
    assert warnings == [  # once per stream, without quoting the id
        f"event id of {len(event_id)} characters cannot be sent in a Last-Event-ID header "
        f"(control characters, blank or over {MAX_RESUME_ID_BYTES} bytes); a reconnect "
        "resumes from the last id that can"]
    read_all(b"id: 4\ndata: c\n\n", reader)
    assert reader.resume == b"4"


def test_an_empty_id_resets_and_sends_no_header() -> None:
    reader = EventReader("3")
    assert reader.resume == b"3"
    read_all(b"id\ndata: a\n\n", reader)
    assert (reader.last_event_id, reader.resume) == ("", None)


@pytest.mark.parametrize(
    ("event_id", "header"),
    [("7", b"7"), (" 7 ", b"7"), ("\t7", b"7"), ("a b", b"a b"), ("a\tb", b"a\tb"),
     ("€1", b"\xe2\x82\xac1"), ("é", b"\xc3\xa9"), ("\ud800", None), ("a\rb", None),
     ("a\nb", None), ("a\0b", None), ("", None), ("x" * MAX_RESUME_ID_BYTES,
                                                  b"x" * MAX_RESUME_ID_BYTES)],
    ids=lambda v: repr(v)[:16],
)
def test_resume_header_is_utf8_without_surrounding_blanks_or_none(
    event_id: str, header: bytes | None
) -> None:
    assert resume_header(event_id) == header


# -- data, event -------------------------------------------------------------------------------


def test_data_nested_too_deeply_is_delivered_as_text_and_the_next_event_still_decodes() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    reader = EventReader()
    for stream in (f"id: 1\ndata: {deep}\n\nid: 2\ndata: {{\"n\": 2}}\n\n",
                   f": slow\nid: 1\ndata: {deep}\n\n: slow\nid: 2\ndata: {{\"n\": 2}}\n\n"):
        first, second = read_all(stream.encode(), reader)
        assert (first.id, first.type, first.data) == ("1", "message", deep)
        assert (second.id, second.data) == ("2", {"n": 2})


def test_data_with_a_number_too_long_to_read_is_text() -> None:
    number = "9" * 5000
    (event,) = read_all(f"data: {number}\n\n".encode())
    # Pythons with the int digit limit (3.11, and 3.9.14+) refuse it: the text is delivered.
    limited = hasattr(sys, "set_int_max_str_digits")
    assert event.data == (number if limited else int(number))


def test_control_characters_in_event_are_kept_in_the_type() -> None:
    for stream in (b"event: a\x01b\x1b[31m\ndata: x\n\n",
                   b": c\nevent: a\x01b\x1b[31m\ndata: x\n\n"):
        (event,) = read_all(stream)
        assert event.type == "a\x01b\x1b[31m"


def test_invalid_utf8_is_replaced_and_a_bom_in_the_middle_is_an_unknown_field() -> None:
    stream = b"data: \xff\xfe ok\n\n\xef\xbb\xbfdata: hidden\n\ndata: after\n\n"
    assert [e.data for e in read_all(stream)] == ["\ufffd\ufffd ok", "after"]


# -- framer bounds ---------------------------------------------------------------------------


def test_an_endless_line_costs_linear_time_and_holds_at_most_the_cap() -> None:
    framer = SSEFramer(8 * 1024 * 1024)
    chunk = b"x" * 65536
    started = time.perf_counter()
    with pytest.raises(EventTooLarge, match=r"an event of more than 8388608 bytes"):
        for _ in range(200):
            framer.feed(chunk)
            assert framer.pending <= framer.max_event_bytes
    # 128 reads of 64 KiB: a quadratic framer copies ~0.5 GB here; a linear one ~16 MB.
    assert time.perf_counter() - started < 1.0
    assert framer.pending == 0


def test_a_blank_line_flood_between_events_is_skipped_quickly() -> None:
    framer = SSEFramer(1024)
    started = time.perf_counter()
    assert framer.feed(b"data: a\n\n" + b"\n" * 20_000_000 + b"data: b\n\n") == [
        b"data: a\n\n", b"data: b\n\n"]
    assert time.perf_counter() - started < 1.0
    assert framer.pending == 0


# -- reconnect wait ----------------------------------------------------------------------------


def _backoff(retry_ms: int | None, failures: int, policy: RetryPolicy) -> float:
    """EventStream._backoff of a stream in this state (built without connecting)."""
    stream = EventStream.__new__(EventStream)
    stream._fields = EventReader()
    stream._fields.retry_ms = retry_ms
    stream._policy = policy
    return stream._backoff(failures)


@pytest.mark.parametrize(
    ("retry_ms", "failures", "expected"),
    [(None, 0, 0.5), (None, 3, 4.0), (None, 5000, 8.0),  # 2.0**5000 overflows a float
     (MAX_RETRY_MS, 0, 60.0), (MAX_RETRY_MS, 5000, 60.0), (0, 5000, 0.0), (250, 1, 0.5)],
)
def test_the_reconnect_wait_is_capped_and_never_overflows(
    retry_ms: int | None, failures: int, expected: float
) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_multiplier=2.0, backoff_max=8.0, jitter=False)
    assert _backoff(retry_ms, failures, policy) == expected


# -- stream_events arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [("€" * 20, "has a non-ASCII character at index 0"),
     ("tok\nen-0123456789", "has a control character at index 3"),
     (" token-0123456789", "starts with whitespace")],
    ids=["euro", "newline", "leading-space"],
)
def test_a_user_token_no_header_can_carry_is_a_validation_error_that_never_quotes_it(
    token: str, problem: str
) -> None:
    """It used to escape as a raw UnicodeEncodeError, or as a ProtocolError quoting it."""
    with GatewayClient("http://127.0.0.1:9", api_key="k" * 20) as client:
        with pytest.raises(ValidationError) as caught:
            client.stream_events(user_token=token)
    assert str(caught.value) == (
        f"user_token {problem}; header values are 1 to 8192 visible ASCII characters, with "
        "spaces allowed only between them")
    assert token.strip() not in str(caught.value) and token not in repr(caught.value)
