"""sark_sync's stdio client against the official MCP SDK server (mcp 2.3.0, tools venv).

What the server sends is pinned with raw JSON-RPC by test_realcomp_mcp_sdk.py and listed in the
docstring of tests/realcomp/mcp_sdk_server.py; these tests check that :class:`LocalServer` and
:class:`GatewayClient` turn it into the documented values and errors. The child's environment
is sark_sync's allow-list plus what a test passes, so PYTHONPATH never reaches the tools
interpreter.

One module-scoped session (``sdk``) serves the tests that leave it as they found it: it is
started before the ``no_leaks`` guard takes its baseline, so it is not a leak. The tests of the
environment, of shutdown and of GatewayClient start their own servers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import sark_sync

pytestmark = pytest.mark.realcomp

#: Bound of one call that must be answered (the server answers in milliseconds).
CALL_TIMEOUT = 10.0
#: The timeout of a call that is meant to expire.
SHORT_TIMEOUT = 0.3
#: How late after its timeout an expired call may raise.
TIMEOUT_SLACK = 0.5
#: How long the ``slow`` call of the overtaking test sleeps.
SLOW_SECONDS = 0.5
#: A ``slow`` call that never finishes within a test.
ENDLESS_SECONDS = 60
#: Bound of a whole batch of concurrent calls.
BATCH_TIMEOUT = 60.0
#: Bound for the server to be gone after close() (it exits about 0.2 s after stdin closes).
EXIT_TIMEOUT = 5.0
#: SARK_TEST_MARKER as given to the servers through ``env=``.
MARKER = "marker-given-by-the-test"
#: A gateway URL that local calls never use.
UNUSED_GATEWAY = "http://127.0.0.1:9"
TOOL_NAMES = ["echo", "add", "fail", "slow", "whoami"]
#: Dropped from the parent's environment before an ``inherit_env=True`` spawn: the tools
#: interpreter must not see the test env's paths.
PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")


@pytest.fixture(scope="module")
def notifications() -> list[tuple[str, Mapping[str, Any]]]:
    """What the module's session passed to ``on_notification``."""
    return []


@pytest.fixture(scope="module")
def sdk(
    mcp_sdk_server_command: list[str], notifications: list[tuple[str, Mapping[str, Any]]]
) -> Iterator[sark_sync.LocalServer]:
    """One session with the SDK server for the whole module; its process sees MARKER."""
    with sark_sync.LocalServer(
        list(mcp_sdk_server_command), name="sdk", env={"SARK_TEST_MARKER": MARKER},
        timeout=CALL_TIMEOUT, on_notification=lambda m, p: notifications.append((m, p)),
    ) as server:
        yield server


@pytest.fixture
def command(mcp_sdk_server_command: list[str]) -> list[str]:
    return list(mcp_sdk_server_command)


def test_handshake_negotiates_2025_11_25_and_keeps_the_server_info(
    sdk: sark_sync.LocalServer,
) -> None:
    assert sdk.protocol_version == "2025-11-25"
    assert sdk.server_info == {"name": "sark-test-sdk", "version": "1.0.0"}
    assert sdk.capabilities["tools"] == {"listChanged": False}
    assert "logging" not in sdk.capabilities
    assert sdk.instructions is None
    assert sdk.alive and sdk.returncode is None
    assert sdk.ping(timeout=CALL_TIMEOUT) is None


def test_list_tools_gives_the_five_tools_with_schemas_and_annotations(
    sdk: sark_sync.LocalServer,
) -> None:
    tools = {tool.name: tool for tool in sdk.list_tools()}
    assert list(tools) == TOOL_NAMES
    assert {tool.server_name for tool in tools.values()} == {"sdk"}
    assert tools["echo"].description == "Return the text unchanged."
    assert tools["echo"].input_schema == {
        "type": "object", "title": "echoArguments", "required": ["text"],
        "properties": {"text": {"title": "Text", "type": "string"}},
    }
    assert tools["add"].input_schema["properties"] == {
        "a": {"title": "A", "type": "number"}, "b": {"title": "B", "type": "number"},
    }
    assert tools["add"].input_schema["required"] == ["a", "b"]
    for pure in ("echo", "add"):  # readOnlyHint and idempotentHint; the rest MCP defaults
        assert tools[pure].annotations == sark_sync.ToolAnnotations(
            read_only_hint=True, idempotent_hint=True)
        assert tools[pure].annotations.retry_safe
    assert tools["fail"].annotations == sark_sync.ToolAnnotations()  # none declared
    assert not tools["slow"].annotations.retry_safe
    # ToolInfo has no field for outputSchema: add's schema (required "sum") is not kept.


def test_echo_returns_its_text_as_one_text_block(sdk: sark_sync.LocalServer) -> None:
    result = sdk.call_tool("echo", {"text": "héllo\nwörld"})
    assert result.content == ({"type": "text", "text": "héllo\nwörld"},)
    assert result.text == "héllo\nwörld"
    assert (result.structured, result.is_error) == (None, False)
    assert (result.server, result.tool, result.request_id) == ("sdk", "echo", None)


def test_add_returns_structured_content(sdk: sark_sync.LocalServer) -> None:
    result = sdk.call_tool("add", {"a": 2, "b": 3})
    assert result.structured == {"sum": 5.0}
    assert isinstance(result.structured["sum"], float)  # the SDK's model says float
    assert result.json() == {"sum": 5.0}
    assert result.is_error is False
    assert result.text == '{\n  "sum": 5.0\n}'  # the same JSON as a text block, indented


@pytest.mark.parametrize(
    ("tool", "arguments", "text"),
    [
        ("fail", {"message": "boom"}, "Error executing tool fail: boom"),
        ("no-such-tool", {}, "Unknown tool: no-such-tool"),
        ("add", {"a": "x", "b": 1}, "Error executing tool add: 1 validation error"),
    ],
    ids=["tool-error", "unknown-tool", "bad-arguments"],
)
def test_tool_errors_are_results_not_exceptions(
    sdk: sark_sync.LocalServer, tool: str, arguments: dict[str, Any], text: str
) -> None:
    result = sdk.call_tool(tool, arguments)
    assert result.is_error is True
    assert result.text.startswith(text)
    assert len(result.content) == 1 and result.structured is None
    with pytest.raises(sark_sync.ToolExecutionError) as caught:
        result.raise_for_error()
    assert caught.value.result is result


def test_unknown_method_raises_rpc_error_method_not_found(sdk: sark_sync.LocalServer) -> None:
    # LocalServer has no public way to send an arbitrary request: its transport's request()
    # (private attribute) is what list_tools and call_tool use.
    with pytest.raises(sark_sync.RPCError) as caught:
        sdk._transport.request("no/such-method", {}, CALL_TIMEOUT)
    error = caught.value
    assert (error.code, error.rpc_message, error.data) == (-32601, "Method not found",
                                                           "no/such-method")
    assert error.server == "sdk"
    assert sdk.call_tool("echo", {"text": "still serving"}).text == "still serving"


def test_child_sees_env_but_not_the_parents_other_variables(
    sdk: sark_sync.LocalServer, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sdk.call_tool("whoami").text == MARKER  # given with env=
    monkeypatch.setenv("SARK_TEST_MARKER", "parent-secret")
    with sark_sync.LocalServer(command) as bare:
        assert bare.call_tool("whoami").text == "unset"
    # The control: the same variable does reach a child that inherits the whole environment.
    for name in PYTHON_ENV:
        monkeypatch.delenv(name, raising=False)
    with sark_sync.LocalServer(command, inherit_env=True) as inheriting:
        assert inheriting.call_tool("whoami").text == "parent-secret"


def test_500_sequential_calls_each_get_their_own_result(sdk: sark_sync.LocalServer) -> None:
    for n in range(500):
        result = sdk.call_tool("add", {"a": n, "b": 0.25})
        assert result.structured == {"sum": n + 0.25}, n


@pytest.mark.stress
def test_8_threads_of_100_concurrent_calls_each_get_their_own_result(
    sdk: sark_sync.LocalServer,
) -> None:
    def work(worker: int) -> list[str]:
        wrong = []
        for n in range(100):
            if n % 2:
                text = f"worker {worker} call {n}"
                if sdk.call_tool("echo", {"text": text}).text != text:
                    wrong.append(text)
            elif sdk.call_tool("add", {"a": worker, "b": n}).structured != {"sum": worker + n}:
                wrong.append(f"add {worker} {n}")
        return wrong

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(work, worker) for worker in range(8)]
        outcomes = [future.result(timeout=BATCH_TIMEOUT) for future in futures]
    assert outcomes == [[]] * 8


def test_fast_calls_overtake_a_slow_one(sdk: sark_sync.LocalServer) -> None:
    running = threading.Event()  # the server's first progress note: the slow call has begun
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(sdk.call_tool, "slow", {"seconds": SLOW_SECONDS},
                           progress=lambda progress, total, message: running.set())
        assert running.wait(CALL_TIMEOUT)
        for n in range(20):
            assert sdk.call_tool("echo", {"text": str(n)}).text == str(n)
        assert not slow.done()
        assert slow.result(timeout=CALL_TIMEOUT).text == f"slept {SLOW_SECONDS:g}"


def test_progress_notifications_reach_the_calls_callback_only(
    sdk: sark_sync.LocalServer, notifications: list[tuple[str, Mapping[str, Any]]]
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    before = len(notifications)
    result = sdk.call_tool("slow", {"seconds": 0.05},
                           progress=lambda progress, total, message: seen.append(
                               (progress, total, message)))
    assert result.text == "slept 0.05"
    assert seen == [(0.0, 0.05, None), (0.05, 0.05, None)]  # sent before the response
    assert notifications[before:] == []  # progress is not an on_notification message


def test_timeout_raises_in_time_and_the_session_stays_usable(sdk: sark_sync.LocalServer
                                                             ) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        sdk.call_tool("slow", {"seconds": ENDLESS_SECONDS}, timeout=SHORT_TIMEOUT)
    assert time.monotonic() - started < SHORT_TIMEOUT + TIMEOUT_SLACK
    assert caught.value.server == "sdk"
    assert sdk.alive
    assert sdk.call_tool("echo", {"text": "next"}).text == "next"


def test_close_fails_the_call_in_flight_reaps_the_process_and_the_cancelled_call_stays_unanswered(
    command: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK answers a started call with -32000 when its stdin closes, but never answers a
    cancelled one: after close(), exactly one late answer (the in-flight call's) is logged."""
    caplog.set_level(logging.DEBUG, logger="sark_sync.stdio")
    running = threading.Event()
    server = sark_sync.LocalServer(command, name="closing").start()
    pid = server.pid
    assert pid is not None
    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(sark_sync.TransportTimeout):  # sends notifications/cancelled
            server.call_tool("slow", {"seconds": ENDLESS_SECONDS}, timeout=SHORT_TIMEOUT)
        in_flight = pool.submit(server.call_tool, "slow", {"seconds": ENDLESS_SECONDS},
                                progress=lambda progress, total, message: running.set())
        assert running.wait(CALL_TIMEOUT)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < EXIT_TIMEOUT
        with pytest.raises(sark_sync.ProcessExitedError, match="was closed"):
            in_flight.result(timeout=CALL_TIMEOUT)
    assert server.returncode == 0 and not server.alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no zombie left behind
    server.close()  # idempotent
    late = [r for r in caplog.records if "answered unknown or abandoned request" in r.message]
    assert len(late) == 1, [r.message for r in late]


def test_gateway_client_calls_a_local_servers_entry(command: list[str]) -> None:
    servers = {"sdk": {"command": command, "env": {"SARK_TEST_MARKER": MARKER}}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers=servers) as client:
        tools = client.list_tools("sdk")
        assert [tool.name for tool in tools] == TOOL_NAMES
        assert {tool.server_name for tool in tools} == {"sdk"}
        echo = client.invoke_tool("sdk", "echo", {"text": "via the client"})
        assert isinstance(echo, sark_sync.ToolResult)
        assert (echo.text, echo.server, echo.tool, echo.attempts) == ("via the client", "sdk",
                                                                     "echo", 1)
        assert client.invoke_tool("sdk", "add", {"a": 1.5, "b": 2}).structured == {"sum": 3.5}
        failed = client.invoke_tool("sdk", "fail", {"message": "no"})
        assert failed.is_error and failed.text == "Error executing tool fail: no"
        assert client.invoke_tool("sdk", "whoami").text == MARKER
        started = time.monotonic()
        with pytest.raises(sark_sync.DeadlineExceeded):
            client.invoke_tool("sdk", "slow", {"seconds": ENDLESS_SECONDS},
                               timeout=SHORT_TIMEOUT)
        assert time.monotonic() - started < SHORT_TIMEOUT + TIMEOUT_SLACK
        assert client.invoke_tool("sdk", "echo", {"text": "after"}).text == "after"
        # The pool's session, to check it is reaped on close (no public accessor).
        session = client._state().local._entries["sdk"].server
        assert session is not None and session.alive
    assert session.returncode == 0


def test_connect_local_server_routes_invoke_tool_to_the_session(command: list[str]) -> None:
    with sark_sync.GatewayClient(UNUSED_GATEWAY) as client:
        with client.connect_local_server(command, env={"SARK_TEST_MARKER": MARKER},
                                         name="adhoc") as session:
            assert session.protocol_version == "2025-11-25"
            assert session.call_tool("echo", {"text": "direct"}).text == "direct"
            routed = client.invoke_tool("adhoc", "whoami")
            assert (routed.text, routed.server) == (MARKER, "adhoc")
        assert session.returncode == 0
        with pytest.raises(sark_sync.ProcessExitedError, match="connect it again"):
            client.invoke_tool("adhoc", "echo", {"text": "x"})
