"""Local MCP servers through GatewayClient: the same pipeline as gateway calls, over stdio."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support import FAST_RETRY, child_env, demo_server_command, in_child, misbehave_command

import sark_sync

UNUSED_GATEWAY = "http://127.0.0.1:9"  # local calls never touch it


def local_client(**options: Any) -> sark_sync.GatewayClient:
    servers = options.pop("local_servers", None) or {
        "demo": {"command": demo_server_command(), "env": child_env()}}
    options.setdefault("retry", FAST_RETRY)
    return sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers=servers, **options)


def test_invoke_tool_on_a_local_server_returns_a_tool_result() -> None:
    with local_client() as client:
        result = client.invoke_tool("demo", "add", {"a": 2, "b": 40})
    assert result.structured == {"sum": 42}
    assert (result.server, result.tool, result.is_error, result.attempts) == ("demo", "add",
                                                                              False, 1)


def test_list_tools_of_a_local_server_has_schemas_and_annotations() -> None:
    with local_client() as client:
        tools = {t.name: t for t in client.list_tools(server="demo")}
        assert [t.name for t in client.iter_tools(server="demo")] == list(tools)
    assert tools["echo"].annotations.read_only_hint is True
    assert tools["add"].server_name == "demo"
    assert "a" in tools["add"].input_schema["properties"]


def test_submit_and_invoke_many_reach_local_servers() -> None:
    with local_client() as client:
        assert client.submit("demo", "echo", {"text": "f"}).result(timeout=10).text == "f"
        results = client.invoke_many(
            [sark_sync.ToolCall("demo", "add", {"a": n, "b": n}) for n in range(30)])
    assert [r.structured["sum"] for r in results] == [2 * n for n in range(30)]


def test_crash_fails_the_call_and_the_next_call_restarts_the_server() -> None:
    with local_client() as client:
        first_pid = client.invoke_tool("demo", "env", {"name": "PATH"}) and _pid(client)
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            client.invoke_tool("demo", "crash", {"code": 4})
        assert caught.value.returncode == 4 and caught.value.attempts == 1
        assert client.invoke_tool("demo", "echo", {"text": "back"}).text == "back"
        assert _pid(client) != first_pid


def test_restarts_are_bounded_by_the_restart_policy() -> None:
    with local_client(restart=sark_sync.RestartPolicy(max_restarts=1, backoff=0)) as client:
        for _ in range(2):
            with pytest.raises(sark_sync.ProcessExitedError):
                client.invoke_tool("demo", "crash")
        with pytest.raises(sark_sync.ProcessExitedError, match="not restarting it again"):
            client.invoke_tool("demo", "echo", {"text": "x"})


def test_read_only_tool_is_retried_after_a_crash_within_the_attempts() -> None:
    servers = {"flaky": {"command": misbehave_command("crash_mid_call"),
                         "env": child_env()}}
    retry = sark_sync.RetryPolicy(attempts=2, backoff_base=0.01)
    with local_client(local_servers=servers, retry=retry,
                      restart=sark_sync.RestartPolicy(backoff=0)) as client:
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            client.invoke_tool("flaky", "echo", {"x": 1})
    assert caught.value.attempts == 2  # echo is readOnlyHint: retried once, on a new process
    assert caught.value.returncode == 7


def test_tool_with_side_effects_is_not_retried_after_a_crash() -> None:
    with local_client(retry=sark_sync.RetryPolicy(attempts=5)) as client:
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            client.invoke_tool("demo", "crash")
    assert caught.value.attempts == 1


def test_deadline_bounds_a_hung_local_call() -> None:
    with local_client() as client:
        client.invoke_tool("demo", "echo", {"text": "warm"})
        started = time.monotonic()
        with pytest.raises(sark_sync.DeadlineExceeded) as caught:
            client.invoke_tool("demo", "slow", {"seconds": 10}, timeout=0.5)
        assert time.monotonic() - started < 0.9
        assert isinstance(caught.value.last_error, sark_sync.TransportTimeout)
        assert client.invoke_tool("demo", "echo", {"text": "ok"}).text == "ok"


def test_breaker_of_a_local_server_opens_after_five_crashes() -> None:
    restart = sark_sync.RestartPolicy(max_restarts=10, backoff=0)
    with local_client(restart=restart) as client:
        for _ in range(5):
            with pytest.raises(sark_sync.ProcessExitedError):
                client.invoke_tool("demo", "crash")
        with pytest.raises(sark_sync.CircuitOpenError) as caught:
            client.invoke_tool("demo", "echo", {"text": "x"})
    assert caught.value.breaker == "local:demo"


def test_transport_mode_restricts_which_servers_can_be_called() -> None:
    with local_client(transport_mode="http") as client:
        with pytest.raises(sark_sync.TransportNotAvailableError):
            client.invoke_tool("demo", "echo", {"text": "x"})
    with local_client(transport_mode="stdio") as client:
        assert client.invoke_tool("demo", "echo", {"text": "x"}).text == "x"
        with pytest.raises(sark_sync.TransportNotAvailableError):
            client.list_servers()


def test_connect_local_server_routes_invoke_tool_until_closed() -> None:
    with local_client() as client:
        with client.connect_local_server(demo_server_command(), env=child_env(),
                                         name="adhoc") as session:
            assert session.call_tool("echo", {"text": "direct"}).text == "direct"
            assert client.invoke_tool("adhoc", "echo", {"text": "routed"}).text == "routed"
        with pytest.raises(sark_sync.ProcessExitedError, match="connect it again"):
            client.invoke_tool("adhoc", "echo", {"text": "x"})
        session = client.connect_local_server(demo_server_command(), env=child_env(),
                                              name="left-open")
    assert not session.alive  # client.close() closed what the caller left open


def test_on_notification_receives_local_server_messages() -> None:
    seen: list[tuple[str, str, Any]] = []
    with local_client(on_notification=lambda s, m, p: seen.append((s, m, p))) as client:
        client.invoke_tool("demo", "log", {"level": "info", "message": "hello"})
    assert seen == [("demo", "notifications/message",
                     {"level": "info", "logger": "demo", "data": "hello"})]


def test_invalid_local_server_configuration_is_rejected_at_construction() -> None:
    for bad in ({"bad name!": ["x"]}, {"ok": "python server.py"}, {"ok": {"cmd": ["x"]}}):
        with pytest.raises(sark_sync.ConfigurationError):
            sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers=bad)


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_starts_its_own_server_and_never_touches_the_parents() -> None:
    with local_client() as client:
        client.invoke_tool("demo", "echo", {"text": "parent"})
        parent_pid = _pid(client)

        def call_in_child() -> Any:
            text = client.invoke_tool("demo", "echo", {"text": "child"}).text
            child_server = _pid(client)
            client.close()
            return [text, child_server]

        reported = in_child(call_in_child)
        assert reported[0] == "child" and reported[1] != parent_pid
        assert _pid(client) == parent_pid  # the parent's server survived the child's close()
        assert client.invoke_tool("demo", "echo", {"text": "again"}).text == "again"


def _pid(client: sark_sync.GatewayClient) -> int | None:
    entry = client._state().local._entries["demo"]
    return entry.server.pid if entry.server is not None else None
