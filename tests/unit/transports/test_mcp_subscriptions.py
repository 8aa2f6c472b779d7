"""Resource subscriptions over an in-memory channel: ``resources/subscribe`` at 2025 (sent
again to a renewed session), one ``subscriptions/listen`` stream at 2026-07-28, updates
delivered on the callbacks thread, and a hostile server and callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError
from typing import Any

import pytest
from support import wait_for

from sark_sync import (
    CapabilityNotSupported,
    ProtocolError,
    RPCError,
    TransportTimeout,
    ValidationError,
)
from sark_sync.resilience import current_cancellation
from sark_sync.transports import _mcp_subscriptions as subscriptions
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_modern import ParamHeaders
from sark_sync.transports._mcp_subscriptions import ACKNOWLEDGED, LISTEN
from sark_sync.wire import jsonrpc

CAPS = {"tools": {"listChanged": True}, "resources": {"subscribe": True}, "logging": {}}
INIT = {"protocolVersion": "2025-11-25", "serverInfo": {"name": "fake"}, "capabilities": CAPS}


class Channel:
    """Answers ``initialize`` with ``init`` and any other request ``{}``; records requests.
    ``fail`` maps a method to the exception its request raises."""

    def __init__(self, init: Mapping[str, Any] = INIT) -> None:
        self.init = init
        self.sent: list[tuple[str, Any]] = []
        self.fail: dict[str, Exception] = {}
        self.alive = True

    def start(self) -> None:
        pass

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append((method, params))
        if method in self.fail:
            raise self.fail[method]
        return self.init if method == "initialize" else {}

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = 1.0) -> None:
        pass

    def respond(self, request_id: str | int, result: Any) -> None:
        pass

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        pass

    def close(self) -> None:
        self.alive = False


class ModernChannel(Channel):
    """A 2026-07-28 channel: ``subscriptions/listen`` acknowledges its filter (unless
    ``silent``) and stays open until its cancel token fires, like the real stream."""

    def __init__(self) -> None:
        super().__init__()
        self.modern_version = "2026-07-28"
        self._tools = ParamHeaders()
        self.session: McpSession | None = None
        self.silent = False
        self.open = threading.Event()

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        if method != LISTEN or method in self.fail:
            return super().request(method, params, timeout)
        self.sent.append((method, params))
        token = current_cancellation()
        assert token is not None and self.session is not None
        if not self.silent:
            assert params is not None
            self.session._on_notification_message(jsonrpc.Notification(
                ACKNOWLEDGED, {"notifications": params["notifications"]}))
        self.open.set()
        if not token.wait(timeout):
            raise AssertionError("a listen request outlived its test")
        raise CancelledError()


class Session(McpSession):
    kind = "test server"

    def __init__(self, channel: Channel, **options: Any) -> None:
        super().__init__("fake", timeout=5.0, on_notification=options.pop("on_notification", None),
                         **options)
        self._channel = channel


def connected(channel: Channel, **options: Any) -> Session:
    session = Session(channel, **options)
    if isinstance(channel, ModernChannel):
        channel.session = session
        session.adopt_discovery({"capabilities": CAPS}, "2026-07-28")
    else:
        session.handshake(5.0)
    return session


def updated(session: Session, params: Any) -> None:
    session._on_notification_message(jsonrpc.Notification("notifications/resources/updated",
                                                          params))


# -- 2025: resources/subscribe ----------------------------------------------------------------


def test_subscribe_sends_the_request_and_updates_reach_the_callback_off_the_reader() -> None:
    channel = Channel()
    session = connected(channel)
    got: list[tuple[str, str]] = []
    session.subscribe_resource("file:///a", lambda uri: got.append(
        (uri, threading.current_thread().name)))
    assert channel.sent[-1] == ("resources/subscribe", {"uri": "file:///a"})
    updated(session, {"uri": "file:///a"})
    updated(session, {"uri": "file:///b"})  # not subscribed: nobody hears it
    updated(session, {"uri": "file:///a"})
    wait_for(lambda: len(got) == 2, 5.0)
    assert got == [("file:///a", "sark-sync-mcp-fake-callbacks")] * 2
    session._stop_callbacks()


def test_an_update_below_a_subscribed_uri_reaches_its_callback() -> None:
    session = connected(Channel())
    got: list[str] = []
    session.subscribe_resource("file:///dir/", got.append)
    updated(session, {"uri": "file:///dir/x.txt"})
    updated(session, {"uri": "file:///directory"})  # a sibling, not below
    wait_for(lambda: got, 5.0)
    assert got == ["file:///dir/x.txt"]
    session._stop_callbacks()


def test_unsubscribe_sends_the_request_and_stops_the_updates() -> None:
    channel = Channel()
    session = connected(channel)
    got: list[str] = []
    session.subscribe_resource("file:///a", got.append)
    session.unsubscribe_resource("file:///a")
    assert channel.sent[-1] == ("resources/unsubscribe", {"uri": "file:///a"})
    updated(session, {"uri": "file:///a"})
    sent = list(channel.sent)
    session.unsubscribe_resource("file:///never")  # never subscribed: nothing sent
    assert channel.sent == sent and got == []
    assert not session._callbacks.running


@pytest.mark.parametrize("caps", [{"tools": {}}, {"resources": {}},
                                  {"resources": {"subscribe": "yes"}}, {"resources": True}])
def test_subscriptions_need_resources_subscribe(caps: dict[str, Any]) -> None:
    channel = Channel(dict(INIT, capabilities=caps))
    session = connected(channel)
    sent = list(channel.sent)
    with pytest.raises(CapabilityNotSupported) as caught:
        session.subscribe_resource("file:///a", print)
    assert (caught.value.capability, caught.value.method) == (
        "resources.subscribe", "resources/subscribe")
    with pytest.raises(CapabilityNotSupported):
        session.unsubscribe_resource("file:///a")
    assert channel.sent == sent


@pytest.mark.parametrize(("uri", "callback"), [
    ("", print), (None, print), (7, print), ("x" * 9000, print), ("file:///a", "print"),
    ("file:///a", None)])
def test_bad_arguments_are_refused_before_sending(uri: Any, callback: Any) -> None:
    channel = Channel()
    session = connected(channel)
    sent = list(channel.sent)
    with pytest.raises(ValidationError):
        session.subscribe_resource(uri, callback)
    assert channel.sent == sent


def test_a_refused_subscription_keeps_no_callback() -> None:
    channel = Channel()
    session = connected(channel)
    channel.fail["resources/subscribe"] = RPCError("nope", code=-32602)
    got: list[str] = []
    with pytest.raises(RPCError):
        session.subscribe_resource("file:///a", got.append)
    updated(session, {"uri": "file:///a"})
    assert got == [] and session._subscriptions.uris() == []


@pytest.mark.parametrize("params", [{}, {"uri": 7}, {"uri": None}, {"uri": ["file:///a"]}])
def test_a_malformed_update_is_skipped(params: dict[str, Any],
                                       caplog: pytest.LogCaptureFixture) -> None:
    session = connected(Channel())
    session.subscribe_resource("file:///a", lambda uri: pytest.fail("must not be called"))
    updated(session, params)
    assert "without a URI string" in caplog.text
    assert not session._callbacks.running


def test_a_renewed_session_gets_the_level_and_subscriptions_again() -> None:
    channel = Channel()
    session = connected(channel)
    session.set_logging_level("error")
    session.subscribe_resource("file:///a", print)
    session.subscribe_resource("file:///b", print)
    session.unsubscribe_resource("file:///b")
    channel.sent.clear()
    session.handshake(5.0)  # what the channel's session renewal runs
    wait_for(lambda: len(channel.sent) == 3, 5.0)
    assert channel.sent == [("initialize", channel.sent[0][1]),
                            ("logging/setLevel", {"level": "error"}),
                            ("resources/subscribe", {"uri": "file:///a"})]
    session._stop_callbacks()


def test_a_first_handshake_sends_nothing_more() -> None:
    channel = Channel()
    connected(channel)
    assert [method for method, _ in channel.sent] == ["initialize"]


# -- hostile callbacks --------------------------------------------------------------------------


def test_a_callback_that_raises_does_not_stop_later_updates(
        caplog: pytest.LogCaptureFixture) -> None:
    session = connected(Channel())
    got: list[str] = []

    def callback(uri: str) -> None:
        got.append(uri)
        if len(got) == 1:
            raise ValueError("bad")

    session.subscribe_resource("file:///a", callback)
    updated(session, {"uri": "file:///a"})
    updated(session, {"uri": "file:///a"})
    wait_for(lambda: len(got) == 2, 5.0)
    assert "a callback raised ValueError" in caplog.text
    session._stop_callbacks()


def test_a_callback_may_call_the_session_back() -> None:
    channel = Channel()
    session = connected(channel)
    done = threading.Event()

    def callback(uri: str) -> None:
        session.unsubscribe_resource(uri)  # would deadlock on a reader thread
        done.set()

    session.subscribe_resource("file:///a", callback)
    updated(session, {"uri": "file:///a"})
    assert done.wait(5)
    assert channel.sent[-1] == ("resources/unsubscribe", {"uri": "file:///a"})
    session._stop_callbacks()


# -- 2026-07-28: subscriptions/listen ---------------------------------------------------------


def test_at_2026_subscribing_opens_one_listen_stream_with_the_uris() -> None:
    channel = ModernChannel()
    session = connected(channel)
    got: list[str] = []
    session.subscribe_resource("demo://a", got.append)
    assert channel.sent[-1] == (LISTEN, {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["demo://a"]}})
    assert any(t.name == "sark-sync-mcp-fake-subscriptions" for t in threading.enumerate())
    session.subscribe_resource("demo://b", got.append)  # the stream is opened again
    assert channel.sent[-1] == (LISTEN, {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["demo://a", "demo://b"]}})
    assert [m for m, _ in channel.sent].count("resources/subscribe") == 0
    updated(session, {"uri": "demo://b"})
    wait_for(lambda: got == ["demo://b"], 5.0)
    session.unsubscribe_resource("demo://a")
    wait_for(lambda: channel.sent[-1] == (LISTEN, {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["demo://b"]}}), 5.0)
    session._stop_callbacks()
    assert not any(t.name == "sark-sync-mcp-fake-subscriptions"
                   for t in threading.enumerate())


def test_at_2026_a_stream_never_acknowledged_times_out_the_subscribe() -> None:
    channel = ModernChannel()
    channel.silent = True
    session = connected(channel)
    with pytest.raises(TransportTimeout, match="did not acknowledge subscriptions/listen"):
        session.subscribe_resource("demo://a", print, timeout=0.2)
    assert session._subscriptions.uris() == []
    session._stop_callbacks()


def test_at_2026_a_server_without_listen_fails_the_subscribe() -> None:
    channel = ModernChannel()
    channel.fail[LISTEN] = RPCError("Method not found", code=-32601)
    session = connected(channel)
    with pytest.raises(RPCError, match="Method not found"):
        session.subscribe_resource("demo://a", print)
    session._stop_callbacks()


def test_at_2026_on_notification_opens_the_stream_for_list_changes() -> None:
    channel = ModernChannel()
    seen: list[str] = []
    session = connected(channel, on_notification=lambda method, params: seen.append(method))
    assert channel.open.wait(5)
    assert channel.sent[-1] == (LISTEN, {"notifications": {"toolsListChanged": True}})
    session._on_notification_message(jsonrpc.Notification(
        "notifications/tools/list_changed", {}))
    assert seen == ["notifications/tools/list_changed"]  # the acknowledgment is not shown
    session._stop_callbacks()


def test_at_2026_a_stream_closed_at_once_backs_off_then_gives_up(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(subscriptions, "LISTEN_BACKOFF", 0.001)
    answered: list[float] = []

    class ClosesAtOnce(ModernChannel):
        def request(self, method: str, params: Any, timeout: float) -> Any:
            if method == LISTEN:
                answered.append(time.monotonic())
                return {}  # the listen result: the server ended the stream gracefully
            return super().request(method, params, timeout)

    channel = ClosesAtOnce()
    session = connected(channel)
    with pytest.raises(ProtocolError, match="kept closing subscriptions/listen at once"):
        session.subscribe_resource("demo://a", print)
    assert len(answered) == subscriptions.MAX_LISTEN_FAILURES
    assert all(b > a for a, b in zip(answered, answered[1:]))
    assert "lost subscriptions/listen" in caplog.text
    session._stop_callbacks()


def test_at_2026_no_stream_opens_when_there_is_nothing_to_listen_for() -> None:
    channel = ModernChannel()
    session = Session(channel, on_notification=lambda method, params: None)
    channel.session = session
    session.adopt_discovery({"capabilities": {"tools": {}}}, "2026-07-28")
    assert channel.sent == [] and session._subscriptions._listen is None


def test_at_2026_a_uri_the_server_does_not_honor_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    class Narrowing(ModernChannel):
        def request(self, method: str, params: Any, timeout: float) -> Any:
            if method == LISTEN:  # the server honours no resource subscription
                params = {"notifications": {"toolsListChanged": True}}
            return super().request(method, params, timeout)

    session = connected(Narrowing())
    session.subscribe_resource("demo://a", print)
    assert "did not agree to send the updates" in caplog.text
    assert session._subscriptions.uris() == ["demo://a"]
    session._stop_callbacks()


def test_at_2026_a_forked_child_forgets_the_stream_and_listens_again_on_subscribe() -> None:
    channel = ModernChannel()
    session = connected(channel)
    session.subscribe_resource("demo://a", print)
    listen = session._subscriptions._listen
    assert listen is not None
    parent_thread, parent_token = listen._thread, listen._token
    listen._after_fork_in_child()  # what os.fork's hook runs in the child
    session._subscriptions._after_fork_in_child()
    assert listen._thread is None
    session.subscribe_resource("demo://b", print)  # the child's own stream
    child_thread = getattr(listen, "_thread")  # noqa: B009 (mypy narrowed it to None above)
    assert child_thread is not None and child_thread is not parent_thread
    assert channel.sent[-1] == (LISTEN, {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["demo://a", "demo://b"]}})
    session._stop_callbacks()
    assert parent_token is not None and parent_thread is not None
    parent_token.cancel()  # here the "parent's" thread is in this process: end it
    parent_thread.join(5)
    assert not parent_thread.is_alive()
