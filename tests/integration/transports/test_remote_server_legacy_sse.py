"""RemoteServer over MCP's legacy HTTP+SSE transport (2024-11-05), against the official MCP
server (mcp 2.3.0, ``sse_app()``: GET /sse, POST /messages/) through a recording proxy: the
fallback from Streamable HTTP, the wire the server saw, progress, timeouts with cancellation,
32 threads on one session, close, and a server killed mid-call."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy
from support import wait_for

import sark_sync
from sark_sync import (
    ClientClosedError,
    ConnectionFailed,
    DeadlineExceeded,
    NotFoundError,
)
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

#: The bound on failing every pending call once the server is gone.
DEATH_BOUND = 1.0


def methods(proxy: RecordingProxy) -> list[tuple[str, str, int | None, str | None]]:
    """``(method, path, status, JSON-RPC method or None)`` of each request the proxy saw."""
    seen = []
    for x in proxy.requests:
        body = json.loads(x.body) if x.body else None
        seen.append((x.method, x.path.split("?")[0], x.status,
                     body.get("method") if isinstance(body, dict) else None))
    return seen


def reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sark-sync-sse-")]


def test_auto_falls_back_to_http_sse_when_the_initialize_post_is_refused(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("legacy-sse").url)
    with RemoteServer(proxy.url, name="old", timeout=10) as server:
        assert server.protocol_version == "2025-11-25"
        assert server.session_id is not None and len(server.session_id) == 32
        assert {"echo", "add", "slow"} <= {t.tool_name for t in server.list_tools()}
        assert server.call_tool("echo", {"text": "hi"}).text == "hi"
        assert server.call_tool("add", {"a": 2, "b": 3}).structured == {"sum": 5}
    seen = methods(proxy)
    get = seen.index(("GET", "/sse", 200, None))
    # Streamable HTTP first: every POST to the stream's URL is refused (405, GET only), the
    # initialize among them; then the stream, then one POST per message to the endpoint.
    streamable = seen[:get]
    assert streamable and all(m == "POST" and p == "/sse" and s == 405
                              for m, p, s, _ in streamable)
    assert streamable[-1][3] == "initialize"
    assert [(m, p, s, rpc) for m, p, s, rpc in seen[get + 1:]] == [
        ("POST", "/messages/", 202, "initialize"),
        ("POST", "/messages/", 202, "notifications/initialized"),
        ("POST", "/messages/", 202, "tools/list"),
        ("POST", "/messages/", 202, "tools/call"),
        ("POST", "/messages/", 202, "tools/call"),
    ]
    posts = proxy.requests[get + 1:]
    assert {x.path for x in posts} == {f"/messages/?session_id={server.session_id}"}
    assert all(x.header("Content-Type") == "application/json" for x in posts)
    assert proxy.requests[get].header("Accept") == "text/event-stream"
    assert not server.alive and reader_threads() == []


def test_transport_sse_opens_the_stream_first_and_never_probes(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("legacy-sse").url)
    with RemoteServer(proxy.url, timeout=10, transport="sse",
                      protocol_version="2024-11-05") as server:
        assert server.transport == "sse" and server.protocol_version == "2024-11-05"
        assert server.call_tool("echo", {"text": "x"}).text == "x"
    seen = methods(proxy)
    assert seen[0] == ("GET", "/sse", 200, None)
    assert [rpc for _, _, _, rpc in seen[1:]] == [  # a tool's first call lists the tools
        "initialize", "notifications/initialized", "tools/list", "tools/call"]
    assert json.loads(proxy.requests[1].body)["params"]["protocolVersion"] == "2024-11-05"


def test_streamable_http_only_does_not_fall_back(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("legacy-sse").url)
    server = RemoteServer(proxy.url, timeout=10, transport="streamable-http")
    with pytest.raises(sark_sync.APIError) as caught:
        server.connect()
    server.close()
    assert caught.value.status_code == 405
    assert all(m == "POST" for m, _, _, _ in methods(proxy))


def test_a_failed_fallback_says_what_came_before(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    url = mcp_http_server("legacy-sse").url.replace("/sse", "/nowhere")
    server = RemoteServer(url, timeout=10)
    with pytest.raises(NotFoundError) as caught:
        server.connect()
    server.close()
    assert caught.value.status_code == 404 and caught.value.method == "GET"
    assert caught.value.message == (
        "MCP server '127.0.0.1' answered 404 (trying HTTP+SSE after Streamable HTTP's "
        "initialize was answered 404: MCP server '127.0.0.1' answered 404)")
    assert isinstance(caught.value.__context__, NotFoundError)  # the initialize's own error
    assert caught.value.__context__.method == "POST"
    assert reader_threads() == []


def test_progress_and_server_notifications_arrive_on_the_stream(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    notes: list[str] = []
    seen: list[tuple[float, float | None]] = []
    with RemoteServer(mcp_http_server("legacy-sse").url, timeout=10, transport="sse",
                      on_notification=lambda method, params: notes.append(method)) as server:
        result = server.call_tool("steps", {"count": 3, "interval": 0.01},
                                  progress=lambda p, total, message: seen.append((p, total)))
        assert result.text == "steps 3" and seen == [(1, 3), (2, 3), (3, 3)]
        assert server.call_tool("announce").text == "announced"
        wait_for(lambda: "notifications/tools/list_changed" in notes, 5.0)


def test_a_timeout_raises_deadline_exceeded_and_the_server_is_told_to_cancel(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server("legacy-sse").url)
    with RemoteServer(proxy.url, timeout=10, transport="sse") as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded,
                           match=r"did not answer tools/call within 0\.5s") as caught:
            server.call_tool("slow", {"seconds": 60}, timeout=0.5)
        assert time.monotonic() - started < 0.6
        assert isinstance(caught.value.last_error, sark_sync.TransportTimeout)
        bodies = [json.loads(x.body) for x in proxy.requests if x.body]
        call = next(b for b in bodies if b.get("method") == "tools/call")
        assert {"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": call["id"], "reason": "timeout"}} in bodies
        assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_32_threads_share_one_session_and_every_answer_finds_its_caller(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(32)
    with RemoteServer(mcp_http_server("legacy-sse").url, timeout=20, transport="sse") as server:
        def work(n: int) -> None:
            try:
                barrier.wait(10)
                for round_ in range(3):
                    results[n * 10 + round_] = server.call_tool(
                        "echo", {"text": f"t{n}-r{round_}"}).text or ""
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert results == {n * 10 + r: f"t{n}-r{r}" for n in range(32) for r in range(3)}


def test_close_fails_a_pending_call_and_stops_the_reader(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    server = RemoteServer(mcp_http_server("legacy-sse").url, timeout=10, transport="sse")
    server.connect()
    assert reader_threads() == [f"sark-sync-sse-{server.name}-reader"]
    started = threading.Event()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            server.call_tool("slow", {"seconds": 30},
                             progress=lambda *args: started.set())
        except BaseException as exc:  # reported below
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(10)
    server.close()
    caller.join(5)
    assert [type(e) for e in outcome] == [ClientClosedError]
    assert str(outcome[0]) == f"the session with {server.name!r} is closed " \
                              f"(server={server.name})"
    assert reader_threads() == [] and not server.alive
    with pytest.raises(ClientClosedError):
        server.call_tool("echo", {"text": "late"})


def test_a_server_killed_mid_call_fails_every_pending_call_within_a_second(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    peer = mcp_http_server("legacy-sse")
    outcome: list[tuple[BaseException, float]] = []
    running = threading.Semaphore(0)
    with RemoteServer(peer.url, name="doomed", timeout=30, transport="sse") as server:
        def call() -> None:
            try:
                server.call_tool("slow", {"seconds": 30}, progress=lambda *a: running.release())
            except BaseException as exc:  # reported below
                outcome.append((exc, time.monotonic()))

        callers = [threading.Thread(target=call) for _ in range(4)]
        for caller in callers:
            caller.start()
        for _ in callers:
            assert running.acquire(timeout=10)  # every call is running on the server
        killed = time.monotonic()
        peer.proc.send_signal(signal.SIGKILL)
        for caller in callers:
            caller.join(5)
        assert len(outcome) == 4
        for error, when in outcome:
            assert type(error) is ConnectionFailed and when - killed < DEATH_BOUND
            assert "the HTTP+SSE stream of MCP server 'doomed'" in str(error)
            assert "the session is over" in str(error)
        assert not server.alive
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            server.call_tool("echo", {"text": "after"})
        assert time.monotonic() - started < 0.1  # nothing sent: it fails at once
    assert reader_threads() == []


def test_invoke_tool_reaches_a_legacy_server_by_name_through_the_fallback(
    mcp_http_server: Callable[..., McpHttpServer],
) -> None:
    url = mcp_http_server("legacy-sse").url
    with sark_sync.GatewayClient("http://127.0.0.1:9", remote_servers={"old": url}) as client:
        assert client.invoke_tool("old", "add", {"a": 1, "b": 2}).structured == {"sum": 3}
        assert client.invoke_tool("old", "echo", {"text": "via"}).text == "via"
    assert reader_threads() == []


def test_the_client_opens_a_new_legacy_session_after_the_server_restarted(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    first = mcp_http_server("legacy-sse")
    proxy = recording_proxy(first.url)
    options = {"url": proxy.url, "transport": "sse", "timeout": 10}
    with sark_sync.GatewayClient("http://127.0.0.1:9", remote_servers={"old": options}) \
            as client:
        assert client.invoke_tool("old", "counter").text == "1"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        wait_for(lambda: reader_threads() == [], what="the session to see its stream end")
        with pytest.raises(ConnectionFailed) as caught:  # a new session: the server is down
            client.invoke_tool("old", "counter")
        assert caught.value.message.startswith("could not reach MCP server 'old'")
        assert caught.value.method == "GET" and caught.value.attempts == 1
        proxy.retarget(mcp_http_server("legacy-sse").url)
        assert client.invoke_tool("old", "counter").text == "1"  # a new server, a new session
        server = client.connect_remote_server(proxy.url, name="direct", transport="sse")
        assert server.transport == "sse" and server.session_id is not None
        assert client.invoke_tool("direct", "echo", {"text": "d"}).text == "d"
    gets = [x for x in proxy.requests if x.method == "GET"]
    # the first session, the reconnection the dead server refused, the new server, "direct"
    assert [x.status for x in gets] == [200, None, 200, 200]
    assert all(x.path == "/sse" for x in gets)
    assert not any(x.method == "POST" and x.path == "/sse" for x in proxy.requests)
    assert reader_threads() == []
