"""A caller reads its own answer when nobody else reads the server's stdout (one wake-up per
call instead of two), and nothing the server writes is lost or left unread because of it.

Real child processes: a small stdlib server written here, answering each request on a thread
of its own (so answers may come out of order), and sending notifications when asked.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

import sark_sync
from sark_sync.transports import _stdio_baton
from sark_sync.transports.stdio import StdioTransport
from sark_sync.wire import jsonrpc

SERVER = r'''
import json, os, sys, threading, time
lock = threading.Lock()
def send(message):
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
def handle(request):
    method, params, rid = request["method"], request.get("params") or {}, request["id"]
    if method == "notify_then_answer":
        send({"jsonrpc": "2.0", "method": "notifications/note", "params": {"n": params["n"]}})
    elif method == "sleep":
        time.sleep(params["ms"] / 1000.0)
    elif method == "exit":
        os._exit(7)
    elif method == "hang":
        return
    elif method == "fail":
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32001, "message": "no"}})
        return
    elif method == "other_id_first":
        send({"jsonrpc": "2.0", "id": rid + 1000, "result": {"stray": True}})
    elif method == "trickle":
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"x": "y" * 200}}) + "\n"
        with lock:  # the whole line, so that no other answer lands inside it
            for char in line:
                sys.stdout.write(char)
                sys.stdout.flush()
                time.sleep(0.005)
        return
    send({"jsonrpc": "2.0", "id": rid, "result": params})
    if method == "answer_then_notify":
        time.sleep(params["after"])
        send({"jsonrpc": "2.0", "method": "notifications/late", "params": {}})
for line in sys.stdin:
    threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
'''


@pytest.fixture
def server_path(tmp_path: Path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def notes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def transport(server_path: Path, notes: list[tuple[str, str]]) -> Iterator[StdioTransport]:
    def on_notification(message: jsonrpc.Notification) -> None:
        notes.append((message.method, threading.current_thread().name))

    channel = StdioTransport([sys.executable, str(server_path)], name="baton",
                             on_notification=on_notification)
    channel.start()
    try:
        yield channel
    finally:
        channel.close()


def test_back_to_back_calls_read_their_own_answers(
        transport: StdioTransport, notes: list[tuple[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader thread leaves the pipe to callers for LINGER after the last one read: made
    # long here, so that a slow machine's pause between two calls cannot hand it back.
    monkeypatch.setattr(_stdio_baton, "LINGER", 30.0)
    for n in range(20):
        assert transport.request("notify_then_answer", {"n": n}, 10.0) == {"n": n}
    caller = threading.current_thread().name
    # The first answer may be the reader thread's (it holds the pipe at start); once it has
    # handed the pipe over, each call reads its notification and its answer itself.
    assert len(notes) == 20
    assert [thread for _, thread in notes[1:]] == [caller] * 19


def test_a_whole_answer_in_one_read_is_taken_in_place_without_the_table(
        transport: StdioTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call whose answer comes as one whole line in one read takes it where it reads it:
    no entry in the table of awaited answers, no splitter, no dispatch (issue 16)."""
    monkeypatch.setattr(_stdio_baton, "LINGER", 30.0)  # the pipe stays the callers'
    transport.request("sleep", {"ms": 0}, 10.0)
    enlisted: list[int] = []
    enlist = transport._calls.enlist
    monkeypatch.setattr(transport._calls, "enlist",
                        lambda rid: enlisted.append(rid) or enlist(rid))
    for n in range(50):
        assert transport.request("sleep", {"ms": 0, "n": n}, 10.0) == {"ms": 0, "n": n}
    assert enlisted == [] and transport._calls.pending == {}


def test_what_is_not_the_callers_own_answer_goes_the_general_way(
        transport: StdioTransport, notes: list[tuple[str, str]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A caller reading in place meets a notification, an answer to another id, an error
    answer: each is dispatched as the reader thread would, and the call still gets its own
    answer (or error), leaving nothing in the table."""
    monkeypatch.setattr(_stdio_baton, "LINGER", 30.0)
    caplog.set_level(logging.DEBUG, logger="sark_sync.stdio")
    transport.request("sleep", {"ms": 0}, 10.0)
    for n in range(5):
        assert transport.request("notify_then_answer", {"n": n}, 10.0) == {"n": n}
        assert transport.request("other_id_first", {"n": n}, 10.0) == {"n": n}
        with pytest.raises(sark_sync.RPCError) as caught:
            transport.request("fail", {}, 10.0)
        assert caught.value.code == -32001 and caught.value.rpc_message == "no"
    assert len(notes) == 5 and transport._calls.pending == {}
    strays = [r for r in caplog.records if "answered unknown or abandoned request" in r.message]
    assert len(strays) == 5


def test_a_notification_sent_between_calls_is_read(
        transport: StdioTransport, notes: list[tuple[str, str]]) -> None:
    for _ in range(3):
        transport.request("sleep", {"ms": 0}, 10.0)
    transport.request("answer_then_notify", {"after": 0.2}, 10.0)
    wait_for(lambda: ("notifications/late", "sark-sync-stdio-baton-reader") in notes, 5.0,
             what=lambda: f"the late notification read by the reader thread: {notes}")


def test_threads_sharing_the_pipe_each_get_their_answer(transport: StdioTransport) -> None:
    errors: list[BaseException] = []
    slowest: list[float] = []

    def work(worker: int) -> None:
        try:
            for call in range(40):
                params = {"ms": (worker * 7 + call * 3) % 5, "worker": worker, "call": call}
                started = time.monotonic()
                assert transport.request("sleep", params, 10.0) == params
                slowest.append(time.monotonic() - started)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(slowest) == 320
    assert max(slowest) < 5.0  # nobody waited for a reader that never came


def test_a_caller_reading_sees_the_exit_at_once(transport: StdioTransport) -> None:
    transport.request("sleep", {"ms": 0}, 10.0)  # the pipe is the callers' now
    started = time.monotonic()
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        transport.request("exit", {}, 30.0)
    assert time.monotonic() - started < 5.0
    assert caught.value.returncode == 7


def test_close_stops_a_caller_reading(transport: StdioTransport) -> None:
    transport.request("sleep", {"ms": 0}, 10.0)
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            transport.request("hang", {}, 30.0)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=hang)
    thread.start()
    proc: Any = transport._proc  # a call answered in place is not in the table: it reads
    wait_for(lambda: transport._calls.pending or proc._baton.lock.locked(), 5.0,
             what="the hanging call in flight")
    started = time.monotonic()
    transport.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 10.0
    assert isinstance(outcome[0], sark_sync.ProcessExitedError)


def test_close_leaves_the_fds_to_a_caller_holding_the_pipe_until_it_gives_it_back(
        transport: StdioTransport, caplog: pytest.LogCaptureFixture) -> None:
    """close() never closes stdout under a caller reading it: it finds the baton taken and
    leaves the closing to that caller, who closes when it gives the pipe back."""
    transport.request("sleep", {"ms": 0}, 10.0)  # the pipe is the callers' now
    proc: Any = transport._proc
    assert proc.take_pipe()  # as a caller between its write and its read
    with caplog.at_level(logging.WARNING, logger="sark_sync.stdio"):
        transport.close()  # the reader thread gives up on the pipe after STOP_TAKE_TIMEOUT
    assert not proc.process.stdout.closed and proc.pidfd >= 0
    proc.give_pipe()
    assert proc.process.stdout.closed and proc.process.stderr.closed and proc.pidfd == -1
    assert not proc.take_pipe()  # closed: the baton is kept for good
    assert "kept reading its stdout past close()" in caplog.text


def test_a_trickling_answer_cannot_hold_a_reading_caller_past_its_deadline(
        transport: StdioTransport) -> None:
    transport.request("sleep", {"ms": 0}, 10.0)
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout):
        transport.request("trickle", {}, 0.5)
    assert time.monotonic() - started < 2.0
    # The rest of the trickled line is read (and dropped as abandoned) by whoever reads next.
    assert transport.request("sleep", {"ms": 0, "after": "trickle"}, 10.0) == {
        "ms": 0, "after": "trickle"}


def test_a_parked_reader_thread_ends_with_close(server_path: Path) -> None:
    channel = StdioTransport([sys.executable, str(server_path)], name="parked")
    channel.start()
    channel.request("sleep", {"ms": 0}, 10.0)  # the reader thread parks
    started = time.monotonic()
    channel.close()
    assert time.monotonic() - started < 3.0
    proc: Any = channel._proc
    assert not any(thread.is_alive() for thread in proc.threads)


def test_answers_read_by_a_caller_keep_their_json(transport: StdioTransport) -> None:
    params = {"text": "é\u2028" * 1000, "nested": [[[1]]]}
    transport.request("sleep", {"ms": 0}, 10.0)
    assert transport.request("echo", params, 10.0) == json.loads(json.dumps(params))
