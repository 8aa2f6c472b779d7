"""RemoteServer's protocol revision, negotiated with real servers through a recording proxy:
2026-07-28 with the official mcp 2.3.0 server (``server/discover``, the ``_meta`` envelope,
``Mcp-Method``/``Mcp-Name``, no session), 2025-11-25 with the older mcp 1.x server (the
probe refused, then ``initialize`` and a session), and the forced revisions."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from realcomp.fixtures import Mcp1HttpServer, McpHttpServer
from realcomp.recording_proxy import Exchange, RecordingProxy

from sark_sync import ConnectionFailed, DeadlineExceeded, NotFoundError, RPCError
from sark_sync.transports import _guarded
from sark_sync.transports._mcp_modern import decode_header_value
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

MODERN = "2026-07-28"
ENVELOPE_KEYS = {"io.modelcontextprotocol/protocolVersion",
                 "io.modelcontextprotocol/clientCapabilities",
                 "io.modelcontextprotocol/clientInfo"}


def body(exchange: Exchange) -> Any:
    return json.loads(exchange.body) if exchange.body else None


def exchanges_of(proxy: RecordingProxy) -> list[Exchange]:
    """The exchanges in order, but for ``subscriptions/listen``: a 2026 session opens that
    stream on a thread of its own when the server declares list changes, at no fixed place."""
    return [x for x in proxy.requests
            if not (x.method == "POST" and body(x)["method"] == "subscriptions/listen")]


def posted_methods(proxy: RecordingProxy) -> list[str]:
    """The POSTed methods in order, but for ``subscriptions/listen``: a 2026 session opens that
    stream on a thread of its own when the server declares list changes, at no fixed place."""
    return [body(x)["method"] for x in proxy.requests
            if x.method == "POST" and body(x)["method"] != "subscriptions/listen"]


@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_the_official_server_is_spoken_to_at_2026_07_28_without_a_session(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    with RemoteServer(proxy.url, name="sdk", timeout=10) as server:
        assert server.protocol_version == MODERN
        assert server.session_id is None
        assert server.server_info["name"] == "sark-test-sdk"
        assert "tools" in server.capabilities
        assert "echo" in {tool.tool_name for tool in server.list_tools()}
        assert server.call_tool("echo", {"text": "hi"}).text == "hi"
    assert posted_methods(proxy) == ["server/discover", "tools/list", "tools/call"]
    exchanges = exchanges_of(proxy)
    assert all(x.method == "POST" for x in exchanges)  # no GET stream, no DELETE
    for x in exchanges:
        message = body(x)
        assert x.status == 200
        assert x.header("MCP-Protocol-Version") == MODERN
        assert x.header("Mcp-Method") == message["method"]
        assert x.header("Mcp-Session-Id") is None
        assert x.response_header("Mcp-Session-Id") is None
        meta = message["params"]["_meta"]
        assert set(meta) >= ENVELOPE_KEYS
        assert meta["io.modelcontextprotocol/protocolVersion"] == MODERN
        assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "sark-sync"
    call = exchanges[2]
    assert call.header("Mcp-Name") == "echo"
    assert exchanges[0].header("Mcp-Name") is None and exchanges[1].header("Mcp-Name") is None


def test_a_name_that_is_not_plain_ascii_travels_in_the_base64_sentinel(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless").url)
    with RemoteServer(proxy.url, timeout=10) as server:
        result = server.call_tool("héllo wörld", {})
    call = exchanges_of(proxy)[-1]
    assert call.header("Mcp-Name") == "=?base64?aMOpbGxvIHfDtnJsZA==?="
    assert decode_header_value(call.header("Mcp-Name") or "") == "héllo wörld"
    # The server decoded the header and found it equal to the body's name (else: 400 -32020).
    assert call.status == 200
    assert result.is_error and "Unknown tool" in result.text


def test_progress_arrives_on_the_2026_response_stream(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    with RemoteServer(mcp_http_server("stateful").url, timeout=10) as server:
        assert server.protocol_version == MODERN
        result = server.call_tool("slow", {"seconds": 0.2},
                                  progress=lambda p, total, note: seen.append((p, total, note)))
    assert result.text == "slept 0.2"
    assert seen == [(0.0, 0.2, None), (0.2, 0.2, None)]


def test_ping_at_2026_is_a_server_discover(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless-json").url)
    with RemoteServer(proxy.url, timeout=10) as server:
        server.ping()
    assert posted_methods(proxy) == ["server/discover", "server/discover"]
    assert exchanges_of(proxy)[-1].status == 200


def test_a_2026_timeout_closes_the_connection_and_posts_no_cancellation(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with RemoteServer(proxy.url, timeout=10) as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 0\.5s"):
            server.call_tool("slow", {"seconds": 60}, timeout=0.5)
        assert time.monotonic() - started < 0.6 + 0.2
        assert server.call_tool("echo", {"text": "after"}).text == "after"
    # The cut call is recorded once the proxy gives up on it, or never: only what the proxy
    # relayed in full is compared. No notifications/cancelled was POSTed after the timeout.
    methods = posted_methods(proxy)
    assert "notifications/cancelled" not in methods
    assert methods[0] == "server/discover" and methods[-1] == "tools/call"
    assert body(exchanges_of(proxy)[-1])["params"]["name"] == "echo"


def test_a_socket_timeout_at_the_deadline_reads_as_the_deadline(
    mcp_http_server: Callable[..., McpHttpServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watchdog's cut and the socket's read timeout fall due at the same instant: when
    the socket's comes first (here the watchdog never cuts), the caller sees the same
    error, naming its method and timeout (a race seen once in a loaded run)."""
    monkeypatch.setattr(_guarded.watchdog, "watch", lambda at, exchange: None)
    with RemoteServer(mcp_http_server("stateful").url, timeout=10) as server:
        with pytest.raises(DeadlineExceeded, match=r"did not answer tools/call within 0\.5s"):
            server.call_tool("slow", {"seconds": 60}, timeout=0.5)


@pytest.mark.parametrize(("mode", "count"), [("stateful", "1"), ("stateless-json", "2")])
def test_closing_the_connection_is_the_2026_cancellation(
    mode: str, count: str, mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    """The SSE-mode server cancels the handler when the timeout closes the connection: the
    cut call never counts. Fact of mcp 2.3.0: with ``json_response`` the server does not watch
    for the disconnect and the call runs on (it counts); at 2026 a posted
    ``notifications/cancelled`` is ignored too, so no client can stop it."""
    with RemoteServer(mcp_http_server(mode).url, timeout=10) as server:
        with pytest.raises(DeadlineExceeded):
            server.call_tool("late_count", {"seconds": 1.0}, timeout=0.3)
        # The server's own clock outlasts the cut call (no bare sleep here): had the call
        # gone on, it would have counted by the end of this one.
        assert server.call_tool("slow", {"seconds": 1.5}).text == "slept 1.5"
        assert server.call_tool("counter").text == count


@pytest.mark.parametrize("mode", ["stateful", "stateless-json"])
def test_an_older_server_refuses_the_probe_and_gets_initialize_at_2025_11_25(
    mode: str, mcp1_http_server: Callable[..., Mcp1HttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp1_http_server(mode).url)
    with RemoteServer(proxy.url, name="old", timeout=10) as server:
        assert server.protocol_version == "2025-11-25"
        assert server.server_info["name"] == "sark-test-mcp1"
        assert (server.session_id is not None) == (mode == "stateful")
        assert server.call_tool("echo", {"text": "hi"}).text == "hi"
        session_id = server.session_id
    assert posted_methods(proxy) == ["server/discover", "initialize",  # then the first call
                                     "notifications/initialized", "tools/list", "tools/call"]
    probe, initialize, *later = [x for x in proxy.requests if x.method == "POST"]
    assert probe.status == 400 and probe.header("MCP-Protocol-Version") == MODERN
    # The stray session id of the refusal (stateful 1.x sends one) is not adopted.
    assert initialize.header("Mcp-Session-Id") is None
    assert initialize.header("MCP-Protocol-Version") is None
    assert initialize.header("Mcp-Method") is None
    assert "_meta" not in body(initialize)["params"]
    assert body(initialize)["params"]["protocolVersion"] == "2025-11-25"
    for x in later:
        assert x.header("MCP-Protocol-Version") == "2025-11-25"
        assert x.header("Mcp-Session-Id") == session_id
        assert x.header("Mcp-Method") is None
    deletes = [x for x in proxy.requests if x.method == "DELETE"]
    assert len(deletes) == (1 if mode == "stateful" else 0)


def test_progress_and_a_call_work_with_the_older_server(
    mcp1_http_server: Callable[..., Mcp1HttpServer],
) -> None:
    seen: list[float] = []
    with RemoteServer(mcp1_http_server().url, timeout=10) as server:
        result = server.call_tool("slow", {"seconds": 0.1},
                                  progress=lambda p, total, note: seen.append(p))
        server.ping()
    assert result.text == "slept 0.1" and seen == [0.0, 0.1]


def test_a_handshake_version_skips_the_probe(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with RemoteServer(proxy.url, timeout=10, protocol_version="2025-06-18") as server:
        assert server.protocol_version == "2025-06-18"
        assert server.session_id is not None
        assert server.call_tool("echo", {"text": "hi"}).text == "hi"
    assert posted_methods(proxy) == ["initialize", "notifications/initialized", "tools/list",
                                     "tools/call"]  # a tool's first call lists the tools
    assert body(proxy.requests[0])["params"]["protocolVersion"] == "2025-06-18"


def test_forcing_2026_with_an_older_server_raises_its_refusal(
    mcp1_http_server: Callable[..., Mcp1HttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp1_http_server("stateless-json").url)
    server = RemoteServer(proxy.url, timeout=10, protocol_version=MODERN)
    try:
        with pytest.raises(RPCError, match="Unsupported protocol version") as caught:
            server.connect()
    finally:
        server.close()
    assert caught.value.code == -32600 and caught.value.status_code == 400
    assert posted_methods(proxy) == ["server/discover"]


def test_a_404_to_the_probe_and_to_initialize_raises_not_found_with_its_status(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    """What the HTTP+SSE fallback keys on: the final initialize's status is on the error
    (``transport="streamable-http"``: no HTTP+SSE attempt after it)."""
    proxy = recording_proxy(mcp_http_server("stateless").url.replace("/mcp", "/nowhere"))
    server = RemoteServer(proxy.url, timeout=10, transport="streamable-http")
    try:
        with pytest.raises(NotFoundError) as caught:
            server.connect()
    finally:
        server.close()
    assert caught.value.status_code == 404
    assert posted_methods(proxy) == ["server/discover", "initialize"]
    assert [(x.method, x.status) for x in proxy.requests] == [("POST", 404), ("POST", 404)]


def test_a_network_error_on_the_probe_propagates_without_a_fallback(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    peer = mcp_http_server("stateless")
    url = peer.url
    peer.stop()
    server = RemoteServer(url, timeout=5)
    try:
        with pytest.raises(ConnectionFailed):
            server.connect()
    finally:
        server.close()
    assert server.protocol_version is None


def test_an_argument_annotated_x_mcp_header_travels_in_its_mcp_param_header(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("stateless-json").url)
    with RemoteServer(proxy.url, timeout=10) as server:
        assert "regional" in {tool.tool_name for tool in server.list_tools()}
        assert server.call_tool("regional", {"region": "eu-west", "text": "t"}).text == \
            "eu-west:t"
        assert server.call_tool("regional", {"region": "Zürich", "text": "t"}).text == \
            "Zürich:t"
    calls = [x for x in proxy.requests if body(x)["method"] == "tools/call"]
    assert [x.header("Mcp-Param-Region") for x in calls] == [
        "eu-west", "=?base64?WsO8cmljaA==?="]
    assert [x.status for x in calls] == [200, 200]
    assert all(x.header("Mcp-Param-Region") is None for x in proxy.requests
               if body(x)["method"] != "tools/call")


def test_the_first_call_of_a_tool_lists_it_so_its_mcp_param_header_travels_at_once(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    """(A tool the server added without notifying is refused for its header, listed and sent
    again: test_mcp_modern's relearn tests.)"""
    proxy = recording_proxy(mcp_http_server("stateful").url)
    with RemoteServer(proxy.url, timeout=10) as server:
        assert server.call_tool("regional", {"region": "eu", "text": "t"}).text == "eu:t"
        assert server.call_tool("regional", {"region": "us", "text": "t"}).text == "us:t"
    exchanges = exchanges_of(proxy)
    assert [(body(x)["method"], x.status) for x in exchanges] == [
        ("server/discover", 200), ("tools/list", 200), ("tools/call", 200),
        ("tools/call", 200)]
    assert [x.header("Mcp-Param-Region") for x in exchanges[2:]] == ["eu", "us"]


def test_32_threads_share_one_2026_server_and_each_gets_its_own_answer(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    threads = 32
    barrier = threading.Barrier(threads)
    with RemoteServer(mcp_http_server("stateless-json").url, timeout=20) as server:
        assert server.protocol_version == MODERN

        def call(n: int) -> str:
            barrier.wait(timeout=10)
            return server.call_tool("regional", {"region": f"r{n}", "text": str(n)}).text

        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(call, range(threads)))
    assert answers == [f"r{n}:{n}" for n in range(threads)]
