"""32 threads through one remote MCP session, directly and through the client's pipeline,
against the official MCP server (mcp 2.3.0) behind the recording proxy: every result is the
answer to its own call (each echoes a unique value), nothing fails, and the server saw each
call once."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import RecordingProxy

import sark_sync
from sark_sync.transports._mcp_remote import RemoteServer

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(90)]

THREADS = 32
#: (server mode, protocol_version): a 2025 session over SSE answers, sessionless JSON, and
#: the 2026-07-28 revision the official server offers to a client that probes for it.
CASES = [("stateful", "2025-11-25"), ("stateless-json", "2025-11-25"), ("stateful", "auto")]


def run_together(call: Callable[[int], Any]) -> dict[int, Any]:
    """``call(n)`` on THREADS threads released together; each result or exception by n."""
    barrier = threading.Barrier(THREADS, timeout=20)
    results: dict[int, Any] = {}

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = call(n)
        except Exception as exc:  # reported by the caller's assertion
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,), name=f"caller-{n}")
               for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def echoed(proxy: RecordingProxy) -> list[str]:
    texts = []
    for exchange in proxy.requests:
        body = json.loads(exchange.body) if exchange.body else None
        if isinstance(body, dict) and body.get("method") == "tools/call":
            texts.append(body["params"]["arguments"]["text"])
    return texts


@pytest.mark.parametrize(("mode", "version"), CASES)
def test_32_threads_sharing_one_remote_server_each_get_their_own_result(
    mode: str, version: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    with RemoteServer(proxy.url, timeout=30, protocol_version=version) as server:
        results = run_together(
            lambda n: server.call_tool("echo", {"text": f"value-{n}"}).text)
        assert server.call_tool("echo", {"text": "after"}).text == "after"
    assert results == {n: f"value-{n}" for n in range(THREADS)}
    assert sorted(echoed(proxy)) == sorted([f"value-{n}" for n in range(THREADS)] + ["after"])


@pytest.mark.parametrize(("mode", "version"), CASES)
def test_32_threads_through_invoke_tool_on_one_remote_server_each_get_their_own_result(
    mode: str, version: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    spec = {"url": proxy.url, "protocol_version": version}
    with sark_sync.GatewayClient("http://127.0.0.1:9", audit=[], max_workers=THREADS,
                                 remote_servers={"sdk": spec}) as client:
        results = run_together(
            lambda n: client.invoke_tool("sdk", "add", {"a": n, "b": 1000}, timeout=30))
    assert {n: (r.structured, r.server, r.tool, r.attempts) for n, r in results.items()} == {
        n: ({"sum": n + 1000}, "sdk", "add", 1) for n in range(THREADS)}
    connects = [x for x in proxy.requests if x.body and json.loads(x.body).get("method")
                in ("initialize", "server/discover")]
    assert len(connects) == 1  # the 32 first calls shared one connection of the session
    calls = [json.loads(x.body)["params"]["arguments"]["a"] for x in proxy.requests
             if x.body and json.loads(x.body).get("method") == "tools/call"]
    assert sorted(calls) == list(range(THREADS))  # each sent once
