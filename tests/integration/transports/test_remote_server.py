"""RemoteServer over Streamable HTTP against the official MCP server (mcp 2.3.0), through a
recording proxy: what the server saw on the wire, in each of its modes. Work in progress of
issue 13: the session, tools, calls, progress, timeouts with cancellation, DELETE on close."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy

import sark_sync
from sark_sync import DeadlineExceeded, TransportTimeout
from sark_sync.governance import CallableSink
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

MODES = ["stateful", "stateful-json", "stateless", "stateless-json"]
STATEFUL = {"stateful", "stateful-json"}
#: The revision with sessions and initialize (the official server answers 2026-07-28 to a
#: client that probes for it, without a session).
V2025 = "2025-11-25"


def bodies(proxy: RecordingProxy) -> list[Any]:
    return [json.loads(x.body) if x.body else None for x in proxy.requests]


@pytest.mark.parametrize("mode", MODES)
def test_a_session_lists_and_calls_tools_and_ends_with_delete(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    with RemoteServer(proxy.url, name="sdk", timeout=10, protocol_version=V2025) as server:
        assert server.protocol_version == "2025-11-25"
        assert (server.session_id is not None) == (mode in STATEFUL)
        names = {tool.tool_name for tool in server.list_tools()}
        assert {"echo", "add", "slow", "counter"} <= names
        assert server.call_tool("echo", {"text": "hi"}).text == "hi"
        assert server.call_tool("add", {"a": 2, "b": 3}).structured == {"sum": 5}
    exchanges = proxy.requests
    posts = [x for x in exchanges if x.method == "POST"]
    assert [b["method"] for b in bodies(proxy) if b is not None][:3] == [
        "initialize", "notifications/initialized", "tools/list"]
    for x in posts:
        assert x.header("Accept") == "application/json, text/event-stream"
        assert x.header("Content-Type") == "application/json"
        assert not isinstance(json.loads(x.body), list)  # never a batch
    for x in posts[1:]:  # after initialize: the negotiated version, and the session if any
        assert x.header("MCP-Protocol-Version") == "2025-11-25"
        assert x.header("Mcp-Session-Id") == (posts[0].response_header("Mcp-Session-Id"))
    assert posts[1].status == 202  # notifications/initialized
    deletes = [x for x in exchanges if x.method == "DELETE"]
    if mode in STATEFUL:
        assert len(deletes) == 1 and deletes[0].status == 200
        assert deletes[0].header("Mcp-Session-Id") == server.session_id
    else:
        assert deletes == []  # no session to end
    assert all(x.status != 406 for x in exchanges)


def test_progress_arrives_on_the_response_stream(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    with RemoteServer(mcp_http_server("stateful").url, timeout=10) as server:
        result = server.call_tool("slow", {"seconds": 0.2},
                                  progress=lambda p, total, message: seen.append((p, total,
                                                                                  message)))
    assert result.text == "slept 0.2" and len(seen) == 2


def test_a_timeout_is_bounded_and_the_server_is_told_to_cancel(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with RemoteServer(proxy.url, timeout=10, protocol_version=V2025) as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded,
                           match=r"did not answer tools/call within 0\.5s") as caught:
            server.call_tool("slow", {"seconds": 60}, timeout=0.5)
        assert time.monotonic() - started < 0.6  # the cut, then one short notify
        assert isinstance(caught.value.last_error, TransportTimeout)
        assert caught.value.timeout == 0.5 and caught.value.server == server.name
        calls = [b for b in bodies(proxy) if b is not None and b.get("method") == "tools/call"]
        cancels = [b for b in bodies(proxy)
                   if b is not None and b.get("method") == "notifications/cancelled"]
        assert cancels == [{"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": calls[0]["id"], "reason": "timeout"}}]
        assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_invoke_tool_reaches_a_remote_server_by_name_through_the_pipeline(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless-json").url)
    events: list[Any] = []
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", audit=CallableSink(events.append),
            remote_servers={"sdk": {"url": proxy.url, "protocol_version": V2025}}) as client:
        result = client.invoke_tool("sdk", "add", {"a": 1, "b": 2})
        assert result.structured == {"sum": 3} and result.server == "sdk"
        assert client.breaker_for("sdk").name == "remote:sdk"
        assert {t.tool_name for t in client.list_tools("sdk")} >= {"echo", "add"}
    methods = [b["method"] for b in bodies(proxy) if b is not None]
    # The tools are listed on connecting: their hints say which calls may be retried.
    assert methods[:4] == ["initialize", "notifications/initialized", "tools/list",
                           "tools/call"]
    assert [(e.outcome, e.transport) for e in events if e.event_type == "tool_invocation"] \
        == [("success", "mcp-http")]
    assert [(e.operation, e.transport) for e in events if e.event_type == "discovery"] \
        == [("list_tools", "mcp-http")]


def test_connect_remote_server_attaches_the_session_to_the_client(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    with sark_sync.GatewayClient("http://127.0.0.1:9") as client:
        server = client.connect_remote_server(mcp_http_server("stateful").url, name="live",
                                              protocol_version=V2025)
        assert server.session_id is not None
        assert client.invoke_tool("live", "echo", {"text": "via"}).text == "via"
    assert not server.alive  # the client ended the session it was given


def test_remote_server_options_are_checked_when_the_client_is_made() -> None:
    cases = [
        ({"url": "http://127.0.0.1:9/mcp", "retries": 3},
         "remote server 'n': unknown option(s) retries; allowed: url, headers, auth, "
         "transport, timeout, protocol_version, on_notification, sampling, elicitation, "
         "roots, handler_timeout, on_log"),
        ({"url": "http://127.0.0.1:9/mcp", "auth": 42},
         "auth must be a (user, password) tuple or a requests.auth.AuthBase, not int"),
        ({"url": "http://127.0.0.1:9/mcp", "transport": "pigeon"},
         "transport must be one of auto, streamable-http, sse, not 'pigeon'"),
        ({"headers": {}}, "remote server 'n' must be a URL or {'url': ..., 'headers': {...}, "
                          "'auth': ...}"),
    ]
    for spec, message in cases:
        with pytest.raises(sark_sync.ConfigurationError) as caught:
            sark_sync.GatewayClient("http://127.0.0.1:9", audit=[], remote_servers={"n": spec})
        assert caught.value.message == message


def test_connect_remote_server_sends_its_auth_on_every_request(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    secret = "pw-5e1f2a9c7b"
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with sark_sync.GatewayClient("http://127.0.0.1:9", audit=[]) as client:
        server = client.connect_remote_server(proxy.url, name="basic", auth=("user", secret),
                                              transport="streamable-http",
                                              protocol_version=V2025, timeout=5)
        assert server.timeout == 5 and server.transport == "streamable-http"
        assert client.invoke_tool("basic", "echo", {"text": "in"}).text == "in"
        assert secret not in repr(server) and secret not in repr(client)
    expected = "Basic " + base64.b64encode(f"user:{secret}".encode()).decode()
    assert {x.header("Authorization") for x in proxy.requests} == {expected}
    assert [x.method for x in proxy.requests][-1] == "DELETE"


def announce_until_heard(call: Callable[[], Any], heard: threading.Event) -> None:
    """Ask the server to announce a list change until the callback hears it: the listening
    stream opens on its own thread after the handshake, and the server drops what it sends
    outside a request while none is open."""
    deadline = time.monotonic() + 10.0
    while not heard.is_set():
        assert time.monotonic() < deadline, "no notification reached the callback"
        assert call().text == "announced"
        heard.wait(0.5)


def test_notifications_of_remote_servers_reach_the_clients_callbacks(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    # tools/list_changed tied to no request: the server sends it on the listening GET stream.
    url = mcp_http_server("stateful").url
    seen: list[tuple[str, str]] = []
    arrived = threading.Event()

    def on_client(server: str, method: str, params: Any) -> None:
        seen.append((server, method))
        arrived.set()

    own: list[str] = []
    got_own = threading.Event()
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", on_notification=on_client,
            remote_servers={"sdk": {"url": url, "protocol_version": V2025}}) as client:
        announce_until_heard(lambda: client.invoke_tool("sdk", "announce", {}), arrived)
        assert set(seen) == {("sdk", "notifications/tools/list_changed")}
        server = client.connect_remote_server(
            url, name="own", protocol_version=V2025,
            on_notification=lambda method, params: (own.append(method), got_own.set()))
        announce_until_heard(lambda: server.call_tool("announce"), got_own)
        assert set(own) == {"notifications/tools/list_changed"}
        assert {name for name, _ in seen} == {"sdk"}  # the session's own went to its callback
