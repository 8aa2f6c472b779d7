"""Cancelling a submitted call that runs: ``future.cancel()`` abandons the MCP request at once
and tells the server (``notifications/cancelled``, reason "cancelled"), against the official
MCP server over Streamable HTTP and over stdio, and a misbehaving stdio server that records what
it receives. The worker is freed (``max_workers=1``: the next call runs at once), the call is
neither retried nor counted by the breaker, and its audit event is an ``error`` of type
``CallCancelled``."""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy
from support import FAST_RETRY, child_env, misbehave_command, wait_for

import sark_sync
from sark_sync import CallCancelled
from sark_sync.governance import CallableSink
from sark_sync.resilience import CancelToken, cancellable
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.timeout(60)]

UNUSED_GATEWAY = "http://127.0.0.1:9"  # MCP servers only: the gateway is never reached
V2025 = "2025-11-25"
#: How long cancel() may take.
CANCEL_BOUND = 0.2
#: How long the only worker may stay busy after cancel() (a few ms here; slack for busy CI).
WORKER_BOUND = 0.5


def posted(proxy: RecordingProxy) -> list[Any]:
    return [json.loads(x.body) for x in proxy.requests if x.method == "POST" and x.body]


def cancel_running(future: Any) -> float:
    """Cancel a running future; the seconds cancel() took."""
    assert future.running()
    started = time.monotonic()
    assert future.cancel() is True
    return time.monotonic() - started


def check_cancelled(future: Any, client: sark_sync.GatewayClient, server: str,
                    events: list[Any]) -> None:
    """The future ends cancelled, the only worker is free for the next call at once, the call
    was not retried nor counted, and the audit recorded it."""
    assert future.cancelled() and future.done()
    with pytest.raises(CancelledError):
        future.result(timeout=0)
    started = time.monotonic()
    following = client.submit(server, "echo", {"text": "next"})
    wait_for(lambda: following.running() or following.done(), timeout=5, interval=0.005,
             what="the worker to be free")
    assert time.monotonic() - started < WORKER_BOUND  # not held by the cancelled call
    assert "next" in following.result(timeout=5).text
    breaker = client.breaker_for(server)
    assert (breaker.failure_count, breaker.state) == (0, "closed")
    calls = wait_for(lambda: [e for e in events if e.event_type == "tool_invocation"]
                     if len(events) >= 2 else None, timeout=5, what="both audit events")
    assert [(e.tool, e.outcome, e.error_type) for e in calls] == [
        ("slow", "error", "CallCancelled"),
        ("echo", "success", None)]


@pytest.mark.realcomp
@pytest.mark.parametrize(("mode", "options"), [
    ("stateful", {"protocol_version": V2025}),
    ("stateless", {"protocol_version": V2025}),
    ("legacy-sse", {"transport": "sse"}),
])
def test_cancel_a_running_call_to_a_server_by_url(
    mode: str, options: dict[str, str], mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    events: list[Any] = []
    with sark_sync.GatewayClient(
            UNUSED_GATEWAY, max_workers=1, retry=FAST_RETRY, audit=CallableSink(events.append),
            remote_servers={"sdk": dict(options, url=proxy.url)}) as client:
        client.list_tools("sdk")  # connected: the call below is the only thing in flight
        events.clear()
        future = client.submit("sdk", "slow", {"seconds": 60}, timeout=30)
        call = wait_for(lambda: next((b for b in posted(proxy)
                                      if b.get("method") == "tools/call"), None),
                        timeout=10, what="the server to take tools/call")
        assert cancel_running(future) < CANCEL_BOUND
        check_cancelled(future, client, "sdk", events)
        cancels = wait_for(lambda: [b for b in posted(proxy)
                                    if b.get("method") == "notifications/cancelled"],
                           timeout=5, what="notifications/cancelled")
        assert cancels == [{"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": call["id"], "reason": "cancelled"}}]
        slow_calls = [b for b in posted(proxy) if b.get("method") == "tools/call"
                      and b["params"]["name"] == "slow"]
        assert len(slow_calls) == 1  # not retried


@pytest.mark.realcomp
def test_at_2026_07_28_cancelling_closes_the_connection_and_posts_nothing(
    mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    """No ``notifications/cancelled`` at 2026: the cut connection is the cancellation. Run in
    the token's scope as ``submit``'s worker does, so that the first progress shows the call
    reached the server (a 2026 response has no head before its first event)."""
    proxy = recording_proxy(mcp_http_server("stateful").url)
    token = CancelToken()
    results: queue.Queue[object] = queue.Queue()
    in_flight = threading.Event()

    def call() -> None:
        with cancellable(token):
            try:
                results.put(server.call_tool("steps", {"count": 2, "interval": 60},
                                             progress=lambda *_: in_flight.set()))
            except BaseException as exc:  # handed to the test's thread
                results.put(exc)

    with RemoteServer(proxy.url, timeout=30) as server:
        worker = threading.Thread(target=call)
        worker.start()
        try:
            assert in_flight.wait(10)
            started = time.monotonic()
            token.cancel()
            error = results.get(timeout=5)
            assert time.monotonic() - started < CANCEL_BOUND
        finally:
            token.cancel()
            worker.join(10)
        assert isinstance(error, CallCancelled) and isinstance(error, CancelledError)
        assert error.message == f"tools/call to MCP server {server.name!r} was cancelled"
        assert (error.server, error.method, error.reason) == (server.name, "tools/call", None)
        assert server.call_tool("echo", {"text": "after"}).text == "after"
    methods = [b.get("method") for b in posted(proxy)]
    assert methods[0] == "server/discover" and "notifications/cancelled" not in methods
    assert [b["params"]["name"] for b in posted(proxy) if b.get("method") == "tools/call"] \
        == ["steps", "echo"]


def test_cancel_a_running_stdio_call_tells_the_server(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    events: list[Any] = []
    servers = {"hang": {"command": misbehave_command("hang", "--record", str(record)),
                        "env": child_env()}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, max_workers=1, retry=FAST_RETRY,
                                 local_servers=servers,
                                 audit=CallableSink(events.append)) as client:
        future = client.submit("hang", "echo", {"x": 1}, timeout=30)
        wait_for(lambda: record.exists() and "tools/call" in record.read_text(), timeout=10,
                 what="the server to take tools/call")
        assert cancel_running(future) < CANCEL_BOUND
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result(timeout=0)
        wait_for(lambda: "notifications/cancelled" in record.read_text(), timeout=5,
                 what="notifications/cancelled to arrive")
        received = [json.loads(line) for line in record.read_text().splitlines()]
        call = next(m for m in received if m.get("method") == "tools/call")
        cancel = next(m for m in received if m.get("method") == "notifications/cancelled")
        assert cancel["params"] == {"requestId": call["id"], "reason": "cancelled"}
        assert [m.get("method") for m in received].count("tools/call") == 1  # not retried
        breaker = client.breaker_for("hang")
        assert (breaker.failure_count, breaker.state) == (0, "closed")
        audited = wait_for(lambda: [e for e in events if e.event_type == "tool_invocation"],
                           timeout=5, what="the audit event")
        assert [(e.outcome, e.error_type) for e in audited] == [("error", "CallCancelled")]
        # The session still answers, and the only worker is free at once.
        assert [t.name for t in client.list_tools("hang")] == ["echo"]
        started = time.monotonic()
        again = client.submit("hang", "echo", {"x": 2}, timeout=30)
        wait_for(again.running, timeout=5, interval=0.005, what="the next call to start")
        assert time.monotonic() - started < WORKER_BOUND
        assert again.cancel() is True


@pytest.mark.realcomp
def test_cancel_a_running_call_to_the_official_stdio_server(
    mcp_sdk_server_command: list[str],
) -> None:
    events: list[Any] = []
    servers = {"sdk": {"command": list(mcp_sdk_server_command)}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, max_workers=1, retry=FAST_RETRY,
                                 local_servers=servers,
                                 audit=CallableSink(events.append)) as client:
        client.list_tools("sdk")
        events.clear()
        future = client.submit("sdk", "slow", {"seconds": 60}, timeout=30)
        wait_for(future.running, timeout=10, what="the call to start")
        assert cancel_running(future) < CANCEL_BOUND
        check_cancelled(future, client, "sdk", events)


def test_a_pending_future_is_cancelled_as_before(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    servers = {"hang": {"command": misbehave_command("hang", "--record", str(record)),
                        "env": child_env()}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, max_workers=1, retry=FAST_RETRY,
                                 local_servers=servers, audit=[]) as client:
        first = client.submit("hang", "echo", {"n": 1}, timeout=30)
        queued = client.submit("hang", "echo", {"n": 2}, timeout=30)
        wait_for(first.running, timeout=10, what="the first call to start")
        assert not queued.running()
        assert queued.cancel() is True and queued.cancelled()
        wait_for(lambda: record.exists() and "tools/call" in record.read_text(), timeout=10,
                 what="the server to take tools/call")
        assert first.cancel() is True
        wait_for(lambda: "notifications/cancelled" in record.read_text(),
                 timeout=5, what="notifications/cancelled")
        received = [json.loads(line) for line in record.read_text().splitlines()]
        assert [m["params"]["arguments"] for m in received
                if m.get("method") == "tools/call"] == [{"n": 1}]  # the queued one never ran
