"""LocalGateway hosting stdio MCP servers: the demo MCP server as a real child
process behind real loopback sockets, seen through plain HTTP and through GatewayClient.

Pinned here: the catalogue carries the server's own ``inputSchema`` and ``annotations``;
results, tool errors and upstream failures (502 crash / JSON-RPC error, 504 timeout) map as
the API says; a crashed server is reported unhealthy and restarted by the next invoke within
its budget; Idempotency-Key deduplication sits above the stdio call; and no process outlives
``stop()``, ``remove_server()`` or ``sark-sync serve``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import AUTH, error_of, gateway_threads
from support import API_KEY, WAIT, build_gateway, child_env, read_line, wait_for

import sark_sync
from sark_sync.cli import _main as cli
from sark_sync.testing import LocalGateway
from sark_sync.testing.stdio._demo_server import BUILTIN_TOOLS
from sark_sync.testing.stdio._hosting import MAX_RESTARTS

DEMO = [sys.executable, "-m", "sark_sync.testing.demo_server"]
#: Seconds the demo server's ``slow`` tool may take in these tests before the gateway gives up.
CALL_TIMEOUT = 0.5


def _demo_over_stdio(gateway: LocalGateway) -> None:
    gateway.add_stdio_server(
        "demo", DEMO, env=child_env(), sensitivity_level="low", authorized_teams=("data",),
        call_timeout=CALL_TIMEOUT,
    )


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """A gateway hosting only the demo MCP server over stdio (low, team data)."""
    return make_gateway(_demo_over_stdio)


def invoke(http: requests.Session, gateway: LocalGateway, tool: str, parameters: Any = None,
           **headers: str) -> requests.Response:
    body = {"server": "demo", "tool": tool, "parameters": parameters or {}}
    return http.post(f"{gateway.url}/api/v1/invoke", json=body, headers={**AUTH, **headers})


def server_info(http: requests.Session, gateway: LocalGateway) -> dict[str, Any]:
    info: dict[str, Any] = http.get(f"{gateway.url}/api/v1/servers/demo", headers=AUTH).json()
    listed = http.get(f"{gateway.url}/api/v1/servers", headers=AUTH).json()["servers"]
    assert [s["health_status"] for s in listed] == [info["health_status"]]
    return info


def demo_pid(gateway: LocalGateway) -> int:
    host = gateway._hosting.get("demo")
    assert host is not None and host.pid is not None
    return host.pid


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists (reaped, not a zombie)."""
    return not os.path.exists(f"/proc/{pid}")


# -- catalogue -------------------------------------------------------------------------------


def test_stdio_server_info_reports_transport_tools_count_and_health(
    gateway: LocalGateway, http: requests.Session
) -> None:
    info = server_info(http, gateway)
    assert info["transport"] == "stdio"
    assert info["server_url"] == "stdio://local/demo"
    assert info["tools_count"] == len(BUILTIN_TOOLS)
    assert info["health_status"] == "healthy"
    assert (info["sensitivity_level"], info["authorized_teams"]) == ("low", ["data"])
    assert http.get(f"{gateway.url}/health").json()["servers"] == 1


def test_stdio_tools_carry_the_servers_input_schema_and_camelcase_annotations(
    gateway: LocalGateway, http: requests.Session
) -> None:
    page = http.get(f"{gateway.url}/api/v1/tools", params={"server": "demo"}, headers=AUTH).json()
    assert page["total"] == len(BUILTIN_TOOLS)
    assert [t["tool_name"] for t in page["tools"]] == [t["name"] for t in BUILTIN_TOOLS]
    for listed, declared in zip(page["tools"], BUILTIN_TOOLS):
        assert listed["server_name"] == "demo"
        assert listed["description"] == declared["description"]
        assert listed["input_schema"] == declared["inputSchema"]
        assert listed["annotations"] == declared["annotations"]  # e.g. {"readOnlyHint": true}


def test_gateway_client_lists_stdio_tools_with_parsed_annotations(
    client: sark_sync.GatewayClient,
) -> None:
    tools = {t.name: t for t in client.list_tools(server="demo")}
    assert tools["echo"].annotations.read_only_hint is True
    assert tools["crash"].annotations.destructive_hint is True
    assert tools["add"].input_schema["required"] == ["a", "b"]


# -- calls -----------------------------------------------------------------------------------


def test_invoke_echo_and_add_return_the_servers_call_tool_result(
    gateway: LocalGateway, http: requests.Session
) -> None:
    echo = invoke(http, gateway, "echo", {"text": "hi"})
    assert echo.status_code == 200
    assert echo.json()["result"] == {"content": [{"type": "text", "text": "hi"}], "isError": False}
    add = invoke(http, gateway, "add", {"a": 2, "b": 3.5}).json()
    assert (add["server"], add["tool"], add["filtered"]) == ("demo", "add", [])
    assert add["result"] == {
        "content": [{"type": "text", "text": "5.5"}],
        "structuredContent": {"sum": 5.5},
        "isError": False,
    }


def test_a_tool_error_is_a_200_result_with_is_error(
    gateway: LocalGateway, http: requests.Session, client: sark_sync.GatewayClient
) -> None:
    response = invoke(http, gateway, "fail", {"message": "nope"})
    assert response.status_code == 200
    assert response.json()["result"] == {
        "content": [{"type": "text", "text": "nope"}], "isError": True,
    }
    result = client.invoke_tool("demo", "fail", {"message": "again"})
    assert (result.is_error, result.text) == (True, "again")


def test_gateway_client_gets_text_and_structured_content(
    client: sark_sync.GatewayClient,
) -> None:
    assert client.invoke_tool("demo", "echo", {"text": "héllo"}).text == "héllo"
    result = client.invoke_tool("demo", "add", {"a": 1, "b": 2})
    assert (result.structured, result.is_error, result.text) == ({"sum": 3}, False, "3")


def test_the_same_tool_through_the_gateway_and_a_local_session_gives_the_same_result(
    client: sark_sync.GatewayClient,
) -> None:
    through_gateway = client.invoke_tool("demo", "add", {"a": 20, "b": 22})
    with sark_sync.LocalServer(DEMO, env=child_env()) as local:
        direct = local.call_tool("add", {"a": 20, "b": 22})
    assert through_gateway.content == direct.content
    assert through_gateway.structured == direct.structured == {"sum": 42}
    assert through_gateway.is_error is direct.is_error is False


def test_a_tool_the_server_does_not_list_is_a_404_not_retried(
    gateway: LocalGateway, http: requests.Session, client: sark_sync.GatewayClient
) -> None:
    """The demo server would answer JSON-RPC -32602 (invalid params) to an unknown tool; the
    gateway refuses a tool the server does not list before calling it: 404, as for an
    unknown tool of any other server, and the client does not retry it."""
    error = error_of(invoke(http, gateway, "no_such_tool"), 404, "not_found")
    assert error["message"] == "tool 'no_such_tool' not found on server 'demo'"
    with pytest.raises(sark_sync.NotFoundError) as info:
        client.invoke_tool("demo", "no_such_tool")
    assert info.value.attempts == 1
    assert server_info(http, gateway)["health_status"] == "healthy"


def test_a_call_slower_than_call_timeout_is_a_504_and_the_server_stays_up(
    gateway: LocalGateway, http: requests.Session
) -> None:
    error = error_of(invoke(http, gateway, "slow", {"seconds": 10}), 504, "upstream_timeout")
    assert f"{CALL_TIMEOUT:g}s" in error["message"]
    assert invoke(http, gateway, "echo", {"text": "still here"}).status_code == 200
    assert server_info(http, gateway)["health_status"] == "healthy"


def test_a_server_that_exits_mid_call_is_a_502_with_the_exit_code_but_not_its_stderr(
    gateway: LocalGateway, http: requests.Session
) -> None:
    pid = demo_pid(gateway)
    error = error_of(invoke(http, gateway, "crash", {"code": 7}), 502, "upstream_error")
    assert "exited with code 7" in error["message"]
    assert "crashing on purpose" not in error["message"]  # the demo server's stderr line
    assert server_info(http, gateway)["health_status"] == "unhealthy"
    wait_for(lambda: gone(pid))  # reaped: the gateway keeps no zombie


def test_the_next_invoke_restarts_a_crashed_server_and_it_is_healthy_again(
    gateway: LocalGateway, http: requests.Session
) -> None:
    first = demo_pid(gateway)
    assert invoke(http, gateway, "crash").status_code == 502
    assert server_info(http, gateway)["health_status"] == "unhealthy"
    response = invoke(http, gateway, "echo", {"text": "back"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"] == [{"type": "text", "text": "back"}]
    assert demo_pid(gateway) != first
    info = server_info(http, gateway)
    assert (info["health_status"], info["tools_count"]) == ("healthy", len(BUILTIN_TOOLS))


def test_past_the_restart_budget_invokes_answer_502_without_restarting(
    gateway: LocalGateway, http: requests.Session
) -> None:
    assert invoke(http, gateway, "crash").status_code == 502
    for _ in range(MAX_RESTARTS):  # each invoke restarts the server, which crashes again
        assert invoke(http, gateway, "crash").status_code == 502
    last = demo_pid(gateway)
    error = error_of(invoke(http, gateway, "echo", {"text": "x"}), 502, "upstream_error")
    assert "not restarting it again yet" in error["message"]
    assert demo_pid(gateway) == last and gone(last)
    assert server_info(http, gateway)["health_status"] == "unhealthy"
    assert gateway.tool_runs("demo", "crash") == MAX_RESTARTS + 1


def test_an_idempotency_key_reused_on_a_stdio_tool_runs_it_once(
    gateway: LocalGateway, http: requests.Session
) -> None:
    key = str(uuid.uuid4())
    first = invoke(http, gateway, "echo", {"text": "once"}, **{"Idempotency-Key": key})
    second = invoke(http, gateway, "echo", {"text": "once"}, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert gateway.tool_runs("demo", "echo") == 1
    invoke(http, gateway, "echo", {"text": "once"})  # no key: runs again
    assert gateway.tool_runs("demo", "echo") == 2


def test_a_failure_after_the_call_reached_the_tool_is_replayed_never_run_again(
    gateway: LocalGateway, http: requests.Session, client: sark_sync.GatewayClient
) -> None:
    """A crash mid-call may have done the tool's work: the 502 is stored under the
    Idempotency-Key, so the retry gets it replayed and the tool runs once."""
    key = str(uuid.uuid4())
    first = invoke(http, gateway, "crash", **{"Idempotency-Key": key})
    again = invoke(http, gateway, "crash", **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (502, 502)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert gateway.tool_runs("demo", "crash") == 1
    # Through the client (automatic key, 502 retried): three attempts, one run.
    with pytest.raises(sark_sync.UpstreamError) as info:
        client.invoke_tool("demo", "crash")
    assert info.value.attempts == 3
    assert gateway.tool_runs("demo", "crash") == 2


# -- lifecycle -------------------------------------------------------------------------------


def test_a_server_added_before_start_is_unknown_until_the_gateway_starts() -> None:
    gateway = build_gateway("empty")
    info = gateway.add_stdio_server("demo", DEMO, env=child_env())
    assert (info["transport"], info["health_status"], info["tools_count"]) == (
        "stdio", "unknown", 0)
    gateway.stop()  # never started: nothing was spawned


def test_adding_a_stdio_server_to_a_running_gateway_starts_it_at_once(
    http: requests.Session,
) -> None:
    with build_gateway("empty") as gateway:
        info = gateway.add_stdio_server("late", DEMO, env=child_env())
        assert (info["health_status"], info["tools_count"]) == ("healthy", len(BUILTIN_TOOLS))
        body = {"server": "late", "tool": "echo", "parameters": {"text": "hi"}}
        answer = http.post(f"{gateway.url}/api/v1/invoke", json=body, headers=AUTH).json()
        assert answer["result"]["content"][0]["text"] == "hi"


def test_a_stdio_server_that_cannot_start_is_not_registered(http: requests.Session) -> None:
    with build_gateway("empty") as gateway:
        with pytest.raises(sark_sync.ProcessStartError):
            gateway.add_stdio_server("broken", ["/nonexistent/mcp-server"])
        assert http.get(f"{gateway.url}/api/v1/servers", headers=AUTH).json()["total"] == 0


def test_start_fails_and_leaves_nothing_running_when_a_stdio_server_cannot_start() -> None:
    gateway = build_gateway("empty")
    gateway.add_stdio_server("demo", DEMO, env=child_env())
    gateway.add_stdio_server("broken", [sys.executable, "-c", "import sys; sys.exit(4)"])
    with pytest.raises(sark_sync.ProcessExitedError):
        gateway.start()
    assert not gateway.running
    assert gateway_threads() == []


def test_bad_stdio_arguments_are_value_errors() -> None:
    gateway = LocalGateway()
    with pytest.raises(ValueError, match="command"):
        gateway.add_stdio_server("s", "python server.py")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="call_timeout"):
        gateway.add_stdio_server("s", DEMO, call_timeout=0)
    with pytest.raises(ValueError, match="invalid server name"):
        gateway.add_stdio_server("bad name", DEMO)


def test_stop_closes_every_stdio_server_and_leaves_no_child() -> None:
    gateway = build_gateway("empty")
    for name in ("one", "two"):
        gateway.add_stdio_server(name, DEMO, env=child_env())
    gateway.start()
    pids = [gateway._hosting.get(name).pid for name in ("one", "two")]  # type: ignore[union-attr]
    assert all(pid is not None and not gone(pid) for pid in pids)
    gateway.stop()
    assert all(gone(pid) for pid in pids if pid is not None)  # reaped by stop() itself
    assert gateway_threads() == []


def test_remove_server_closes_its_stdio_server(
    gateway: LocalGateway, http: requests.Session
) -> None:
    pid = demo_pid(gateway)
    gateway.remove_server("demo")
    assert gone(pid)
    error_of(invoke(http, gateway, "echo", {"text": "x"}), 404, "not_found")
    assert http.get(f"{gateway.url}/health").json()["servers"] == 0


# -- sark-sync serve -------------------------------------------------------------------------


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_serve_with_a_command_server_answers_and_stops_its_child_on_sigterm(
    tmp_path: Path, http: requests.Session
) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({
        "api_keys": [API_KEY],
        "servers": [{"name": "demo", "command": DEMO, "env": child_env(), "call_timeout": 5}],
    }))
    command = [sys.executable, "-m", "sark_sync.cli", "serve", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[2])}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        try:
            url = read_line(proc.stdout).strip()
            assert url.startswith("http://127.0.0.1:")
            servers = http.get(f"{url}/api/v1/servers", headers=AUTH).json()["servers"]
            assert [(s["server_name"], s["transport"], s["health_status"]) for s in servers] == [
                ("demo", "stdio", "healthy")]
            body = {"server": "demo", "tool": "add", "parameters": {"a": 2, "b": 3}}
            answer = http.post(f"{url}/api/v1/invoke", json=body, headers=AUTH).json()
            assert answer["result"]["structuredContent"] == {"sum": 5}
            children = _children_of(proc.pid)
            assert len(children) == 1  # the demo server
            http.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=WAIT) == 0
            assert gone(children[0])  # reaped by serve before it exited, not orphaned
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
    assert out == "" and err == ""


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"name": "s", "tools": ["echo"], "command": DEMO}, "both 'tools' and 'command'"),
        ({"name": "s", "command": "python -m x"}, "'command' must be a non-empty list"),
        ({"name": "s", "command": DEMO, "env": {"A": 1}}, "'env' must map"),
        ({"name": "s", "command": DEMO, "health_status": "healthy"}, "takes only"),
        ({"name": "s", "command": DEMO, "call_timeout": -1}, "call_timeout"),
    ],
)
def test_serve_rejects_a_bad_stdio_server_entry_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: dict[str, Any], message: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"servers": [server]}))
    assert cli.main(["serve", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sark-sync serve: error: ") and message in err


def test_serve_exits_1_when_a_stdio_server_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"servers": [{"name": "s", "command": ["/nonexistent/x"]}]}))
    assert cli.main(["serve", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "could not start local MCP server 's'" in err
    assert gateway_threads() == []
