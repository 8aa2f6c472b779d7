"""Progress and cancellation without a socket: the token, the error, the progress relay, an MCP
session over an in-memory channel, and the client's pipeline over a MockTransport (a gateway
server: progress is never called, a cancelled token stops the call before it is sent or while
it waits to retry). The MCP channels over real pipes and sockets are tested in
tests/integration/transports/test_mcp_client_progress.py."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError
from typing import Any, Callable, Optional

import pytest
from support import wait_for

import sark_sync
from sark_sync import CallCancelled
from sark_sync.governance import CallableSink
from sark_sync.resilience import (
    CANCEL_WRITE_TIMEOUT,
    MAX_REASON_CHARS,
    CancelToken,
    cancellable,
    cancelled_error,
    cancels,
    current_cancellation,
    interruptible,
    is_counted_failure,
    is_server_answer,
    mark_unsent,
    retryable,
    sent_reason,
    tell_cancelled,
)
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import _mcp_callbacks
from sark_sync.transports._mcp_callbacks import CallbackRunner
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_progress import (
    MAX_PROGRESS_MESSAGE_CHARS,
    PROGRESS_FLUSH_TIMEOUT,
    ProgressRelay,
)
from sark_sync.wire import jsonrpc

pytestmark = pytest.mark.timeout(30)

UNUSED_GATEWAY = "http://127.0.0.1:9"
#: Generous bound on how long a cancelled call may take to return (a bound, not a benchmark).
FREED_BOUND = 2.0
Progress = tuple[float, Optional[float], Optional[str]]


def ok(_: Any) -> MockResponse:
    return MockResponse(200, json={"success": True, "result": {"ok": 1}})


# -- CancelToken ----------------------------------------------------------------------------------


def test_cancel_runs_each_callback_once_in_order_with_the_first_reason() -> None:
    assert sark_sync.CancelToken is CancelToken  # the public name
    token = CancelToken()
    seen: list[tuple[str, str | None]] = []
    token.on_cancel(lambda: seen.append(("a", token.reason)))
    forget = token.on_cancel(lambda: seen.append(("forgotten", None)))
    token.on_cancel(lambda: seen.append(("b", token.reason)))
    forget()
    assert not token.cancelled and token.reason is None and repr(token) == "<CancelToken active>"
    token.cancel("user left")
    token.cancel("again")
    assert seen == [("a", "user left"), ("b", "user left")]
    assert token.cancelled and token.reason == "user left"
    assert repr(token) == "<CancelToken cancelled>"
    token.on_cancel(lambda: seen.append(("late", token.reason)))()  # runs now; unregister: no-op
    assert seen[-1] == ("late", "user left")


def test_a_raising_callback_is_logged_and_the_others_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    token = CancelToken()
    seen: list[int] = []

    def broken() -> None:
        raise RuntimeError("callback bug")

    token.on_cancel(broken)
    token.on_cancel(lambda: seen.append(2))
    with caplog.at_level(logging.ERROR, logger="sark_sync.resilience._cancellation"):
        token.cancel()
    assert seen == [2]
    assert [r.getMessage() for r in caplog.records] == ["a cancellation callback raised"]


@pytest.mark.parametrize("reason", [5, b"bytes", "x" * (MAX_REASON_CHARS + 1)])
def test_a_reason_must_be_a_short_str_and_a_refused_one_cancels_nothing(reason: Any) -> None:
    token = CancelToken()
    with pytest.raises(sark_sync.ValidationError, match="reason must be a str"):
        token.cancel(reason)
    assert not token.cancelled
    token.cancel("x" * MAX_REASON_CHARS)
    assert token.reason == "x" * MAX_REASON_CHARS


def test_on_cancel_refuses_what_it_cannot_call() -> None:
    with pytest.raises(sark_sync.ValidationError, match="callback must be callable"):
        CancelToken().on_cancel("not callable")  # type: ignore[arg-type]


def test_wait_returns_when_another_thread_cancels() -> None:
    token = CancelToken()
    assert token.wait(0) is False
    threading.Thread(target=token.cancel, args=("stop",)).start()
    assert token.wait(10) is True and token.reason == "stop"


def test_concurrent_cancels_run_each_callback_exactly_once() -> None:
    token = CancelToken()
    calls: list[int] = []
    for index in range(20):
        token.on_cancel(lambda index=index: calls.append(index))  # type: ignore[misc]
    barrier = threading.Barrier(8)

    def cancel() -> None:
        barrier.wait(5)
        token.cancel()

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert calls == list(range(20))


def test_a_scope_inside_another_is_cancelled_by_either_token_and_unlinked_after() -> None:
    for which in ("outer", "inner"):
        outer, inner = CancelToken(), CancelToken()
        with cancellable(outer):
            with cancellable(inner) as scope:
                assert scope is current_cancellation() and scope not in (outer, inner)
                (outer if which == "outer" else inner).cancel(which)
                assert scope is not None and scope.cancelled and scope.reason == which
            assert current_cancellation() is outer
        assert current_cancellation() is None
    outer, inner = CancelToken(), CancelToken()
    with cancellable(outer), cancellable(inner) as scope:
        pass
    outer.cancel()
    assert scope is not None and not scope.cancelled  # unlinked when the block ended


def test_cancellable_none_keeps_the_enclosing_scope() -> None:
    token = CancelToken()
    with cancellable(token), cancellable(None) as scope:
        assert scope is token is current_cancellation()


def test_a_retry_wait_sleeps_as_asked_without_a_token_and_ends_at_a_cancel() -> None:
    slept: list[float] = []
    wait = interruptible(slept.append)
    wait(0.5)
    assert slept == [0.5]
    token = CancelToken()
    with cancellable(token):
        wait(0.0)  # not cancelled: returns after the wait
        threading.Timer(0.05, token.cancel, args=("bye",)).start()
        started = time.monotonic()
        with pytest.raises(CallCancelled) as caught:
            wait(30.0)
    assert time.monotonic() - started < FREED_BOUND
    assert caught.value.reason == "bye" and "while waiting to retry" in caught.value.message
    assert slept == [0.5]  # the token's wait, not the injected sleep


# -- CallCancelled --------------------------------------------------------------------------------


def test_call_cancelled_is_a_gateway_error_and_a_cancelled_error_and_pickles() -> None:
    token = CancelToken()
    error = cancelled_error("srv", "tools/call", token)
    error._with(tool="slow")
    token.cancel("user left")
    assert sent_reason(error, token) == "user left"  # what notifications/cancelled carries
    assert sent_reason(cancelled_error("srv", "m"), CancelToken()) == "cancelled"
    assert isinstance(error, sark_sync.GatewayError) and isinstance(error, CancelledError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CallCancelled
    assert (copy.message, copy.server, copy.tool, copy.method, copy.reason) == (
        "tools/call to MCP server 'srv' was cancelled", "srv", "slow", "tools/call",
        "user left")
    assert str(copy) == ("tools/call to MCP server 'srv' was cancelled "
                         "(method=tools/call, server=srv, tool=slow)")


def test_a_cancel_is_never_retried_nor_counted_by_a_breaker() -> None:
    policy = sark_sync.RetryPolicy()
    error = mark_unsent(CallCancelled("cancelled"))  # even one that never left
    assert retryable(error, idempotent=True, policy=policy) is False
    assert is_counted_failure(CallCancelled, error) is False
    assert is_server_answer(error) is False


def test_telling_the_server_waits_briefly_for_the_pipe_and_never_raises() -> None:
    """Another writer may hold the pipe for a moment (the caller's next request, sent as
    soon as cancel() returned): the notification waits for it, within a bound."""
    sent: list[tuple[str, Any, float]] = []

    def notify(method: str, params: Any, timeout: float) -> None:
        sent.append((method, params, timeout))
        raise sark_sync.TransportTimeout("stdin busy")

    tell_cancelled(notify, 7, "user left")
    assert sent == [("notifications/cancelled", {"requestId": 7, "reason": "user left"},
                     CANCEL_WRITE_TIMEOUT)]
    assert 0 < CANCEL_WRITE_TIMEOUT <= 0.1


# -- the progress relay ---------------------------------------------------------------------------


def relay() -> tuple[ProgressRelay, CallbackRunner]:
    runner = CallbackRunner("relay-test")
    return ProgressRelay("relay-test", runner), runner


def test_progress_runs_in_order_on_the_callbacks_thread_and_before_the_block_ends() -> None:
    progress, runner = relay()
    seen: list[tuple[Progress, str]] = []

    def handler(value: float, total: float | None, message: str | None) -> None:
        time.sleep(0.001)  # slower than the reader: the queue must keep the order
        seen.append(((value, total, message), threading.current_thread().name))

    params: dict[str, Any] = {"name": "t", "_meta": {"kept": 1}}
    try:
        with progress.tracking(params, handler):
            token = params["_meta"]["progressToken"]
            assert params["_meta"]["kept"] == 1
            for step in range(1, 51):
                progress.deliver({"progressToken": token, "progress": step, "total": 50,
                                  "message": f"step {step}"})
        assert [s[0] for s in seen] == [(float(n), 50.0, f"step {n}") for n in range(1, 51)]
        assert {s[1] for s in seen} == {"sark-sync-mcp-relay-test-callbacks"}
        progress.deliver({"progressToken": token, "progress": 99})  # the call is over
        with progress.tracking({}, handler):
            pass
        assert len(seen) == 50
    finally:
        runner.close()


def test_hostile_progress_values_are_skipped_or_cleaned(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    progress, runner = relay()
    seen: list[Progress] = []
    params: dict[str, Any] = {}
    try:
        with caplog.at_level(logging.WARNING, logger="sark_sync.mcp"), \
                progress.tracking(params, lambda *a: seen.append(a)):
            token = params["_meta"]["progressToken"]
            for bad in ("1", None, True, float("nan"), float("inf"), 10 ** 400, [1], {}):
                progress.deliver({"progressToken": token, "progress": bad})
            for other in (1, None, ["x"], token + "x"):
                progress.deliver({"progressToken": other, "progress": 1})
            progress.deliver({"progressToken": token, "progress": 1, "total": "ten",
                              "message": 7})
            progress.deliver({"progressToken": token, "progress": 2, "total": float("nan"),
                              "message": "m" * (MAX_PROGRESS_MESSAGE_CHARS * 3)})
            progress.deliver({"progressToken": token, "progress": 3.5, "total": 4})
        assert seen == [(1.0, None, None), (2.0, None, "m" * MAX_PROGRESS_MESSAGE_CHARS),
                        (3.5, 4.0, None)]
        skipped = [r for r in caplog.records if "without a numeric progress" in r.getMessage()]
        assert len(skipped) == 8
    finally:
        runner.close()


def test_the_callbacks_thread_ends_when_idle_and_the_next_callback_starts_it_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived session that got progress once holds no thread afterwards."""
    monkeypatch.setattr(_mcp_callbacks, "CALLBACKS_IDLE_EXIT", 0.05)
    runner = CallbackRunner("idle-test")
    try:
        for _ in range(2):
            done = threading.Event()
            assert runner.submit(done.set)
            assert done.wait(10)
            wait_for(lambda: not runner.running, timeout=10, what="the idle thread to end")
    finally:
        runner.close()
    assert runner.dropped == 0


def test_a_failed_call_does_not_wait_for_its_progress_callbacks() -> None:
    """A cancelled or timed-out call frees its caller at once, even while a progress
    callback blocks (it runs later, on the callbacks thread)."""
    progress, runner = relay()
    release, entered = threading.Event(), threading.Event()

    def handler(value: float, total: float | None, message: str | None) -> None:
        entered.set()
        release.wait(10)

    params: dict[str, Any] = {}
    try:
        started = time.monotonic()
        with pytest.raises(CallCancelled), progress.tracking(params, handler):
            progress.deliver({"progressToken": params["_meta"]["progressToken"],
                              "progress": 1})
            assert entered.wait(10)
            raise CallCancelled("cancelled")
        assert time.monotonic() - started < PROGRESS_FLUSH_TIMEOUT / 2  # did not flush
    finally:
        release.set()
        runner.close()


def test_a_raising_progress_callback_does_not_stop_the_next_ones() -> None:
    progress, runner = relay()
    seen: list[float] = []

    def handler(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)
        if value == 1:
            raise RuntimeError("user bug")

    params: dict[str, Any] = {}
    try:
        with progress.tracking(params, handler):
            for step in (1, 2, 3):
                progress.deliver({"progressToken": params["_meta"]["progressToken"],
                                  "progress": step})
        assert seen == [1.0, 2.0, 3.0]
    finally:
        runner.close()


# -- an MCP session over an in-memory channel -----------------------------------------------------


class Channel:
    """Answers ``tools/call`` after ``before(params)`` ran on a thread of its own (the
    "reader"); records what was sent. With ``block``, waits to be cancelled as the stdio
    channel does: the call's token fails the wait."""

    def __init__(self, session: Callable[[], McpSession],
                 before: Callable[[Mapping[str, Any]], None] | None = None,
                 block: bool = False, on_list: Callable[[], None] | None = None) -> None:
        self.session, self.before, self.block, self.on_list = session, before, block, on_list
        self.sent: list[tuple[str, Any]] = []
        self.alive = True
        self.waiting = threading.Event()

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append((method, params))
        if method == "tools/list":
            if self.on_list is not None:
                self.on_list()
            return {"tools": [{"name": "t", "inputSchema": {"type": "object"}}]}
        token = current_cancellation()
        if self.block:
            aborted = threading.Event()
            with cancels(token, aborted.set):
                self.waiting.set()
                aborted.wait(timeout)
            assert token is not None
            raise cancelled_error("mem", method, token)
        if self.before is not None:
            reader = threading.Thread(target=self.before, args=(params,),
                                      name="fake-reader")
            reader.start()
            reader.join(10)
        return {"content": [{"type": "text", "text": "done"}]}

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = 1.0) -> None:
        self.sent.append((method, params))

    def start(self) -> None:
        pass

    def respond(self, request_id: str | int, result: Any) -> None:
        pass

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        pass

    def close(self) -> None:
        self.alive = False


class Session(McpSession):
    kind = "in-memory server"

    def __init__(self, **channel: Any) -> None:
        super().__init__("mem", timeout=10.0, on_notification=None)
        self._channel = self.channel = Channel(lambda: self, **channel)

    def close(self) -> None:
        self._stop_callbacks()


def test_a_session_call_delivers_every_progress_in_order_before_it_returns() -> None:
    seen: list[tuple[Progress, str]] = []

    def reader(params: Mapping[str, Any]) -> None:
        token = params["_meta"]["progressToken"]
        for step in range(1, 21):
            session._on_notification_message(jsonrpc.Notification(
                "notifications/progress", {"progressToken": token, "progress": step,
                                           "total": 20, "message": f"s{step}"}))

    session = Session(before=reader)
    try:
        result = session.call_tool("t", {}, progress=lambda *a: seen.append(
            (a, threading.current_thread().name)))
        assert result.text == "done"
        assert [s[0] for s in seen] == [(float(n), 20.0, f"s{n}") for n in range(1, 21)]
        assert {s[1] for s in seen} == {"sark-sync-mcp-mem-callbacks"}  # never the reader
    finally:
        session.close()


def test_a_session_call_with_a_cancelled_token_sends_nothing() -> None:
    session = Session()
    token = CancelToken()
    token.cancel("too late")
    try:
        with pytest.raises(CallCancelled) as caught:
            session.call_tool("t", {}, cancel=token)
        assert [m for m, _ in session.channel.sent if m == "tools/call"] == []
        assert (caught.value.reason, caught.value.server, caught.value.tool) == (
            "too late", "mem", "t")
        assert current_cancellation() is None
    finally:
        session.close()


def test_cancelling_a_session_call_frees_it_with_the_reason() -> None:
    session = Session(block=True)
    token = CancelToken()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            session.call_tool("t", {}, cancel=token)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert session.channel.waiting.wait(10)
        started = time.monotonic()
        token.cancel("user left")
        caller.join(10)
        assert time.monotonic() - started < FREED_BOUND
        assert len(outcome) == 1 and isinstance(outcome[0], CallCancelled)
        assert outcome[0].reason == "user left"
    finally:
        token.cancel()
        caller.join(10)
        session.close()


def test_a_cancel_while_the_tools_are_listed_first_sends_no_call() -> None:
    token = CancelToken()
    session = Session(on_list=lambda: token.cancel("changed my mind"))
    try:
        with pytest.raises(CallCancelled) as caught:
            session.call_tool("t", {}, cancel=token)
        assert [m for m, _ in session.channel.sent] == ["tools/list"]
        assert caught.value.reason == "changed my mind"
    finally:
        session.close()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("cancel", "token", "cancel must be a sark_sync.CancelToken or None, not str"),
    ("progress", 3, "progress must be a callable or None, not int"),
])
def test_a_session_call_checks_progress_and_cancel_before_sending(option: str, value: Any,
                                                                   message: str) -> None:
    session = Session()
    try:
        with pytest.raises(sark_sync.ValidationError, match=message):
            session.call_tool("t", {}, **{option: value})
        assert session.channel.sent == []
    finally:
        session.close()


# -- the client's pipeline, gateway servers -------------------------------------------------------


def test_a_gateway_call_accepts_progress_and_never_calls_it() -> None:
    seen: list[Any] = []
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], transport=MockTransport(ok)) as client:
        result = client.invoke_tool("demo", "echo", {}, progress=lambda *a: seen.append(a))
        assert result.tool == "echo"
        assert client.submit("demo", "echo", {}, progress=lambda *a: seen.append(a)
                             ).result(10).tool == "echo"
    assert seen == []


@pytest.mark.parametrize(("option", "value", "message"), [
    ("cancel", object(), "cancel must be a sark_sync.CancelToken or None, not object"),
    ("progress", "print", "progress must be a callable or None, not str"),
])
@pytest.mark.parametrize("method", ["invoke_tool", "submit"])
def test_the_client_checks_progress_and_cancel_before_sending(
        method: str, option: str, value: Any, message: str) -> None:
    transport = MockTransport(ok)
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], transport=transport) as client:
        with pytest.raises(sark_sync.ValidationError, match=message):
            getattr(client, method)("demo", "echo", {}, **{option: value})
    assert transport.requests == []


def test_a_call_given_a_cancelled_token_is_not_sent_but_audited_and_not_counted() -> None:
    transport, events = MockTransport(ok), []
    token = CancelToken()
    token.cancel("not needed")
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=CallableSink(events.append),
                                 transport=transport) as client:
        with pytest.raises(CallCancelled) as caught:
            client.invoke_tool("demo", "echo", {}, cancel=token)
        breaker = client.breaker_for("demo")
        assert (breaker.failure_count, breaker.state) == (0, "closed")
        assert [(e.tool, e.outcome, e.error_type) for e in events
                if e.event_type == "tool_invocation"] == [("echo", "error", "CallCancelled")]
        future = client.submit("demo", "echo", {}, cancel=token)
        with pytest.raises(CancelledError):  # cancelled, or CallCancelled if it had started
            future.result(10)
    assert transport.requests == []
    assert (caught.value.reason, caught.value.server, caught.value.tool) == (
        "not needed", "demo", "echo")


def test_a_cancel_during_the_wait_before_a_retry_ends_the_call_at_once() -> None:
    token = CancelToken()

    def unavailable(_: Any) -> MockResponse:
        token.cancel("gave up")  # the caller cancels while the answer is on its way
        return MockResponse(503, json={"success": False, "error": {
            "code": "unavailable", "message": "down"}})

    transport = MockTransport(unavailable)
    retry = sark_sync.RetryPolicy(attempts=3, backoff_base=20.0, backoff_max=20.0,
                                  jitter=False)
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], retry=retry,
                                 transport=transport) as client:
        started = time.monotonic()
        with pytest.raises(CallCancelled) as caught:
            client.invoke_tool("demo", "echo", {}, cancel=token, timeout=60)
        assert time.monotonic() - started < FREED_BOUND
        breaker = client.breaker_for("demo")
        assert (breaker.failure_count, breaker.state) == (0, "closed")
    assert len(transport.requests) == 1 and caught.value.reason == "gave up"
