"""SSE framing and field parsing: every split of a stream gives the same events.

The stream is framed by sark_sync (line ends, BOM, size cap) and its fields parsed by
sseclient-py, exactly as the event stream does; these tests run that pair on byte streams cut
at every possible position, so a CRLF split between two reads, a BOM split in three, or a
multi-byte character split in the middle cannot change what comes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
import sseclient

from sark_sync.wire._sse import EventTooLarge, SSEFramer, fields_of, has_data, simple_fields

Parsed = tuple[str, str, "str | None"]  # (type, data, id)


def parse(chunks: Iterable[bytes], max_event_bytes: int = 1 << 20) -> list[Parsed]:
    """The events of a stream delivered in ``chunks``: framer, then sseclient-py."""
    framer = SSEFramer(max_event_bytes)
    last_id: str | None = None
    events: list[Parsed] = []

    def blocks() -> Iterator[bytes]:
        nonlocal last_id
        for chunk in chunks:
            for block in framer.feed(chunk):
                if has_data(block):
                    yield block
                else:
                    event_id, _ = fields_of(block)
                    if event_id is not None:
                        last_id = event_id

    for event in sseclient.SSEClient(blocks()).events():
        if event.id is not None and "\0" not in event.id:
            last_id = event.id
        events.append((event.event, event.data, last_id))
    return events


def splits(stream: bytes) -> Iterator[list[bytes]]:
    """The stream whole, byte by byte, and cut in two at every position."""
    yield [stream]
    yield [stream[i:i + 1] for i in range(len(stream))]
    for cut in range(1, len(stream)):
        yield [stream[:cut], stream[cut:]]


def assert_every_split(stream: bytes, expected: list[Parsed]) -> None:
    for chunks in splits(stream):
        assert parse(chunks) == expected, chunks


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_ends_lf_crlf_and_cr_frame_the_same_events(end: bytes) -> None:
    stream = (b"id: 1" + end + b"event: a" + end + b"data: {\"n\": 1}" + end + end
              + b"id: 2" + end + b"data: two" + end + end)
    assert_every_split(stream, [("a", '{"n": 1}', "1"), ("message", "two", "2")])


def test_mixed_line_ends_in_one_stream() -> None:
    """``\\n\\r\\n`` is a line end and a blank line; sseclient-py alone would miss it."""
    stream = b"data: a\n\r\ndata: b\r\n\ndata: c\r\r" + b"data: d\r\n\r\n"
    assert_every_split(stream, [("message", x, None) for x in "abcd"])


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == []
    assert framer.feed(b"\n") == []
    assert framer.feed(b"\r") == [b"data: a\n\n"]  # the CR ends the blank line at once
    assert framer.feed(b"\ndata: b\n\n") == [b"data: b\n\n"]


def test_multi_line_data_is_joined_with_newlines() -> None:
    stream = b"data: first\ndata:second\ndata\ndata:  indented\n\n"
    assert_every_split(stream, [("message", "first\nsecond\n\n indented", None)])


def test_a_leading_bom_is_dropped_even_split_and_only_at_the_start() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    assert_every_split(stream, [("message", "x", None)])
    framer = SSEFramer()
    assert framer.feed(b"\xef") == [] and framer.feed(b"\xbb") == []
    assert framer.feed(b"\xbfdata: y\n\n") == [b"data: y\n\n"]


def test_comments_and_pings_produce_no_event() -> None:
    stream = b": ping\n\n:comment\ndata: x\n: inside\n\n: ping\n\n"
    assert_every_split(stream, [("message", "x", None)])


def test_fields_without_colon_and_unknown_fields() -> None:
    stream = b"event\ndata\nunknown: 1\nfoo\n\nevent: t\ndata: y\n\n"
    # "data" alone adds an empty line (dispatched as ""), "event" alone is "message".
    assert_every_split(stream, [("message", "", None), ("t", "y", None)])


def test_ids_persist_until_changed_reset_by_empty_and_nul_ignored() -> None:
    stream = (b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 9\n\ndata: d\n\n"
              b"id: x\0y\ndata: e\n\n")
    expected = [("message", "a", "7"), ("message", "b", "7"), ("message", "c", ""),
                ("message", "d", "9"), ("message", "e", "9")]
    assert_every_split(stream, expected)


def test_unicode_split_across_reads_at_every_byte() -> None:
    stream = 'data: {"t": "é€😀"}\n\n'.encode()
    assert_every_split(stream, [("message", '{"t": "é€😀"}', None)])


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"retry: 2500\n\n", (None, 2500)),
        (b"retry:0\n\n", (None, 0)),
        (b"retry: 25x\n\n", (None, None)),
        (b"retry: -1\n\n", (None, None)),
        (b"retry: 1.5\n\n", (None, None)),
        (b"retry:\n\n", (None, None)),
        (b"retry: 10\nid: 4\n\n", ("4", 10)),
        (b"id: 3\nretry: 1\nretry: 2\n\n", ("3", 2)),
    ],
)
def test_retry_is_honoured_only_when_all_digits(block: bytes, expected: tuple[object, object]
                                                ) -> None:
    assert fields_of(block) == expected


def test_has_data_finds_the_data_field_only() -> None:
    assert has_data(b"data: x\n\n") and has_data(b"data\n\n") and has_data(b"id: 1\ndata:\n\n")
    assert not has_data(b"retry: 5\n\n") and not has_data(b": data: x\n\n")
    assert not has_data(b"database: 1\n\n") and not has_data(b"id: 1\ndatabase\n\n")


def test_blank_lines_between_events_dispatch_nothing() -> None:
    assert_every_split(b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n", [("message", "a", None),
                                                              ("message", "b", None)])


def test_an_unfinished_event_at_the_end_of_a_stream_is_not_dispatched() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: complete\n\ndata: cut off") == [b"data: complete\n\n"]
    assert framer.pending == len(b"data: cut off")


def test_an_event_over_the_cap_raises_whether_finished_or_not() -> None:
    with pytest.raises(EventTooLarge, match="more than 64 bytes"):
        SSEFramer(64).feed(b"data: " + b"x" * 100 + b"\n\n")
    framer = SSEFramer(64)
    framer.feed(b"data: " + b"x" * 50)
    with pytest.raises(EventTooLarge):
        framer.feed(b"x" * 50)
    assert SSEFramer(64).feed(b"data: " + b"x" * 56 + b"\n\n")  # exactly 64 bytes is fine


def test_many_events_in_one_read_come_out_in_order() -> None:
    stream = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(1000))
    assert parse([stream]) == [("message", str(i), str(i)) for i in range(1000)]


def _sseclient_reading(block: bytes) -> tuple[str | None, str, str, str | None] | None:
    item = next(sseclient.SSEClient(iter((block,))).events(), None)
    return None if item is None else (item.id, item.event, item.data, item.retry)


FIELD_LINES = [
    b"id: 7", b"id: ", b"id:7", b"id", b"id: a: b", b"event: tick", b"event: ", b"event:tick",
    b"event", b"data: {\"a\": 1}", b"data: ", b"data:x", b"data", b"data:  two spaces",
    b"data: a: b", b"data: \xc3\xa9\xe2\x82\xac", b"data: \xff\xfe", b"retry: 10", b"retry: x",
    b": comment", b"foo: bar", b"Data: x", b"   ",
]


@pytest.mark.parametrize("first", FIELD_LINES, ids=repr)
def test_the_fast_reading_of_a_block_is_sseclients_or_none(first: bytes) -> None:
    """Every block of up to three lines from the list: where simple_fields answers, it gives
    exactly what sseclient-py gives; it declines (None) everything else."""
    answered = 0
    for second in [None, *FIELD_LINES]:
        for third in [None, *FIELD_LINES[::3]]:
            lines = [line for line in (first, second, third) if line is not None]
            block = b"\n".join(lines) + b"\n\n"
            fast = simple_fields(block)
            if fast is None:
                continue
            answered += 1
            assert fast == _sseclient_reading(block), block
    if first.startswith(b"data: ") and first != b"data: \xff\xfe":
        assert answered > 0  # the common shape is really read fast


def test_the_fast_reading_covers_the_gateways_shape() -> None:
    block = b'id: 12\nevent: tool_invoked\ndata: {"n": 1}\n\n'
    assert simple_fields(block) == ("12", "tool_invoked", '{"n": 1}', None)
    assert simple_fields(b"id: 3\nevent: tick\ndata: x\nretry: 10\n\n") == ("3", "tick", "x",
                                                                           "10")
    assert simple_fields(b"data: a\ndata: b\n\n") is None  # two data lines: sseclient-py's
