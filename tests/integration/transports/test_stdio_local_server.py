"""LocalServer against the demo MCP server: the handshake, tools, calls and notifications."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import child_env, demo_server_command, wait_for

import sark_sync


@pytest.fixture
def server() -> Iterator[sark_sync.LocalServer]:
    with sark_sync.LocalServer(demo_server_command(), env=child_env(), name="demo") as local:
        yield local


def test_handshake_negotiates_the_newest_protocol(server: sark_sync.LocalServer) -> None:
    assert server.protocol_version == "2025-11-25"
    assert server.server_info["name"] == "sark-sync-demo"
    assert "tools" in server.capabilities
    assert server.alive and server.pid is not None


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18"])
def test_older_supported_versions_are_accepted(version: str) -> None:
    command = demo_server_command("--protocol-version", version)
    with sark_sync.LocalServer(command, env=child_env()) as local:
        assert local.protocol_version == version
        assert local.call_tool("echo", {"text": "ok"}).text == "ok"


def test_unsupported_protocol_version_is_a_clear_protocol_error() -> None:
    command = demo_server_command("--protocol-version", "1999-01-01")
    local = sark_sync.LocalServer(command, env=child_env())
    with pytest.raises(sark_sync.ProtocolError, match="1999-01-01"):
        local.start()
    assert not local.alive


def test_list_tools_follows_cursor_pages() -> None:
    command = demo_server_command("--tools", "120", "--page-size", "50")
    with sark_sync.LocalServer(command, env=child_env(), name="many") as local:
        tools = local.list_tools()
    generated = [t.name for t in tools if t.name.startswith("tool_")]
    assert generated == [f"tool_{n:03d}" for n in range(120)]
    assert all(t.server_name == "many" for t in tools)


def test_tools_carry_their_schema_and_annotations(server: sark_sync.LocalServer) -> None:
    tools = {t.name: t for t in server.list_tools()}
    assert tools["add"].input_schema["properties"].keys() >= {"a", "b"}
    assert tools["echo"].annotations.read_only_hint is True


def test_call_tool_returns_a_tool_result(server: sark_sync.LocalServer) -> None:
    result = server.call_tool("add", {"a": 2, "b": 3})
    assert result.structured == {"sum": 5}
    assert result.is_error is False and result.server == "demo" and result.tool == "add"


def test_tool_error_is_a_result(server: sark_sync.LocalServer) -> None:
    result = server.call_tool("fail", {"message": "nope"})
    assert result.is_error is True and "nope" in result.text


def test_unknown_tool_is_an_rpc_error(server: sark_sync.LocalServer) -> None:
    with pytest.raises(sark_sync.RPCError) as caught:
        server.call_tool("missing")
    assert caught.value.code == -32602


def test_progress_notifications_reach_the_callback(server: sark_sync.LocalServer) -> None:
    seen: list[tuple[float, Any]] = []
    result = server.call_tool("slow", {"seconds": 0.1, "steps": 4},
                              progress=lambda progress, total, message: seen.append(
                                  (progress, total)))
    assert result.text == "done"
    assert [p for p, _ in seen] == [1.0, 2.0, 3.0, 4.0]
    assert {total for _, total in seen} == {4.0}


def test_log_and_list_changed_notifications_reach_on_notification() -> None:
    seen: list[tuple[str, Any]] = []
    with sark_sync.LocalServer(demo_server_command(), env=child_env(),
                               on_notification=lambda m, p: seen.append((m, p))) as local:
        local.call_tool("log", {"level": "warning", "message": "disk almost full"})
        local.call_tool("notify_list_changed")
    methods = [method for method, _ in seen]
    assert methods == ["notifications/message", "notifications/tools/list_changed"]
    assert seen[0][1]["data"] == "disk almost full"


def test_server_ping_is_answered_and_other_requests_get_method_not_found(
    server: sark_sync.LocalServer,
) -> None:
    assert server.call_tool("ping_client").text == "pong received"
    assert "-32601" in server.call_tool("ask_client").text


def test_timeout_sends_cancelled_and_the_server_stays_usable(server: sark_sync.LocalServer
                                                             ) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout):
        server.call_tool("slow", {"seconds": 10}, timeout=0.3)
    assert time.monotonic() - started < 0.6
    assert server.call_tool("echo", {"text": "still here"}).text == "still here"
    wait_for(lambda: "cancelling call" in server.stderr_tail, timeout=5,
               what=lambda: f"the cancellation in the server's log: {server.stderr_tail!r}")
    assert "timeout" in server.stderr_tail.splitlines()[-1]


def test_500_sequential_and_8_thread_concurrent_calls_correlate(server: sark_sync.LocalServer
                                                               ) -> None:
    for n in range(500):
        assert server.call_tool("add", {"a": n, "b": 1}).structured == {"sum": n + 1}
    errors: list[str] = []

    def work(worker: int) -> None:
        for n in range(100):
            text = f"{worker}-{n}"
            if server.call_tool("echo", {"text": text}).text != text:
                errors.append(text)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_child_environment_holds_only_the_allow_list_and_what_was_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SARK_TEST_PARENT_SECRET", "s3cr3t-parent-value")
    with sark_sync.LocalServer(demo_server_command(), env=child_env(EXTRA="given")) as local:
        assert local.call_tool("env", {"name": "SARK_TEST_PARENT_SECRET"}).structured in (
            None, {"value": None})
        assert "s3cr3t-parent-value" not in local.call_tool(
            "env", {"name": "SARK_TEST_PARENT_SECRET"}).text
        assert "given" in local.call_tool("env", {"name": "EXTRA"}).text
        assert "PYTHONUNBUFFERED" not in local.call_tool("env", {"name": "PYTHONUNBUFFERED"}
                                                         ).text.replace("null", "")


def test_command_that_does_not_exist_raises_process_start_error() -> None:
    with pytest.raises(sark_sync.ProcessStartError) as caught:
        sark_sync.LocalServer(["/nonexistent/mcp-server"]).start()
    assert isinstance(caught.value, OSError)
    assert "/nonexistent/mcp-server" in str(caught.value)


def test_crash_fails_the_pending_call_at_once_with_exit_code_and_stderr(
    server: sark_sync.LocalServer,
) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        server.call_tool("crash", {"code": 5}, timeout=20)
    assert time.monotonic() - started < 2
    assert caught.value.returncode == 5
    assert "crashing on purpose" in caught.value.stderr_tail
    assert not server.alive
