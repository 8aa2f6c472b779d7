"""A call's ``headers=`` (and a ``with_options`` view's) to a remote MCP server, through a
recording proxy in front of the official MCP server: they go on the POST of that call's
``tools/call`` only (Streamable HTTP and HTTP+SSE), replacing the session's header of the same
name, never on the session's handshake, listings or notifications, which every caller shares."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from realcomp.fixtures import McpHttpServer
from realcomp.recording_proxy import Exchange, RecordingProxy

import sark_sync

pytestmark = [pytest.mark.realcomp, pytest.mark.timeout(60)]

V2025 = "2025-11-25"


def rpc_method(exchange: Exchange) -> Any:
    body = json.loads(exchange.body) if exchange.body else None
    return body.get("method") if isinstance(body, dict) else None


@pytest.mark.parametrize("mode", ["stateful", "legacy-sse"])
def test_a_calls_headers_go_on_its_tools_call_post_only(
    mode: str, mcp_http_server: Callable[..., McpHttpServer],
    recording_proxy: Callable[[str], RecordingProxy],
) -> None:
    proxy = recording_proxy(mcp_http_server(mode).url)
    spec = {"url": proxy.url, "protocol_version": V2025,
            "headers": {"X-Tenant": "session-wide", "X-Static": "kept"}}
    with sark_sync.GatewayClient("http://127.0.0.1:9", remote_servers={"sdk": spec}) as client:
        first = client.invoke_tool("sdk", "add", {"a": 1, "b": 2},
                                   headers={"x-tenant": "per-call", "X-Trace": "t-1"})
        second = client.invoke_tool("sdk", "echo", {"text": "hi"})
        viewed = client.with_options(headers={"X-Trace": "from-view"}).invoke_tool(
            "sdk", "echo", {"text": "v"})
    assert (first.structured, second.text, viewed.text) == ({"sum": 3}, "hi", "v")
    posts = [x for x in proxy.requests if x.method == "POST" and x.status in (200, 202)]
    calls = [x for x in posts if rpc_method(x) == "tools/call"]
    others = [x for x in posts if rpc_method(x) not in ("tools/call", None)]
    assert {rpc_method(x) for x in others} >= {"initialize", "notifications/initialized",
                                               "tools/list"}
    assert [(x.header("X-Tenant"), x.header("X-Trace"), x.header("X-Static")) for x in calls] \
        == [("per-call", "t-1", "kept"), ("session-wide", None, "kept"),
            ("session-wide", "from-view", "kept")]
    for x in calls[:1]:  # the per-call spelling replaced the session's: one X-Tenant only
        assert [k for k, _ in x.headers if k.lower() == "x-tenant"] == ["x-tenant"]
    assert all(x.header("X-Tenant") == "session-wide" and x.header("X-Trace") is None
               for x in others)


def test_a_local_server_in_a_view_with_headers_is_called_without_them(
    mcp_client_stdio_command: list[str],
) -> None:
    with sark_sync.GatewayClient("http://127.0.0.1:9",
                                 local_servers={"local": mcp_client_stdio_command}) as client:
        view = client.with_options(headers={"X-Tenant": "acme"})
        names = {t.tool_name for t in view.list_tools("local")}
        tool = "echo" if "echo" in names else sorted(names)[0]
        assert view.invoke_tool("local", tool, {"text": "hi"}).server == "local"
        with pytest.raises(sark_sync.ValidationError, match="stdio"):
            view.invoke_tool("local", tool, {"text": "hi"}, headers={"X-Tenant": "acme"})
