"""Tools through a real session: outputSchema checks, the tool cache and list_changed.

Against a scripted stdio server (stdio_servers/tool_catalog.py: its added tools crash on their
first call, so a test sees whether the client retries them) and the official SDK server
(tests/realcomp/mcp_client_server.py, mcp 2.3.0: ``bad_output`` violates its outputSchema,
``add_tool`` adds a tool and sends notifications/tools/list_changed), over stdio and HTTP.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_peer import session
from realcomp.client_fixtures import ClientPeer
from support import API_KEY, build_gateway, child_env, wait_for

import sark_sync
from sark_sync import ProcessExitedError, ProtocolError

UNUSED_GATEWAY = "http://127.0.0.1:9"  # MCP servers only: the gateway is never reached
CATALOG = Path(__file__).resolve().parent.parent / "stdio_servers" / "tool_catalog.py"


@pytest.fixture
def catalog(tmp_path: Path) -> list[str]:
    return [sys.executable, str(CATALOG), str(tmp_path / "state.json")]


@pytest.fixture
def local(catalog: list[str]) -> Iterator[sark_sync.LocalServer]:
    with sark_sync.LocalServer(catalog, env=child_env(), name="catalog", timeout=10) as server:
        yield server


# -- the scripted server ------------------------------------------------------------------------

def test_listed_tools_keep_title_output_schema_icons_and_meta(
        local: sark_sync.LocalServer) -> None:
    measure = {tool.name: tool for tool in local.list_tools()}["measure"]
    assert measure.title == "Measure"
    assert measure.output_schema is not None and measure.output_schema["required"] == [
        "value", "unit"]
    assert measure.icons == ({"src": "data:image/png;base64,AA=="},)
    assert measure.meta == {"example/kind": "reading"}


def test_a_result_that_violates_the_output_schema_is_a_protocol_error(
        local: sark_sync.LocalServer) -> None:
    assert local.call_tool("measure", {"value": 3}).structured == {"value": 3, "unit": "m"}
    with pytest.raises(ProtocolError) as caught:
        local.call_tool("measure", {"value": "sk-secret-1234", "note": "sk-secret-1234"})
    error = caught.value
    assert (error.server, error.tool) == ("catalog", "measure")
    assert "$.value fails 'type'" in error.message and "catalog" in error.message
    assert "sk-secret" not in str(error)
    with pytest.raises(ProtocolError, match="without structuredContent"):
        local.call_tool("plain", {})
    assert local.alive  # a bad result fails the call, not the session


def test_the_first_call_lists_the_tools_so_it_is_checked(catalog: list[str]) -> None:
    with sark_sync.LocalServer(catalog, env=child_env(), name="fresh") as server:
        with pytest.raises(ProtocolError, match="does not match its outputSchema"):
            server.call_tool("measure", {"value": 1.5})


def test_after_list_changed_the_next_listing_and_call_know_the_new_tool(
        local: sark_sync.LocalServer) -> None:
    assert local.tool_retry_safe("reader") is None
    local.call_tool("grow", {"name": "reader", "safe": True})
    assert "reader" in [tool.name for tool in local.list_tools()]
    assert local.tool_retry_safe("reader") is True


def test_the_new_tools_annotations_decide_its_retries_through_the_client(
        catalog: list[str]) -> None:
    with sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers={
            "catalog": {"command": catalog, "env": child_env()}}) as client:
        assert "safe_one" not in [tool.name for tool in client.list_tools("catalog")]
        client.invoke_tool("catalog", "grow", {"name": "safe_one", "safe": True})
        client.invoke_tool("catalog", "grow", {"name": "unsafe_one", "safe": False})
        names = [tool.name for tool in client.list_tools("catalog")]
        assert "safe_one" in names and "unsafe_one" in names
        # Each crashes the server on its first call: only the annotated one is tried again.
        result = client.invoke_tool("catalog", "safe_one", {})
        assert (result.text, result.attempts) == ("safe_one ran", 2)
        with pytest.raises(ProcessExitedError):
            client.invoke_tool("catalog", "unsafe_one", {})


def test_list_changed_between_calls_refreshes_retry_safety_without_a_listing(
        catalog: list[str]) -> None:
    """No list_tools here: the call after the notification lists the tools itself."""
    with sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers={
            "catalog": {"command": catalog, "env": child_env()}}) as client:
        client.invoke_tool("catalog", "grow", {"name": "later", "safe": True})
        assert client.invoke_tool("catalog", "later", {}).attempts == 2


def test_the_local_gateway_republishes_title_output_schema_icons_meta(
        catalog: list[str]) -> None:
    with build_gateway("empty") as gateway:
        gateway.add_stdio_server("catalog", catalog, env=child_env())
        with sark_sync.GatewayClient(gateway.url, api_key=API_KEY) as client:
            tools = {tool.name: tool for tool in client.list_tools("catalog")}
    measure, plain = tools["measure"], tools["plain"]
    assert (measure.title, measure.meta) == ("Measure", {"example/kind": "reading"})
    assert measure.output_schema == plain.output_schema and measure.output_schema is not None
    assert measure.icons == ({"src": "data:image/png;base64,AA=="},)
    assert (plain.title, plain.icons, plain.meta) == (None, (), {})
    assert tools["grow"].output_schema is None


# -- the official SDK server ---------------------------------------------------------------------

@pytest.mark.realcomp
def test_sdk_output_schema_is_enforced(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        good = server.call_tool("good_output", {"value": 7})
        assert good.structured == {"value": 7, "unit": "m"}
        with pytest.raises(ProtocolError, match=r"tool 'bad_output'.*\$\.value fails 'type'"):
            server.call_tool("bad_output", {})
        listed = {tool.name: tool for tool in server.list_tools()}
        assert listed["bad_output"].output_schema is not None


@pytest.mark.realcomp
@pytest.mark.parametrize("mcp_client_peer", ["stdio", "http-2025"], indirect=True)
def test_sdk_list_changed_shows_the_added_tool(mcp_client_peer: ClientPeer,
                                               request: pytest.FixtureRequest) -> None:
    name = f"added_{mcp_client_peer.kind.replace('-', '_')}_{request.node.name[-8:-1]}"
    name = "".join(c for c in name if c.isalnum() or c == "_")
    with session(mcp_client_peer) as server:
        assert name not in [tool.name for tool in server.list_tools()]
        assert server.tool_retry_safe(name) is None
        assert server.call_tool("add_tool", {"name": name}).text == f"added {name}"
        # No list_tools: the call lists again because the server said its list changed.
        assert server.call_tool(name, {}).text == f"{name} ran"
        assert server.tool_retry_safe(name) is True
        added = {tool.name: tool for tool in server.list_tools()}[name]
        assert added.title == f"Added {name}"
        assert added.annotations.retry_safe


@pytest.mark.realcomp
@pytest.mark.parametrize("mcp_client_peer", ["http-2026"], indirect=True)
def test_sdk_list_changed_at_2026_makes_the_cache_stale_without_any_callback(
        mcp_client_peer: ClientPeer, request: pytest.FixtureRequest) -> None:
    """At 2026-07-28 list changes come only on subscriptions/listen: a session opens it when
    the server declares them, even with no on_notification, or its cached tools (and the
    retries their annotations allow) would never follow the server."""
    stem = "".join(c for c in f"added_2026_{request.node.name[-12:]}" if c.isalnum() or c == "_")
    with session(mcp_client_peer) as server:
        server.list_tools()
        names: list[str] = []

        # The stream opens on a thread of its own; the server drops what it sends before.
        def stale_or_add() -> bool:
            if server._tool_cache.stale:
                return True
            names.append(f"{stem}_{len(names)}")
            server.call_tool("add_tool", {"name": names[-1]})
            return False

        wait_for(stale_or_add, 10, interval=0.05,
                 what="a tools/list_changed to reach the session")
        assert server.tool_retry_safe(names[-1]) is None  # not listed yet
        assert server.call_tool(names[-1], {}).text == f"{names[-1]} ran"
        assert server.tool_retry_safe(names[-1]) is True  # the call listed first


@pytest.mark.realcomp
def test_sdk_added_tool_is_retry_safe_in_the_clients_pool(
        mcp_client_stdio_command: list[str]) -> None:
    with sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers={
            "sdk": mcp_client_stdio_command}) as client:
        client.invoke_tool("sdk", "add_tool", {"name": "pooled"})
        assert client.invoke_tool("sdk", "pooled", {}).text == "pooled ran"
        pool = client._pipeline.local("sdk")  # what the retry rule asks after a failure
        assert pool is not None and pool.retry_safe("sdk", "pooled") is True
        assert "pooled" in [tool.name for tool in client.list_tools("sdk")]
