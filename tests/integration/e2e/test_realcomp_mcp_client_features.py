"""Resources, templates, subscriptions, prompts, completion and logging against the official
MCP server (tests/realcomp/mcp_client_server.py, mcp 2.3.0) over stdio, Streamable HTTP at
2025-11-25 and at 2026-07-28; and :class:`CapabilityNotSupported` from a server that declares
tools only.
"""

from __future__ import annotations

import logging
import pickle

import pytest
from mcp_peer import Recorder, session
from realcomp.client_fixtures import ClientPeer, McpClientHttpServer
from support import wait_for

from sark_sync import CapabilityNotSupported, Prompt, ResourceTemplate, RPCError, ValidationError
from sark_sync.transports import LocalServer, LogMessage, RemoteServer

pytestmark = pytest.mark.realcomp

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
#: Bound for an update or a log message to reach its callback.
DELIVERY_TIMEOUT = 10.0


def test_list_and_read_static_resources(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        listed = {r.uri: r for r in server.list_resources()}
        assert sorted(listed) == ["demo://binary", "demo://counter", "demo://text"]
        assert [r.uri for r in server.iter_resources()] == [r.uri for r in
                                                            server.list_resources()]
        text = listed["demo://text"]
        assert (text.name, text.title, text.mime_type) == ("text", "Demo text", "text/plain")
        read = server.read_resource("demo://text")
        assert read.text == "hello from the demo server"
        [contents] = read.contents
        assert (contents.uri, contents.mime_type, contents.blob) == (
            "demo://text", "text/plain", None)
        [binary] = server.read_resource("demo://binary").contents
        assert binary.blob == bytes(range(256)) and binary.text is None
        assert binary.mime_type == "application/octet-stream"


def test_resource_templates_read_and_complete(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        [template] = server.list_resource_templates()
        assert isinstance(template, ResourceTemplate)
        assert (template.uri_template, template.name, template.title) == (
            "note://{name}", "note", "Note")
        assert server.read_resource("note://beta").text == "note beta"
        assert server.complete(template, "name", "al").values == ("alpha", "alpine")
        by_reference = {"type": "ref/resource", "uri": "note://{name}"}
        completion = server.complete(by_reference, "name", "b")
        assert (completion.values, completion.total, completion.has_more) == (("beta",), 1,
                                                                              False)


def test_unknown_resource_is_an_rpc_error(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        with pytest.raises(RPCError):
            server.read_resource("demo://missing")
        assert server.read_resource("demo://text").text == "hello from the demo server"


def test_prompts_list_get_and_complete_with_context(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        prompts = {p.name: p for p in server.list_prompts()}
        assert sorted(prompts) == ["greet", "plain"]
        greet = prompts["greet"]
        assert isinstance(greet, Prompt)
        assert [(a.name, a.required) for a in greet.arguments] == [("name", True),
                                                                   ("style", False)]
        result = server.get_prompt("greet", {"name": "Ada", "style": "formal"})
        assert [(m.role, m.text) for m in result.messages] == [
            ("user", "Greet Ada in a formal way.")]
        assert server.get_prompt("plain").messages[0].text == "Say hello."
        assert server.complete(greet, "style", "").values == ("formal", "casual", "pirate")
        # The context (the arguments already chosen) is sent from 2025-06-18 on.
        assert server.complete(greet, "style", "p", context={"name": "Ada"}).values == (
            "pirate", "Ada-style")


def test_a_missing_prompt_argument_is_refused(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        with pytest.raises(RPCError):
            server.get_prompt("greet")
        with pytest.raises(ValidationError):
            server.get_prompt("greet", {"name": 3})  # type: ignore[dict-item]


def test_completion_context_is_not_sent_at_2024_11_05(
        mcp_client_http_server: McpClientHttpServer) -> None:
    """2024-11-05 has no ``context`` (nor the ``completions`` capability: ``complete`` then
    needs ``prompts`` or ``resources``, which this server declares)."""
    with RemoteServer(mcp_client_http_server.url, name="peer",
                      protocol_version="2024-11-05") as server:
        assert server.protocol_version == "2024-11-05"
        completion = server.complete({"type": "ref/prompt", "name": "greet"}, "style", "p",
                                     context={"name": "Ada"})
        assert completion.values == ("pirate",)  # no "Ada-style": no context was sent


@pytest.mark.parametrize("level", ["warning", "debug", "emergency"])
def test_set_logging_level_and_on_log(mcp_client_peer: ClientPeer, level: str) -> None:
    got = Recorder()
    with session(mcp_client_peer, on_log=got) as server:
        server.set_logging_level(level)
        wanted = LEVELS[LEVELS.index(level):]
        assert server.call_tool("log_levels").text == str(len(wanted))
        messages = got.wait(len(wanted), DELIVERY_TIMEOUT)
    assert all(isinstance(m, LogMessage) for m in messages)
    assert [m.level for m in messages] == wanted
    assert {(m.logger, m.server) for m in messages} == {("levels", "peer")}
    assert [m.data for m in messages] == [f"{lvl} message" for lvl in wanted]


def test_log_messages_go_to_python_logging_without_on_log(
        mcp_client_peer: ClientPeer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sark_sync.mcp.peer")
    with session(mcp_client_peer) as server:
        server.set_logging_level("error")
        assert server.call_tool("log_levels").text == "4"
        wait_for(lambda: len([r for r in caplog.records if r.name == "sark_sync.mcp.peer"]) >= 4,
                 DELIVERY_TIMEOUT, interval=0.02,
                 what=lambda: f"4 records of sark_sync.mcp.peer in {caplog.records}")
    records = [r for r in caplog.records if r.name == "sark_sync.mcp.peer"]
    assert [r.levelno for r in records] == [logging.ERROR] + [logging.CRITICAL] * 3
    assert "error message" in records[0].getMessage()


def test_set_logging_level_refuses_an_unknown_level(mcp_client_peer: ClientPeer) -> None:
    with session(mcp_client_peer) as server:
        with pytest.raises(ValidationError):
            server.set_logging_level("verbose")


def test_subscribe_resource_delivers_updates_until_unsubscribed(
        mcp_client_peer: ClientPeer) -> None:
    updates = Recorder()
    with session(mcp_client_peer) as server:
        server.subscribe_resource("demo://counter", updates)
        assert server.call_tool("touch", {"uri": "demo://counter"}).text in ("notified",
                                                                              "published")
        assert updates.wait(1, DELIVERY_TIMEOUT) == ["demo://counter"]
        server.unsubscribe_resource("demo://counter")
        if not mcp_client_peer.modern:  # the server itself knows who subscribed
            assert server.call_tool("touch", {"uri": "demo://counter"}).text == \
                "not subscribed"
        server.unsubscribe_resource("demo://never-subscribed")  # nothing to do, no error


@pytest.mark.parametrize("mcp_client_peer", ["stdio", "http-2025"], indirect=True)
def test_an_update_on_the_session_channel_reaches_the_callback(
        mcp_client_peer: ClientPeer) -> None:
    """Sent on no request: over HTTP it comes on the listening GET stream."""
    updates = Recorder()
    with session(mcp_client_peer) as server:
        server.subscribe_resource("demo://counter", updates)

        def arrived_or_touch() -> bool:  # the GET stream may open after the subscription
            if updates.items:
                return True
            server.call_tool("touch", {"uri": "demo://counter", "channel": "standalone"})
            return False

        wait_for(arrived_or_touch, DELIVERY_TIMEOUT, interval=0.1, what="an update to arrive")
        assert set(updates.items) == {"demo://counter"}


def tools_only(kind: str, command: list[str],
               http: McpClientHttpServer) -> LocalServer | RemoteServer:
    if kind == "stdio":
        return LocalServer(command, name="tools-only")
    version = "2025-11-25" if kind == "http-2025" else "2026-07-28"
    return RemoteServer(http.url, name="tools-only", protocol_version=version)


@pytest.mark.parametrize("kind", ["stdio", "http-2025", "http-2026"])
def test_capability_not_supported_is_raised_before_sending(
        kind: str, mcp_client_tools_only_command: list[str],
        mcp_client_tools_only_http_server: McpClientHttpServer) -> None:
    with tools_only(kind, mcp_client_tools_only_command,
                    mcp_client_tools_only_http_server) as server:
        assert set(server.capabilities) == {"tools"}
        attempts = [
            ("resources", "resources/list", server.list_resources),
            ("resources", "resources/templates/list", server.list_resource_templates),
            ("resources", "resources/read", lambda: server.read_resource("demo://text")),
            ("prompts", "prompts/list", server.list_prompts),
            ("prompts", "prompts/get", lambda: server.get_prompt("greet")),
            ("completions", "completion/complete",
             lambda: server.complete({"type": "ref/prompt", "name": "g"}, "a", "")),
            ("logging", "logging/setLevel", lambda: server.set_logging_level("info")),
        ]
        for capability, method, attempt in attempts:
            with pytest.raises(CapabilityNotSupported) as caught:
                attempt()
            error = caught.value
            assert (error.capability, error.method, error.server) == (capability, method,
                                                                       "tools-only")
            copy = pickle.loads(pickle.dumps(error))
            assert (copy.capability, copy.method, str(copy)) == (capability, method,
                                                                  str(error))
        with pytest.raises(CapabilityNotSupported):
            server.subscribe_resource("demo://text", lambda uri: None)
        assert server.call_tool("echo", {"text": "tools work"}).text == "tools work"
