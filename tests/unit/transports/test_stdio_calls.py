"""The table of stdio calls (:class:`sark_sync.transports._stdio_calls.CallTable`): when a caller
may take a chunk as its own answer in place, and what everything else does."""

from __future__ import annotations

from typing import Any

import pytest

import sark_sync
from sark_sync.transports._stdio_calls import CallTable
from sark_sync.wire import jsonrpc

ANSWER = b'{"jsonrpc":"2.0","id":7,"result":{"ok":true}}\n'


def table(max_line_bytes: int = 1024) -> tuple[CallTable, list[Any]]:
    seen: list[Any] = []
    calls = CallTable("t", max_line_bytes, on_request=seen.append,
                      on_notification=seen.append,
                      refuse=lambda *args: seen.append(("refused", *args)))
    return calls, seen


def test_one_whole_line_answering_the_call_is_its_result() -> None:
    calls, _ = table()
    assert calls.own_answer(ANSWER, 7) == (True, {"ok": True})
    assert calls.own_answer(ANSWER.replace(b"\n", b"\r\n"), 7) == (True, {"ok": True})
    assert calls.pending == {}


@pytest.mark.parametrize("chunk, why", [
    (ANSWER[:-1], "no newline: the rest is still to come"),
    (ANSWER + ANSWER, "two lines"),
    (ANSWER[:10] + b"\n", "not JSON"),
    (b"\n", "a blank line"),
    (b'{"jsonrpc":"2.0","id":7,"result":{"x":"' + b"y" * 2000 + b'"}}\n', "over the cap"),
])
def test_anything_but_one_whole_parsed_line_is_left_to_the_splitter(chunk: bytes, why: str
                                                                     ) -> None:
    calls, _ = table()
    assert calls.own_answer(chunk, 7) == (False, None), why


@pytest.mark.parametrize("chunk, kind", [
    (b'{"jsonrpc":"2.0","id":8,"result":{}}\n', jsonrpc.Response),  # another call's
    (b'{"jsonrpc":"2.0","id":"7","result":{}}\n', jsonrpc.Response),  # "7" is not 7
    (b'{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}\n', jsonrpc.ErrorResponse),
    (b'{"jsonrpc":"2.0","method":"notifications/x"}\n', jsonrpc.Notification),
    (b'{"jsonrpc":"2.0","id":7,"method":"ping"}\n', jsonrpc.Request),  # the server's own id 7
])
def test_a_whole_line_that_is_not_the_answer_is_handed_back_parsed(chunk: bytes, kind: type
                                                                    ) -> None:
    calls, _ = table()
    answered, message = calls.own_answer(chunk, 7)
    assert answered is False and type(message) is kind


def test_a_line_finishing_one_the_splitter_holds_is_not_taken_as_an_answer() -> None:
    """After part of a line was read (a trickling server, a call cut by its deadline), the next
    chunk ends that line: on its own it may look like a whole answer, but it is not one."""
    calls, _ = table()
    calls.feed(b'{"jsonrpc":"2.0","id":6,"result":')
    assert calls.own_answer(ANSWER, 7) == (False, None)
    pending = calls.enlist(7)
    calls.feed(ANSWER)  # the splitter joins it to the held part: one line, not JSON
    assert not pending.done


def test_errors_and_requests_handed_back_are_dispatched_as_the_reader_would() -> None:
    calls, seen = table()
    pending = calls.enlist(7)
    error = b'{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"no"}}\n'
    calls.handle(calls.own_answer(error, 7)[1])
    assert pending.done and isinstance(pending.error, sark_sync.RPCError)
    assert pending.error.code == -32001 and calls.pending == {}
    calls.handle(calls.own_answer(b'{"jsonrpc":"2.0","id":3,"method":"ping"}\n', 7)[1])
    calls.handle(calls.own_answer(b'{"jsonrpc":"2.0","method":"n"}\n', 7)[1])
    assert [type(m) for m in seen] == [jsonrpc.Request, jsonrpc.Notification]


def test_a_failed_table_refuses_new_calls_with_its_error() -> None:
    calls, _ = table()
    waiting = calls.enlist(1)
    calls.fail_all(sark_sync.ProcessExitedError("gone", server="t"))
    assert isinstance(waiting.error, sark_sync.ProcessExitedError)
    with pytest.raises(sark_sync.ProcessExitedError, match="gone"):
        calls.enlist(2)
    calls.forget(1)
    assert calls.pending == {}


@pytest.mark.parametrize("chunk", [
    b'{"jsonrpc":"2.0","id":7,"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    b'{"jsonrpc":"2.0","id":7,"result":{"n":' + b"9" * 5000 + b"}}\n",
], ids=["100000-deep", "5000-digit-int"])
def test_an_answer_the_decoder_refuses_fails_its_call_with_protocol_error(chunk: bytes
                                                                          ) -> None:
    """A whole line that cannot be decoded is not taken in place: the general reading fails
    the call whose id it carries, at once, and nothing else is raised."""
    calls, _ = table(max_line_bytes=1024 * 1024)
    assert calls.own_answer(chunk, 7) == (False, None)
    pending = calls.enlist(7)
    calls.feed(chunk)
    assert pending.done and isinstance(pending.error, sark_sync.ProtocolError)
    assert calls.pending == {}
