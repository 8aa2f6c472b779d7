"""Messages are encoded with json's C encoder directly (issue 16: ``JSONEncoder.encode``
rebuilt it, and a closure, for every message); it must write and refuse exactly what
``json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)`` does."""

from __future__ import annotations

import collections
import decimal
import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync.wire import _jsonrpc


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def outcome(encode: Any, obj: Any) -> tuple[Any, ...]:
    try:
        return ("text", encode(obj))
    except RecursionError:
        return ("too deep",)
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def shared() -> dict[str, Any]:
    twice = [1, 2]
    return {"a": twice, "b": twice}  # the same list twice is not a circle


def deep() -> dict[str, Any]:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    return {"deep": value}


CASES = [
    lambda: {"a": float("nan")}, lambda: {"a": float("inf")}, lambda: {"a": -float("inf")},
    lambda: {"a": 1e308, "b": -0.0, "c": 5e-324}, lambda: {1: "int key", 2.5: "float key"},
    lambda: {True: "bool key", None: "none key"}, lambda: {(1, 2): "tuple key"},
    lambda: {"a": object()}, lambda: {"a": {1, 2}}, lambda: {"a": b"bytes"},
    lambda: {"a": decimal.Decimal("1.5")}, lambda: {"a": Colour.RED, Colour.RED: "key"},
    lambda: {"a": Text("sub"), Text("k"): 1}, lambda: {"a": collections.OrderedDict(b=1)},
    lambda: {"a": "\u2028\u2029\x00\x1f\"\\\ud800 é 😀"}, lambda: {"a": (1, [2, (3,)])},
    lambda: {"a": 10 ** 5000}, circular, shared, deep,
]


@pytest.mark.parametrize("make", CASES)
def test_the_c_encoder_agrees_with_json_dumps(make: Any) -> None:
    assert outcome(_jsonrpc._encode, make()) == outcome(dumps, make())


def test_a_failed_message_leaves_nothing_behind_for_the_next() -> None:
    """Each message gets its own markers: a circle (or a refusal halfway) in one message
    must not make the next message's shared objects look circular."""
    part = [1]
    with pytest.raises(ValueError):
        _jsonrpc._encode({"a": part, "b": float("nan")})
    assert _jsonrpc._encode({"a": part, "b": part}) == '{"a":[1],"b":[1]}'


def test_requests_are_the_same_line_as_before() -> None:
    line = _jsonrpc.encode_request(7, "tools/call", {"name": "echo", "arguments": {"t": "é"}})
    assert line == (dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"t": "é"}}}) + "\n").encode()


def test_nesting_is_refused_as_a_nesting_error() -> None:
    with pytest.raises(_jsonrpc.NestingError):
        _jsonrpc.encode_request(1, "tools/call", deep())


def test_without_the_c_encoder_it_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jsonrpc, "_C_MAKE_ENCODER", None)
    for make in CASES:
        assert outcome(_jsonrpc._encode, make()) == outcome(dumps, make())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), JSON, max_size=4))
def test_any_value_encodes_as_json_dumps_does(obj: dict[str, Any]) -> None:
    assert outcome(_jsonrpc._encode, obj) == outcome(dumps, obj)
