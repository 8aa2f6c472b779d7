"""The read baton's rules (:mod:`sark_sync.transports._stdio_baton`): whoever gives the pipe
back while answers are awaited makes sure somebody reads, and the reader thread parks only
while callers read for themselves."""

from __future__ import annotations

import threading
import time

import pytest

from sark_sync.transports import _stdio_baton
from sark_sync.transports._stdio_baton import ReadBaton


class Awaited:
    """How many answers are awaited, as the transport's table says."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


def test_a_caller_takes_the_baton_only_when_free() -> None:
    baton = ReadBaton(Awaited())
    assert baton.try_take()
    assert not baton.try_take()
    baton.caller_done()
    assert baton.try_take()


def test_the_reader_keeps_reading_while_answers_are_awaited() -> None:
    awaited = Awaited()
    baton = ReadBaton(awaited)
    assert baton.try_take()
    awaited.count = 2
    assert baton.reader_yields() is True
    assert not baton.try_take()  # still the reader's


def test_the_reader_lets_go_when_nothing_is_awaited() -> None:
    baton = ReadBaton(Awaited())
    assert baton.try_take()
    assert baton.reader_yields() is False
    assert baton.try_take()  # a caller may read now


def test_a_request_registered_as_the_reader_lets_go_keeps_it_reading() -> None:
    """The race the rule closes: a caller registers its request and fails to take the baton
    just before the reader lets go; the reader's second look sees the request."""
    calls = iter([0, 1])
    baton = ReadBaton(lambda: next(calls))
    assert baton.try_take()
    assert baton.reader_yields() is True
    assert not baton.try_take()


def test_a_caller_leaving_answers_unread_wakes_the_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stdio_baton, "LINGER", 30.0)
    awaited = Awaited()
    baton = ReadBaton(awaited)
    assert baton.try_take()
    baton.caller_done()  # at LINGER 30 s, nothing would wake the parked reader now
    taken = threading.Event()

    def reader() -> None:
        if baton.reader_takes(lambda: False):
            taken.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert baton.try_take()  # a caller reads
        awaited.count = 1  # another caller's request, unread when this one leaves
        started = time.monotonic()
        baton.caller_done()
        assert taken.wait(5.0)
        assert time.monotonic() - started < 5.0
    finally:
        baton.wake()
        thread.join(5.0)


def test_the_parked_reader_takes_the_pipe_back_after_linger(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stdio_baton, "LINGER", 0.05)
    baton = ReadBaton(Awaited())
    assert baton.try_take()
    baton.caller_done()
    started = time.monotonic()
    assert baton.reader_takes(lambda: False)
    assert 0.04 <= time.monotonic() - started < 5.0
    assert not baton.try_take()


def test_a_stopping_reader_waits_a_bounded_time_for_a_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stdio_baton, "STOP_TAKE_TIMEOUT", 0.1)
    baton = ReadBaton(Awaited())
    assert baton.try_take()  # a caller that never gives the pipe back
    started = time.monotonic()
    assert baton.reader_takes(lambda: True) is False
    assert time.monotonic() - started < 5.0


def test_after_fork_the_baton_is_free() -> None:
    baton = ReadBaton(Awaited())
    assert baton.try_take()
    baton.after_fork()
    assert baton.try_take()
