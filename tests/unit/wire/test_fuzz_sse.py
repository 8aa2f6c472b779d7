"""Property-based fuzz of the event stream's framing and field reading, and of pagination.

Whatever a gateway sends, in whatever pieces the network delivers it:

- the framer raises nothing but :class:`EventTooLarge` (the stream turns it into a
  ``ProtocolError``) and holds at most ``max_event_bytes`` between reads;
- :class:`EventReader` never raises, and what it keeps is valid: ``retry_ms`` within the cap,
  ``resume`` a value every HTTP stack accepts as a header;
- the split points never change the events (one-byte splits included), and the fast reading
  of a block is the slow one's;
- a walk over arbitrary pages ends, yields no key twice, and raises only ``ProtocolError``.

Example counts are bounded: the whole file runs in a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sark_sync import Event, ProtocolError, ServerInfo
from sark_sync.wire._pagination import MAX_BARREN_PAGES, paginate, parse_page
from sark_sync.wire._sse import (
    MAX_RESUME_ID_BYTES,
    MAX_RETRY_MS,
    EventReader,
    EventTooLarge,
    SSEFramer,
    retry_of,
    simple_fields,
)

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Bytes that matter to the framer, mixed with anything else.
SPECIAL = st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r", b"\xef\xbb\xbf", b":",
                           b": ", b"data", b"data: ", b"id: ", b"retry: ", b"event: ", b"\0",
                           b"\xff", b"\xc2\xb2", b"9" * 12, b"[" * 50, b" "])
STREAM = st.lists(SPECIAL | st.binary(max_size=24), max_size=40).map(b"".join)
#: Field-shaped lines, so that real events come out of the arbitrary bytes too.
LINE = st.tuples(
    st.sampled_from([b"id", b"event", b"data", b"retry", b"", b"Data", b"\xef\xbb\xbfdata"]),
    st.sampled_from([b":", b": ", b":  ", b""]),
    st.binary(max_size=16) | st.text(max_size=12).map(str.encode) | st.integers().map(
        lambda n: str(n).encode()),
).map(b"".join)
EVENTFUL = st.lists(st.tuples(LINE, st.sampled_from([b"\n", b"\r", b"\r\n"])),
                    max_size=25).map(lambda pairs: b"".join(a + b for a, b in pairs))

Reading = tuple[list[tuple[Any, ...]], tuple[Any, ...]]

_ILLEGAL_HEADER = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])")  # http.client's own check


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """``stream`` cut at ``points`` (indices, any order, duplicates make empty chunks)."""
    bounds = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:])]


def read(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> tuple[Reading, bool]:
    """The events of a stream delivered in ``chunks`` and the reader's final state, as the
    event stream reads them, and whether the cap ended it. Checks the memory bound on the way.
    """
    framer = SSEFramer(max_event_bytes)
    reader = EventReader()
    events: list[tuple[Any, ...]] = []
    too_large = False
    try:
        for chunk in chunks:
            for block in framer.feed(chunk):
                event = reader.read(block)
                if event is not None:
                    check_event(event)
                    events.append((event.id, event.type, repr(event.data), event.retry))
            # Two bytes of a byte order mark cut short may wait, whatever the cap.
            assert framer.pending <= max(max_event_bytes, 2)
    except EventTooLarge as exc:
        assert exc.limit == max_event_bytes and exc.size > max_event_bytes
        too_large = True
    check_state(reader)
    return (events, (reader.last_event_id, reader.retry_ms, reader.resume)), too_large


def check_event(event: Event) -> None:
    assert event.id is None or isinstance(event.id, str)
    assert isinstance(event.type, str) and event.type
    assert event.retry is None or 0 <= event.retry <= MAX_RETRY_MS
    repr(event)  # a hostile value must not break the repr either


def check_state(reader: EventReader) -> None:
    assert reader.retry_ms is None or 0 <= reader.retry_ms <= MAX_RETRY_MS
    resume = reader.resume
    if resume is not None:
        assert 0 < len(resume) <= MAX_RESUME_ID_BYTES
        assert resume.strip(b" \t") == resume
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", resume)
        assert not _ILLEGAL_HEADER.search(resume)
        requests.utils.check_header_validity(("Last-Event-ID", resume))
        resume.decode("utf-8")


# -- framing ---------------------------------------------------------------------------------


@FUZZ
@given(stream=STREAM | EVENTFUL, points=st.lists(st.integers(min_value=0), max_size=12))
def test_split_points_never_change_the_events(stream: bytes, points: list[int]) -> None:
    whole, whole_large = read([stream])
    split, split_large = read(cut(stream, points))
    assert not whole_large and not split_large  # far below the 1 MiB cap
    assert split == whole


@FEW
@given(stream=STREAM | EVENTFUL)
def test_one_byte_reads_give_the_same_events(stream: bytes) -> None:
    assert read([stream[i:i + 1] for i in range(len(stream))]) == read([stream])


@FUZZ
@given(stream=STREAM | EVENTFUL, points=st.lists(st.integers(min_value=0), max_size=12),
       cap=st.integers(min_value=1, max_value=64))
def test_a_small_cap_is_hit_whatever_the_splits_and_memory_stays_under_it(
        stream: bytes, points: list[int], cap: int) -> None:
    (whole, _), whole_large = read([stream], cap)
    (split, _), split_large = read(cut(stream, points), cap)
    (uncapped, _), _ = read([stream])
    assert whole_large == split_large
    if not whole_large:
        assert split == whole == uncapped
    else:  # the events read before the oversize one are the stream's first ones
        assert split == uncapped[:len(split)]


@FEW
@given(prefix=STREAM, size=st.integers(min_value=1, max_value=4096),
       step=st.integers(min_value=1, max_value=700))
def test_an_endless_line_is_refused_once_it_passes_the_cap(prefix: bytes, size: int,
                                                           step: int) -> None:
    framer = SSEFramer(size)
    line = prefix + b"x" * (size + step + 1)
    with pytest.raises(EventTooLarge):
        for start in range(0, len(line), step):
            framer.feed(line[start:start + step])
            assert framer.pending <= max(size, 2)
    assert framer.pending == 0


# -- fields ------------------------------------------------------------------------------------


VALUE = st.text(max_size=20) | st.sampled_from(
    ["²", "9" * 400, "9999999999", " 7", "  7", "€1", "a\x01b", "\x7f", "\t", " ", "",
     "0" * 30 + "5", "-1", "1.5", "١٢", "x" * (MAX_RESUME_ID_BYTES + 1)])


def _value(text: str) -> bytes:
    return text.replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")


@FUZZ
@given(event_id=VALUE, kind=VALUE, data=VALUE, retry=VALUE)
def test_the_fast_reading_of_any_field_values_is_the_slow_one(
        event_id: str, kind: str, data: str, retry: str) -> None:
    block = (b"id: " + _value(event_id) + b"\nevent: " + _value(kind) + b"\ndata: "
             + _value(data) + b"\nretry: " + _value(retry) + b"\n\n")
    assume(b"\n\n" not in block[:-2])
    fast, slow = EventReader(), EventReader()
    fast_event = fast.read(block)
    slow_event = slow.read(b": slow\n" + block)  # a comment: not the fast shape
    assert fast_event is not None and slow_event is not None
    assert (fast_event.id, fast_event.type, repr(fast_event.data), fast_event.retry) == (
        slow_event.id, slow_event.type, repr(slow_event.data), slow_event.retry)
    assert (fast.last_event_id, fast.retry_ms, fast.resume) == (
        slow.last_event_id, slow.retry_ms, slow.resume)
    check_state(fast)


@FUZZ
@given(value=VALUE | st.binary(max_size=30).map(lambda b: b.decode("latin-1")))
def test_retry_is_the_spec_reading_of_ascii_digits_capped(value: str) -> None:
    got = retry_of(value)
    if value and all("0" <= c <= "9" for c in value):
        assert got == min(int(value), MAX_RETRY_MS)
    else:
        assert got is None


@FUZZ
@given(event_id=VALUE)
def test_an_id_is_the_value_with_one_space_stripped_and_resumes_only_if_sendable(
        event_id: str) -> None:
    raw = _value(event_id)
    reader = EventReader("start")
    event = reader.read(b"id: " + raw + b"\ndata: x\n\n")
    assert event is not None
    if b"\0" in raw:
        assert (event.id, reader.resume) == ("start", b"start")
        return
    expected = raw.decode("utf-8", "replace")
    assert event.id == reader.last_event_id == expected
    sendable = expected.strip(" \t").encode("utf-8", "replace")
    if not expected:
        assert reader.resume is None
    elif reader.resume != b"start":
        assert reader.resume == sendable
    check_state(reader)


@FEW
@given(depth=st.integers(min_value=1, max_value=200_000), tail=st.sampled_from(["", "x", "]"]))
def test_nested_data_of_any_depth_decodes_or_is_the_text(depth: int, tail: str) -> None:
    text = "[" * depth + "]" * depth + tail
    event = EventReader().read(b"data: " + text.encode() + b"\n\n")
    assert event is not None and (event.data == text or isinstance(event.data, list))


def test_simple_fields_declines_what_it_cannot_read_exactly() -> None:
    assert simple_fields(b"id: \xff\ndata: x\n\n") is None


# -- pagination ------------------------------------------------------------------------------


PAGE = st.tuples(
    st.lists(st.sampled_from("abcdefgh"), max_size=6),  # valid items' keys
    st.integers(min_value=0, max_value=4),  # malformed items besides them
    st.integers(min_value=0, max_value=40) | st.sampled_from([10**12, 10**400]),  # total
)


@FUZZ
@given(pages=st.lists(PAGE, min_size=1, max_size=30), forever=st.booleans())
def test_a_walk_over_arbitrary_pages_ends_without_duplicates(
        pages: list[tuple[list[str], int, int]], forever: bool) -> None:
    """Pages past the list are empty, or (``forever``) cycle through it again: either way the
    walk ends, within (new keys + 1) * MAX_BARREN_PAGES pages."""
    fetched: list[int] = []

    def fetch(offset: int) -> tuple[list[str], int, int]:
        fetched.append(offset)
        index = len(fetched) - 1
        if index >= len(pages) and not forever:
            return [], 0, 10**12
        items, malformed, total = pages[index % len(pages)]
        return list(items), len(items) + malformed, total

    yielded: list[Hashable] = []
    try:
        for item in paginate(fetch, key=str):
            yielded.append(item)
    except ProtocolError as exc:
        assert exc.message.startswith(("the gateway repeated items", "the gateway sent"))
    else:
        last_items, last_malformed, last_total = pages[(len(fetched) - 1) % len(pages)]
        ran_out = len(fetched) > len(pages) and not forever
        assert ran_out or not (last_items or last_malformed) or fetched[-1] + len(
            last_items) + last_malformed >= last_total
    assert len(yielded) == len(set(yielded))
    assert len(fetched) <= (len(set(yielded)) + 1) * MAX_BARREN_PAGES
    assert fetched == sorted(fetched)  # the offset never goes back


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@FUZZ
@given(servers=JSON, total=JSON, answered=JSON, offset=st.integers(min_value=0, max_value=50),
       extra=st.dictionaries(st.text(max_size=6), JSON, max_size=3))
def test_parse_page_of_any_json_is_a_page_or_a_protocol_error(
        servers: Any, total: Any, answered: Any, offset: int, extra: dict[str, Any]) -> None:
    data = {**extra, "servers": servers, "total": total, "offset": answered}
    try:
        items, count, got_total = parse_page(data, "servers", ServerInfo.from_dict, offset, "x")
    except ProtocolError as exc:
        assert exc.message.startswith("malformed listing from x: ")
        return
    assert isinstance(servers, list) and count == len(servers) >= len(items)
    assert type(got_total) is int and got_total >= 0
    assert all(isinstance(item, ServerInfo) for item in items)
