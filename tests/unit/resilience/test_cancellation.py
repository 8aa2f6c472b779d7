"""The cancellation token and submit's cancellable future (no socket: the MCP channels that
use them are tested in tests/integration/transports/test_cancel_submitted.py)."""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import pytest

import sark_sync
from sark_sync.client._submit import CallFuture, submit
from sark_sync.resilience import CancelToken, cancellable, cancels, current_cancellation
from sark_sync.testing import MockResponse, MockTransport

pytestmark = pytest.mark.timeout(30)


def test_cancel_runs_each_registered_callback_once_and_late_ones_at_once() -> None:
    token = CancelToken()
    seen: list[str] = []
    token.on_cancel(lambda: seen.append("a"))
    forget = token.on_cancel(lambda: seen.append("forgotten"))
    forget()
    token.cancel()
    token.cancel()
    assert token.cancelled and seen == ["a"]
    token.on_cancel(lambda: seen.append("late"))()  # already cancelled: runs now
    assert seen == ["a", "late"]


def test_cancels_registers_for_the_block_only_and_accepts_none() -> None:
    token = CancelToken()
    seen: list[int] = []
    with cancels(token, lambda: seen.append(1)):
        pass
    with cancels(None, lambda: seen.append(2)):
        pass
    token.cancel()
    assert seen == []


def test_the_scope_is_the_block_and_the_thread() -> None:
    token = CancelToken()
    other: list[object] = []
    with cancellable(token):
        assert current_cancellation() is token
        thread = threading.Thread(target=lambda: other.append(current_cancellation()))
        thread.start()
        thread.join(5)
    assert current_cancellation() is None and other == [None]


def blocking_submit(executor: ThreadPoolExecutor) -> tuple[CallFuture[str], threading.Event,
                                                           threading.Event]:
    """A cancellable call that blocks until its token fires (as a channel's request does)."""
    started, aborted = threading.Event(), threading.Event()

    def work() -> str:
        token = current_cancellation()
        assert token is not None
        with cancels(token, aborted.set):
            started.set()
            aborted.wait(10)
        return "finished anyway"  # its result is dropped: the future was cancelled

    future = submit(executor, True, work)
    assert isinstance(future, CallFuture)
    assert started.wait(5)
    return future, started, aborted


def test_a_running_call_is_cancelled_at_once_and_its_waiters_and_callbacks_see_it() -> None:
    with ThreadPoolExecutor(1) as executor:
        future, _, aborted = blocking_submit(executor)
        done: list[Any] = []
        future.add_done_callback(done.append)
        waiting = ThreadPoolExecutor(1)
        try:
            waited = waiting.submit(concurrent.futures.wait, [future], 5)
            assert future.running()
            assert future.cancel() is True
            assert future.cancelled() and future.done() and not future.running()
            assert aborted.wait(5)
            assert done == [future]
            finished, not_done = waited.result(5)
            assert finished == {future} and not_done == set()
        finally:
            waiting.shutdown()
        with pytest.raises(CancelledError):
            future.result(timeout=0)
        assert future.cancel() is True  # again: still cancelled
        # The worker's late result is dropped without error; the worker is free.
        assert executor.submit(lambda: "next").result(5) == "next"


def test_a_finished_call_cannot_be_cancelled() -> None:
    with ThreadPoolExecutor(1) as executor:
        future = submit(executor, True, lambda: "done")
        assert future.result(5) == "done"
        assert future.cancel() is False and not future.cancelled()


def test_an_exception_of_the_call_reaches_the_future() -> None:
    with ThreadPoolExecutor(1) as executor:
        future = submit(executor, True, lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            future.result(5)


def test_a_gateway_call_keeps_the_executors_future_cancel_returns_false_while_running(
) -> None:
    entered, release = threading.Event(), threading.Event()

    def handler(request: Any) -> MockResponse:
        entered.set()
        release.wait(10)
        return MockResponse(200, json={"success": True, "result": {"ok": 1}})

    with sark_sync.GatewayClient("http://127.0.0.1:9", audit=[], max_workers=1,
                                 transport=MockTransport(handler)) as client:
        future = client.submit("demo", "echo", {"text": "x"})
        assert not isinstance(future, CallFuture)
        assert entered.wait(5)
        assert future.cancel() is False
        release.set()
        assert future.result(5).tool == "echo" and not future.cancelled()
