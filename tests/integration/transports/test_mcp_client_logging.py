"""Log messages and resource subscriptions against the real official MCP SDK server
(``tests/realcomp/mcp_client_server.py``): over stdio, over Streamable HTTP at 2025-11-25
(``logging/setLevel``, ``resources/subscribe``) and at 2026-07-28 (the ``_meta`` log level,
one ``subscriptions/listen`` stream)."""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import pytest
import requests
from realcomp.client_fixtures import ClientPeer, McpClientHttpServer
from support import wait_for

from sark_sync import CapabilityNotSupported, GatewayClient
from sark_sync.transports import LocalServer, RemoteServer
from sark_sync.transports._mcp_client import McpSession
from sark_sync.transports._mcp_logging import LOG_LEVELS, LogMessage

pytestmark = pytest.mark.realcomp

UNUSED_GATEWAY = "http://127.0.0.1:9"  # MCP servers only: the gateway is never reached
HIGH = ["warning", "error", "critical", "alert", "emergency"]


def open_session(peer: ClientPeer, **options: Any) -> McpSession:
    server: McpSession
    if peer.kind == "stdio":
        server = LocalServer(list(peer.command), name="client-peer", **options)
        server.start()
    else:
        assert peer.version is not None
        server = RemoteServer(peer.url, name="client-peer", protocol_version=peer.version,
                              **options).connect()
    return server


def test_on_log_gets_the_levels_asked_for(mcp_client_peer: ClientPeer) -> None:
    got: list[tuple[LogMessage, str]] = []
    with open_session(mcp_client_peer, on_log=lambda m: got.append(
            (m, threading.current_thread().name))) as server:
        server.set_logging_level("warning")
        assert server.call_tool("log_levels", {}).text == "5"
        wait_for(lambda: len(got) == 5)
    assert [(m.level, m.logger, m.data, m.server) for m, _ in got] == [
        (level, "levels", f"{level} message", "client-peer") for level in HIGH]
    assert {name for _, name in got} == {"sark-sync-mcp-client-peer-callbacks"}


def test_without_on_log_the_messages_go_to_python_logging(
        mcp_client_peer: ClientPeer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sark_sync.mcp.client-peer")
    with open_session(mcp_client_peer) as server:
        server.set_logging_level("debug")
        assert server.call_tool("log_levels", {}).text == "8"
    records = [r for r in caplog.records if r.name == "sark_sync.mcp.client-peer"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, "[levels] debug message"), (logging.INFO, "[levels] info message"),
        (logging.INFO, "[levels] notice message"),
        (logging.WARNING, "[levels] warning message"),
        (logging.ERROR, "[levels] error message"),
        (logging.CRITICAL, "[levels] critical message"),
        (logging.CRITICAL, "[levels] alert message"),
        (logging.CRITICAL, "[levels] emergency message")]


def test_a_resource_update_reaches_its_callback_until_unsubscribed(
        mcp_client_peer: ClientPeer) -> None:
    got: list[str] = []
    with open_session(mcp_client_peer) as server:
        server.subscribe_resource("demo://counter", got.append)
        before = server.read_resource("demo://counter").text
        assert server.call_tool("touch", {"uri": "demo://counter"}).text in (
            "notified", "published")
        wait_for(lambda: got == ["demo://counter"])
        assert int(server.read_resource("demo://counter").text) > int(before)
        server.unsubscribe_resource("demo://counter")
        server.subscribe_resource("note://marker", got.append)
        server.call_tool("touch", {"uri": "demo://counter"})
        server.call_tool("touch", {"uri": "note://marker"})
        wait_for(lambda: len(got) == 2)  # in order: an update of the counter came first
    assert got == ["demo://counter", "note://marker"]


def test_a_server_without_logging_or_subscriptions_is_not_asked(
        mcp_client_tools_only_command: list[str]) -> None:
    with LocalServer(mcp_client_tools_only_command) as server:
        with pytest.raises(CapabilityNotSupported):
            server.set_logging_level("info")
        with pytest.raises(CapabilityNotSupported):
            server.subscribe_resource("demo://counter", print)
        assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_at_2026_no_log_reaches_a_client_that_asked_for_none(
        mcp_client_http_server: McpClientHttpServer) -> None:
    got: list[LogMessage] = []
    with RemoteServer(mcp_client_http_server.url, protocol_version="2026-07-28",
                      on_log=got.append) as server:
        assert server.call_tool("log_levels", {}).text == "0"
        server.set_logging_level("critical")
        assert server.call_tool("log_levels", {}).text == "3"
        wait_for(lambda: len(got) == 3)
    assert [m.level for m in got] == ["critical", "alert", "emergency"]


def test_at_2026_list_changes_reach_on_notification(
        mcp_client_http_server: McpClientHttpServer) -> None:
    seen: list[str] = []
    with RemoteServer(mcp_client_http_server.url, name="client-peer",
                      protocol_version="2026-07-28",
                      on_notification=lambda method, params: seen.append(method)) as server:
        assert "sark-sync-mcp-client-peer-subscriptions" in {
            t.name for t in threading.enumerate()}
        # The stream opens on its own thread: announce until it hears one.
        count = 0

        def heard_or_announce() -> bool:
            nonlocal count
            if "notifications/tools/list_changed" in seen:
                return True
            count += 1
            server.call_tool("add_tool", {"name": f"hl_added_{id(seen)}_{count}"})
            return False

        wait_for(heard_or_announce, 10, interval=0.05, what="a list change (none came)")
    assert "sark-sync-mcp-client-peer-subscriptions" not in {
        t.name for t in threading.enumerate()}


def test_a_renewed_session_gets_its_level_and_subscriptions_again(
        mcp_client_http_server: McpClientHttpServer) -> None:
    got: list[str] = []
    with RemoteServer(mcp_client_http_server.url, name="client-peer",
                      protocol_version="2025-11-25", on_log=lambda m: None) as server:
        server.set_logging_level("error")
        server.subscribe_resource("demo://counter", got.append)
        old = server.session_id
        assert old is not None
        requests.delete(mcp_client_http_server.url, timeout=5, headers={
            "Mcp-Session-Id": old, "MCP-Protocol-Version": "2025-11-25"}).raise_for_status()
        # The next call meets a 404, opens a new session and resends; the level and the
        # subscription follow on the callbacks thread.
        assert server.call_tool("echo", {"text": "again"}).text == "again"
        assert server.session_id not in (None, old)
        assert server._tool_cache.stale  # the new session's tools are listed before a call
        wait_for(lambda: server.call_tool("log_levels", {}).text == "4")
        assert not server._tool_cache.stale
        wait_for(lambda: server.call_tool("touch", {"uri": "demo://counter"}).text
                 == "notified")
        wait_for(lambda: got == ["demo://counter"])


def test_the_clients_servers_take_on_log(mcp_client_stdio_command: list[str],
                                         mcp_client_http_server: McpClientHttpServer) -> None:
    got: list[tuple[str, str]] = []

    def on_log(message: LogMessage) -> None:
        got.append((message.server, message.level))

    with GatewayClient(UNUSED_GATEWAY, local_servers={
            "local": {"command": mcp_client_stdio_command, "on_log": on_log}}, remote_servers={
            "remote": {"url": mcp_client_http_server.url, "protocol_version": "2025-11-25",
                       "on_log": on_log}}) as client:
        assert client.invoke_tool("local", "log_levels").text == "8"  # no level set: all
        assert client.invoke_tool("remote", "log_levels").text == "8"
        wait_for(lambda: len(got) == 16)
        held = client.connect_remote_server(mcp_client_http_server.url, name="held",
                                            protocol_version="2026-07-28", on_log=on_log)
        held.set_logging_level("emergency")
        assert client.invoke_tool("held", "log_levels").text == "1"
        wait_for(lambda: len(got) == 17)
    assert sorted(set(got[:16])) == sorted(
        {(server, level) for server in ("local", "remote") for level in LOG_LEVELS})
    assert got[16] == ("held", "emergency")


def test_a_forked_child_gets_its_own_session_with_the_level_and_subscriptions(
        mcp_client_http_server: McpClientHttpServer) -> None:
    updates: list[str] = []
    server = RemoteServer(mcp_client_http_server.url, name="client-peer",
                          protocol_version="2025-11-25", on_log=lambda m: None).connect()
    server.set_logging_level("error")
    server.subscribe_resource("demo://counter", updates.append)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        code = 1
        try:
            os.close(read_fd)
            wait_for(lambda: server.call_tool("log_levels", {}).text == "4")
            wait_for(lambda: server.call_tool("touch", {"uri": "demo://counter"}).text
                     == "notified")
            wait_for(lambda: updates == ["demo://counter"])
            os.write(write_fd, json.dumps(["ok", server.session_id]).encode())
            server.close()
            code = 0
        except BaseException as exc:
            os.write(write_fd, json.dumps(["error", repr(exc)]).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            report = json.loads(pipe.read() or b"null")  # EOF when the child exits
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report[0] == "ok" and report[1] not in (None, server.session_id)
    assert server.call_tool("log_levels", {}).text == "4"  # the parent's session kept its own
    server.close()
