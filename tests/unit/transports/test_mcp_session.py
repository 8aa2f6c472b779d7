"""The MCP session layer over any message channel (``McpSession``): here an in-memory channel
that answers like a server, so the handshake, pagination, results and the server's own
messages are tested without a process or a socket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sark_sync import ProtocolError
from sark_sync.transports import MessageChannel
from sark_sync.transports._mcp_client import SUPPORTED_PROTOCOL_VERSIONS, McpSession
from sark_sync.wire import jsonrpc


class FakeChannel:
    """Answers each request from ``answers[method]`` (a list: one per call, the last repeats)
    and records everything sent."""

    def __init__(self, answers: Mapping[str, list[Any]]) -> None:
        self.answers = {method: list(values) for method, values in answers.items()}
        self.sent: list[tuple[str, str, Any]] = []
        self.alive = True

    def start(self) -> None:
        pass

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        self.sent.append(("request", method, params))
        values = self.answers[method]
        return values.pop(0) if len(values) > 1 else values[0]

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = 1.0) -> None:
        self.sent.append(("notify", method, params))

    def respond(self, request_id: str | int, result: Any) -> None:
        self.sent.append(("respond", str(request_id), result))

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        self.sent.append(("error", str(request_id), code))

    def close(self) -> None:
        self.alive = False


class Session(McpSession):
    kind = "test server"

    def __init__(self, channel: FakeChannel, **options: Any) -> None:
        super().__init__("fake", timeout=5.0, on_notification=options.get("on_notification"))
        self._channel = channel


INIT = {"protocolVersion": "2025-06-18", "serverInfo": {"name": "fake"},
        "capabilities": {"tools": {}}, "instructions": "be kind"}


def test_the_fake_channel_is_a_message_channel() -> None:
    assert isinstance(FakeChannel({}), MessageChannel)


def test_the_handshake_offers_the_newest_version_and_accepts_an_older_one() -> None:
    channel = FakeChannel({"initialize": [INIT]})
    session = Session(channel)
    session.handshake(5.0)
    kind, method, params = channel.sent[0]
    assert (kind, method) == ("request", "initialize")
    assert params["protocolVersion"] == SUPPORTED_PROTOCOL_VERSIONS[0]
    assert params["clientInfo"]["name"] == "sark-sync"
    assert channel.sent[1] == ("notify", "notifications/initialized", None)
    assert (session.protocol_version, session.server_info, session.instructions) == (
        "2025-06-18", {"name": "fake"}, "be kind")


def test_an_unsupported_version_is_refused_naming_the_server() -> None:
    channel = FakeChannel({"initialize": [dict(INIT, protocolVersion="1999-01-01")]})
    with pytest.raises(ProtocolError, match="test server 'fake' speaks protocol version"):
        Session(channel).handshake(5.0)


def test_tools_are_listed_across_pages_and_a_tool_is_called() -> None:
    channel = FakeChannel({
        "tools/list": [{"tools": [{"name": "a"}], "nextCursor": "2"},
                       {"tools": [{"name": "b", "annotations": {"readOnlyHint": True}}]}],
        "tools/call": [{"content": [{"type": "text", "text": "hi"}]}],
    })
    session = Session(channel)
    tools = session.list_tools()
    assert [t.tool_name for t in tools] == ["a", "b"] and tools[1].annotations.retry_safe
    assert [params for _, method, params in channel.sent if method == "tools/list"] == [
        None, {"cursor": "2"}]
    result = session.call_tool("a", {"x": 1})
    assert result.text == "hi" and (result.server, result.tool) == ("fake", "a")
    assert channel.sent[-1] == ("request", "tools/call", {"name": "a", "arguments": {"x": 1}})


def test_the_servers_own_messages_are_answered_and_routed() -> None:
    seen: list[tuple[str, Mapping[str, Any]]] = []
    channel = FakeChannel({})
    session = Session(channel, on_notification=lambda method, params: seen.append(
        (method, params)))
    session._on_request(jsonrpc.Request(id=7, method="ping", params=None))
    session._on_request(jsonrpc.Request(id=8, method="sampling/createMessage", params={}))
    session._on_notification_message(jsonrpc.Notification(
        method="notifications/message", params={"level": "info", "data": "x"}))
    assert channel.sent == [("respond", "7", {}), ("error", "8", jsonrpc.METHOD_NOT_FOUND)]
    assert seen == [("notifications/message", {"level": "info", "data": "x"})]
