"""JSON-RPC framing against lines a hostile stdio server writes: only FramingError comes out,
and the id of the call a broken answer was meant for is salvaged when it can be read.

``FramingError.id`` stays None for a line that is not JSON (a parse error is answered with a
null id); ``salvaged_id`` is what a client uses to fail that one call at once.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sark_sync.wire import _jsonrpc as rpc

DEEP = 100_000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_value(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("line", "salvaged"), [
    (b'{"jsonrpc":"2.0","id":3,"result":' + nested(DEEP) + b"}", 3),
    (b'{"jsonrpc":"2.0","id":"abc","error":{"code":1,"message":"m","data":' + nested(DEEP)
     + b"}}", "abc"),
    (b'{"jsonrpc":"2.0","result":' + nested(DEEP) + b',"id":7}', 7),  # the id written last
    (b'{"result":{"id":9,"x":' + nested(DEEP) + b'}}', None),  # an "id" deeper than the top
    (b'{"jsonrpc":"2.0","method":"n","params":{"p":' + nested(DEEP) + b"}}", None),
    (b'{"jsonrpc":"2.0","id":"s1","method":"m","params":{"p":' + nested(DEEP) + b"}}", None),
], ids=["response", "error", "id-last", "nested-id", "notification", "server-request"])
def test_a_line_nested_too_deeply_is_a_framing_error_with_the_salvaged_id(
    line: bytes, salvaged: object,
) -> None:
    with pytest.raises(rpc.FramingError) as caught:
        rpc.parse_line(line)
    assert str(caught.value) == "nested too deeply to decode"
    assert caught.value.id is None
    assert caught.value.salvaged_id == salvaged
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_invalid_utf8_names_the_byte_and_salvages_the_id() -> None:
    with pytest.raises(rpc.FramingError) as caught:
        rpc.parse_line(b'{"jsonrpc":"2.0","id":5,"result":"\xff"}')
    assert str(caught.value) == "not valid UTF-8 (at byte 34)"
    assert (caught.value.id, caught.value.salvaged_id) == (None, 5)


def test_a_truncated_answer_salvages_its_id_but_a_truncated_request_does_not() -> None:
    with pytest.raises(rpc.FramingError) as answer:
        rpc.parse_line(b'{"jsonrpc":"2.0","id":12,"result":{"content":')
    assert answer.value.salvaged_id == 12
    with pytest.raises(rpc.FramingError) as request:
        rpc.parse_line(b'{"jsonrpc":"2.0","id":12,"method":"sampling/createMessage","par')
    assert request.value.salvaged_id is None


@pytest.mark.parametrize(("line", "expected"), [
    (b'{"jsonrpc":"2.0","id":' + b"7" * 5000 + b',"result":', None),  # no id that long
    (b'{"jsonrpc":"2.0","id":1.5,"result":[', None),  # not an integer
    (b'{"jsonrpc":"2.0","id":true,"result":[', None),  # a bool is no id
    (b'{"jsonrpc":"2.0","id":"' + b"x" * 300 + b'","result":[', None),  # an id too long
    (b'{"jsonrpc":"2.0","id":-4,"result":[', -4),
    (b'  {"id" : "a\\"b", "result": [', 'a"b'),  # unescaped as JSON would
    (b"garbage {{{", None),
    (b"", None),
])
def test_salvage_id_takes_only_a_plain_top_level_id(line: bytes, expected: object) -> None:
    assert rpc.salvage_id(line) == expected


def test_a_5000_digit_number_in_a_result_fails_only_its_call() -> None:
    line = b'{"jsonrpc":"2.0","id":3,"result":{"n":' + b"9" * 5000 + b"}}"
    if not hasattr(sys, "get_int_max_str_digits"):  # Python < 3.11 converts any length
        assert rpc.parse_line(line) == rpc.Response(3, {"n": int("9" * 5000)})
        return
    with pytest.raises(rpc.FramingError) as caught:
        rpc.parse_line(line)
    assert str(caught.value).startswith("not JSON: ")
    assert caught.value.salvaged_id == 3


@pytest.mark.parametrize("encode", [
    lambda v: rpc.encode_request(1, "tools/call", {"arguments": v}),
    lambda v: rpc.encode_notification("n", {"v": v}),
    lambda v: rpc.encode_response(1, v),
], ids=["request", "notification", "response"])
def test_encoding_too_deep_a_message_is_a_nesting_error_not_a_recursion_error(
    encode: Any,
) -> None:
    with pytest.raises(rpc.NestingError) as caught:
        encode(deep_value(DEEP))
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == "nested too deeply for JSON"


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=3000))
def test_parse_line_and_salvage_id_raise_nothing_else_on_hostile_bytes(
    tail: bytes, depth: int,
) -> None:
    for line in (tail, b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * depth + tail,
                 b"[" * depth + tail + b"]" * depth):
        try:
            rpc.parse_line(line)
        except rpc.FramingError as exc:
            assert exc.salvaged_id is None or type(exc.salvaged_id) in (int, str)
        found = rpc.salvage_id(line)
        assert found is None or type(found) in (int, str)
