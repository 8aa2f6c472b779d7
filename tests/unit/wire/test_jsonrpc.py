"""JSON-RPC 2.0 line framing: encoding, parsing and splitting, with every chunking."""

from __future__ import annotations

import json

import pytest

from sark_sync.wire import _jsonrpc as rpc


def test_encoded_messages_are_single_ascii_lines() -> None:
    line = rpc.encode_request(7, "tools/call", {"text": "a\nb\u2028c\u00e9"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                "params": {"text": "a\nb\u2028c\u00e9"}}


def test_each_kind_round_trips() -> None:
    assert rpc.parse_line(rpc.encode_request("a", "ping")) == rpc.Request("a", "ping", None)
    assert rpc.parse_line(rpc.encode_notification("n", {"x": 1})) == rpc.Notification(
        "n", {"x": 1})
    assert rpc.parse_line(rpc.encode_response(3, {"ok": True})) == rpc.Response(3, {"ok": True})
    assert rpc.parse_line(rpc.encode_error(4, -32601, "nope", {"d": 1})) == rpc.ErrorResponse(
        4, -32601, "nope", {"d": 1})
    assert rpc.parse_line(rpc.encode_error(None, -32700, "bad")) == rpc.ErrorResponse(
        None, -32700, "bad", None)


def test_a_response_with_a_null_result_is_a_response() -> None:
    assert rpc.parse_line(b'{"jsonrpc":"2.0","id":1,"result":null}') == rpc.Response(1, None)


@pytest.mark.parametrize(
    ("line", "fragment", "has_id"),
    [
        (b"not json", "not JSON", False),
        (b"[1, 2]", "a batch", False),
        (b'"text"', "str", False),
        (b'{"id": 1, "result": 2}', "jsonrpc", True),
        (b'{"jsonrpc": "1.0", "id": 1, "result": 2}', "jsonrpc", True),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', "method", True),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "m", "params": [1]}', "params", True),
        (b'{"jsonrpc": "2.0", "id": true, "method": "m"}', "id", False),
        (b'{"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "m"}}', "error", True),
        (b'{"jsonrpc": "2.0", "id": 1}', "neither", True),
        (b'{"jsonrpc": "2.0", "result": 1}', "id", False),
        (b"\xff\xfe", "not JSON", False),
    ],
)
def test_invalid_lines_raise_framing_error(line: bytes, fragment: str, has_id: bool) -> None:
    with pytest.raises(rpc.FramingError) as caught:
        rpc.parse_line(line)
    assert isinstance(caught.value, ValueError)
    assert fragment in str(caught.value)
    assert (caught.value.id == 1) is has_id


def test_framing_error_quotes_only_a_short_prefix() -> None:
    with pytest.raises(rpc.FramingError) as caught:
        rpc.parse_line(b"x" * 10_000)
    assert len(str(caught.value)) < 200


STREAM = (rpc.encode_request(1, "a") + b'{"jsonrpc":"2.0","id":2,"result":"\xc3\xa9"}\r\n'
          + b"\n" + rpc.encode_notification("n"))
EXPECTED = [rpc.encode_request(1, "a")[:-1], b'{"jsonrpc":"2.0","id":2,"result":"\xc3\xa9"}',
            rpc.encode_notification("n")[:-1]]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_splitter_yields_the_same_lines_for_every_chunking(size: int) -> None:
    splitter = rpc.LineSplitter()
    lines: list[object] = []
    for start in range(0, len(STREAM), size):
        lines += splitter.feed(STREAM[start:start + size])
    assert lines + splitter.finish() == EXPECTED


def test_splitter_returns_an_unterminated_last_line_at_finish() -> None:
    splitter = rpc.LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert splitter.pending == 4
    assert splitter.finish() == [b'{"b"']


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_oversize_line_is_replaced_and_the_stream_goes_on(size: int) -> None:
    big = b'{"jsonrpc":"2.0","id":42,"result":"' + b"x" * 500 + b'"}'
    stream = big + b"\n" + rpc.encode_response(43, "ok")
    splitter = rpc.LineSplitter(max_line_bytes=100)
    lines: list[object] = []
    for start in range(0, len(stream), size):
        lines += splitter.feed(stream[start:start + size])
    assert len(lines) == 2
    oversize = lines[0]
    assert isinstance(oversize, rpc.Oversize)
    assert oversize.size == len(big)
    assert oversize.find_id() == 42
    assert rpc.parse_line(lines[1]) == rpc.Response(43, "ok")  # type: ignore[arg-type]


def test_oversize_finds_an_id_placed_after_the_payload() -> None:
    big = b'{"jsonrpc":"2.0","result":"' + b"y" * 50_000 + b'","id":"req-9"}\n'
    (oversize,) = rpc.LineSplitter(max_line_bytes=1000).feed(big)
    assert isinstance(oversize, rpc.Oversize) and oversize.find_id() == "req-9"


def test_splitter_rejects_a_zero_cap() -> None:
    with pytest.raises(ValueError):
        rpc.LineSplitter(0)
