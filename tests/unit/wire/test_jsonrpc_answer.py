"""``parse_answer`` takes the result a caller waits for without building a ``Response``
(issue 16: on the stdio path that object and the general checks cost more than decoding).
It must take exactly what ``parse_line`` reads as the ``Response`` to that id, hand back
``parse_line``'s message for anything else, and fail as ``parse_line`` does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sark_sync.wire import jsonrpc


def expected(line: bytes, request_id: jsonrpc.RequestId) -> tuple[Any, ...]:
    """What ``parse_answer`` must return, from ``parse_line``."""
    try:
        message = jsonrpc.parse_line(line)
    except jsonrpc.FramingError as exc:
        return ("error", str(exc), exc.id, exc.salvaged_id)
    if type(message) is jsonrpc.Response and message.id == request_id \
            and type(message.id) is type(request_id):
        return (True, message.result)
    return (False, message)


def actual(line: bytes, request_id: jsonrpc.RequestId) -> tuple[Any, ...]:
    try:
        return jsonrpc.parse_answer(line, request_id)
    except jsonrpc.FramingError as exc:
        return ("error", str(exc), exc.id, exc.salvaged_id)


LINES = [
    b'{"jsonrpc":"2.0","id":7,"result":{"content":[]}}\n',  # the answer
    b'{"jsonrpc":"2.0","id":7,"result":null}',  # a null result is a result
    b'{"id":7,"result":1,"jsonrpc":"2.0"}',  # any key order
    b'{"jsonrpc":"2.0","id":8,"result":1}',  # another call's
    b'{"jsonrpc":"2.0","id":"7","result":1}',  # "7" is not 7
    b'{"jsonrpc":"2.0","id":true,"result":1}',  # True == 1 in Python, not in JSON-RPC
    b'{"jsonrpc":"2.0","id":7.0,"result":1}',  # 7.0 == 7 in Python, not an id
    b'{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}',
    b'{"jsonrpc":"2.0","id":7,"result":1,"error":{"code":-1,"message":"no"}}',
    b'{"jsonrpc":"2.0","id":7,"method":"ping","result":1}',  # a request, whatever else
    b'{"jsonrpc":"2.0","id":7,"method":"ping"}',
    b'{"jsonrpc":"2.0","method":"notifications/progress","params":{}}',
    b'{"jsonrpc":"1.0","id":7,"result":1}',
    b'{"id":7,"result":1}',
    b'{"jsonrpc":"2.0","id":7}',
    b'{"jsonrpc":"2.0","result":1}',
    b'[{"jsonrpc":"2.0","id":7,"result":1}]',
    b'"text"', b"7", b"null", b"{", b'{"jsonrpc":"2.0","id":7,"result":1} x',
    b'{"jsonrpc":"2.0","id":7,"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"jsonrpc":"2.0","id":7,"result":1' + b"0" * 5000 + b"}",
    b'{"jsonrpc":"2.0","id":7,"result":"\xff"}',
]


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("request_id", [7, "7"])
def test_parse_answer_agrees_with_parse_line(line: bytes, request_id: jsonrpc.RequestId
                                             ) -> None:
    assert actual(line, request_id) == expected(line, request_id)


def test_the_answer_is_taken_and_anything_else_handed_back() -> None:
    assert jsonrpc.parse_answer(LINES[0], 7) == (True, {"content": []})
    taken, message = jsonrpc.parse_answer(LINES[3], 7)
    assert not taken and message == jsonrpc.Response(8, 1)
    taken, message = jsonrpc.parse_answer(LINES[11], 7)
    assert not taken and message == jsonrpc.Notification("notifications/progress", {})
    with pytest.raises(jsonrpc.FramingError, match="must be a string or an integer"):
        jsonrpc.parse_answer(LINES[5], 1)  # a boolean id is no id, even for 1


ID = st.one_of(st.integers(-3, 3), st.sampled_from(["1", "", "x"]), st.booleans(), st.none(),
               st.floats(-1, 1), st.lists(st.integers(), max_size=1))
VALUE = st.one_of(st.none(), st.integers(), st.text(max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "id": ID, "result": VALUE,
    "method": st.sampled_from(["ping", "", 3]), "params": VALUE,
    "error": st.one_of(VALUE, st.fixed_dictionaries({"code": st.integers(), "message": st.text(
        max_size=3)})),
})


@settings(max_examples=500, deadline=None)
@given(FIELDS, st.sampled_from([0, 1, -1, "1", "x"]))
def test_any_message_is_read_as_parse_line_reads_it(fields: dict[str, Any],
                                                    request_id: jsonrpc.RequestId) -> None:
    line = json.dumps(fields, separators=(",", ":")).encode() + b"\n"
    assert actual(line, request_id) == expected(line, request_id)
