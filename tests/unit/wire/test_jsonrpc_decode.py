"""``parse_line`` decodes an object line with json's scanner directly (issue 16: the decoder's
two whitespace regexes per message); it must accept and refuse exactly what ``json.loads``
does, with the same kind of error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync.wire import _jsonrpc


def outcome(decode: Any, text: str) -> tuple[Any, ...]:
    try:
        return ("value", decode(text))
    except RecursionError:
        return ("too deep",)
    except ValueError:
        return ("not json",)


CASES = [
    '{"a":1}', '{"a":1}  ', '{"a":1} \t\r\n', '{"a":1} x', '{"a":1}{"b":2}', '{"a":',
    '{"a":1}\x0b', '{"a":1}\u00a0', '{"a":1}\u2028', '{"a":"\ud800"}', '{"a":NaN}',
    '{"a":1e999}', '{"a":-Infinity}', '{"a":[' + "[" * 100_000, '{"a":"\\u0000"}',
    '{"a":1,}', '{"a" 1}', '{"a":01}', '{"\\ud83d\\ude00":true}',
]


@pytest.mark.parametrize("text", CASES)
def test_the_scanner_agrees_with_json_loads(text: str) -> None:
    assert outcome(_jsonrpc._decode_object, text) == outcome(json.loads, text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1), JSON, min_size=1, max_size=4),
       st.sampled_from(["", " ", "\n", " \t\r\n", "x", " ,", "}", "\x0b", " 1"]))
def test_any_object_with_any_tail_decodes_as_json_loads_does(value: dict[str, Any],
                                                            tail: str) -> None:
    text = json.dumps(value, separators=(",", ":")) + tail
    assert outcome(_jsonrpc._decode_object, text) == outcome(json.loads, text)
