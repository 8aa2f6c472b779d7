"""The real-components harness works: the official MCP SDK server (mcp 2.x, tools venv,
Python 3.11) spawned over stdio from every tox env, spoken to with raw JSON-RPC lines.

The conversation is written out here on purpose (not through sark_sync's stdio client): these
tests pin what the SDK really sends, as listed in the docstring of
tests/realcomp/mcp_sdk_server.py, so that the client can be tested against those facts.
Every read is bounded (``support.wait_for`` around a selector); every child is killed if
still running, waited for, and its pipes closed, whatever the test did.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import pytest
from support import wait_for

pytestmark = pytest.mark.realcomp

#: Bound for one answer of the local server (it starts in about 0.5s).
READ_TIMEOUT = 15.0
#: Grace period for the server to exit after its stdin closes (it takes about 0.2s).
EXIT_TIMEOUT = 5.0
#: The longest one select of the pipes waits, so that the wait around it checks its deadline.
SELECT_SLICE = 0.1
CLIENT_INFO = {"name": "sark-sync-tests", "version": "0"}
TOOL_NAMES = ["echo", "add", "fail", "slow", "whoami"]
#: Dropped from the child's environment: the server must flush each message itself
#: (PYTHONUNBUFFERED), and the tools interpreter must not see the test env's paths.
SCRUBBED_ENV = ("PYTHONUNBUFFERED", "PYTHONPATH", "PYTHONHOME")

Message = dict[str, Any]


class SdkServer:
    """One spawned MCP SDK server, spoken to one JSON line at a time.

    Messages that are not the awaited response land in ``notifications`` (no ``id``) or
    ``server_requests`` (an ``id`` and a ``method``); stderr is drained into ``stderr`` so the
    child can never block on a full pipe.
    """

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._stdin = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        self._err = self.proc.stderr.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._out, selectors.EVENT_READ)
        self._selector.register(self._err, selectors.EVENT_READ)
        self._buffer = b""
        self._next_id = 0
        self.stderr = bytearray()
        self.notifications: list[Message] = []
        self.server_requests: list[Message] = []

    def send(self, message: Message) -> None:
        self._stdin.write(json.dumps(message).encode() + b"\n")
        self._stdin.flush()

    def close_stdin(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass  # BrokenPipeError on the final flush: the server is gone already

    def read_message(self, timeout: float = READ_TIMEOUT) -> Message | None:
        """The next message on stdout, or None at end of file. Fails after ``timeout``."""

        def line_or_eof() -> bool:
            if b"\n" not in self._buffer and self._out in self._selector.get_map():
                self._pump()
            return b"\n" in self._buffer or self._out not in self._selector.get_map()

        wait_for(line_or_eof, timeout, what=lambda: self._awaited("a message"), interval=0)
        if b"\n" not in self._buffer:
            assert not self._buffer, f"unterminated last line: {self._buffer!r}"
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: Message = json.loads(line)
        return message

    def messages_until_eof(self, timeout: float = READ_TIMEOUT) -> list[Message]:
        """Every message left on stdout; then stderr is read to its end too."""
        messages = []
        while (message := self.read_message(timeout)) is not None:
            messages.append(message)

        def both_ended() -> bool:
            if self._selector.get_map():
                self._pump()
            return not self._selector.get_map()

        wait_for(both_ended, timeout, what=lambda: self._awaited("the end of stderr"),
                 interval=0)
        return messages

    def _awaited(self, what: str) -> str:
        return f"{what}; stderr so far:\n{self.stderr_text()}"

    def _pump(self) -> None:
        """Read what stdout and stderr have (one select of at most :data:`SELECT_SLICE`),
        unregistering a pipe at EOF. The select is the pause of the ``wait_for`` around it:
        it returns as soon as a pipe is readable."""
        for key, _ in self._selector.select(SELECT_SLICE):
            data = os.read(key.fd, 65536)
            if not data:
                self._selector.unregister(key.fd)
            elif key.fd == self._err:
                self.stderr += data
            else:
                self._buffer += data

    def request(self, method: str, params: Message | None = None) -> Message:
        """Send a request and return its response (the whole JSON-RPC object)."""
        self._next_id += 1
        request_id = self._next_id
        request: Message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self.send(request)
        return self.response_to(request_id)

    def response_to(self, request_id: object) -> Message:
        while True:
            message = self.read_message()
            assert message is not None, f"EOF before the response to {request_id!r}"
            if "method" not in message and message.get("id") == request_id:
                return message
            if "method" in message and "id" in message:
                self.server_requests.append(message)
            elif "method" in message:
                self.notifications.append(message)
            else:
                pytest.fail(f"a response to an unknown id: {message!r}")

    def initialize(self, version: str = "2025-11-25") -> Message:
        response = self.request(
            "initialize",
            {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO},
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response

    def call_tool(self, name: str, arguments: Message, **params: Any) -> Message:
        result: Message = self.request(
            "tools/call", {"name": name, "arguments": arguments, **params}
        )["result"]
        return result

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the server (gently first), reap it, and close every fd it left here."""
        try:
            self.close_stdin()
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._selector.close()
            assert self.proc.stdout and self.proc.stderr
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def spawn(mcp_sdk_server_command: list[str]) -> Iterator[Callable[..., SdkServer]]:
    """A factory of SDK servers; extra keyword arguments become environment variables."""
    servers: list[SdkServer] = []

    def start(**env: str) -> SdkServer:
        child_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        server = SdkServer(mcp_sdk_server_command, {**child_env, **env})
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def server(spawn: Callable[..., SdkServer]) -> SdkServer:
    """An initialized SDK server (protocol 2025-11-25) whose process sees a test marker."""
    server = spawn(SARK_TEST_MARKER="marker-from-the-test")
    server.initialize()
    return server


@pytest.mark.parametrize("version", ["2025-11-25", "2024-11-05"])
def test_initialize_answers_the_requested_handshake_version(
    spawn: Callable[..., SdkServer], version: str
) -> None:
    server = spawn()
    response = server.initialize(version)
    result = response["result"]
    assert result["protocolVersion"] == version
    assert result["serverInfo"] == {"name": "sark-test-sdk", "version": "1.0.0"}
    assert result["capabilities"]["tools"] == {"listChanged": False}


@pytest.mark.parametrize("version", ["2026-07-28", "1999-01-01"])
def test_initialize_counter_offers_2025_11_25_for_other_versions(
    spawn: Callable[..., SdkServer], version: str
) -> None:
    response = spawn().initialize(version)
    assert response["result"]["protocolVersion"] == "2025-11-25"


def test_before_initialize_only_ping_is_served(spawn: Callable[..., SdkServer]) -> None:
    server = spawn()
    assert server.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert server.request("tools/list")["error"] == {
        "code": -32602,
        "message": "Invalid request parameters",
        "data": "",
    }


def test_tools_list_gives_names_schemas_and_annotations(server: SdkServer) -> None:
    tools = {tool["name"]: tool for tool in server.request("tools/list")["result"]["tools"]}
    assert list(tools) == TOOL_NAMES
    add = tools["add"]
    assert add["inputSchema"] == {
        "type": "object",
        "title": "addArguments",
        "properties": {
            "a": {"title": "A", "type": "number"},
            "b": {"title": "B", "type": "number"},
        },
        "required": ["a", "b"],
    }
    assert add["outputSchema"]["properties"] == {"sum": {"title": "Sum", "type": "number"}}
    assert add["outputSchema"]["required"] == ["sum"]
    pure = {"readOnlyHint": True, "idempotentHint": True}
    assert add["annotations"] == pure
    assert tools["echo"]["annotations"] == pure
    # Only add is a structured tool; the others return plain text.
    assert [name for name, tool in tools.items() if "outputSchema" in tool] == ["add"]
    assert "annotations" not in tools["fail"]


def test_echo_returns_one_text_block(server: SdkServer) -> None:
    assert server.call_tool("echo", {"text": "héllo\nworld"}) == {
        "content": [{"type": "text", "text": "héllo\nworld"}],
        "isError": False,
    }


def test_add_returns_structured_content(server: SdkServer) -> None:
    result = server.call_tool("add", {"a": 1.5, "b": 2})
    assert result["structuredContent"] == {"sum": 3.5}
    assert result["isError"] is False
    [block] = result["content"]
    assert block["type"] == "text"
    assert json.loads(block["text"]) == {"sum": 3.5}


def test_a_failing_tool_gives_an_error_result_not_a_jsonrpc_error(server: SdkServer) -> None:
    assert server.call_tool("fail", {"message": "boom"}) == {
        "content": [{"type": "text", "text": "Error executing tool fail: boom"}],
        "isError": True,
    }


def test_unknown_tool_and_bad_arguments_are_error_results(server: SdkServer) -> None:
    unknown = server.call_tool("no-such-tool", {})
    assert unknown == {
        "content": [{"type": "text", "text": "Unknown tool: no-such-tool"}],
        "isError": True,
    }
    bad = server.call_tool("add", {"a": "x"})
    assert bad["isError"] is True
    assert bad["content"][0]["text"].startswith("Error executing tool add: ")


def test_whoami_sees_the_environment_the_test_gave(
    server: SdkServer, spawn: Callable[..., SdkServer]
) -> None:
    assert server.call_tool("whoami", {})["content"][0]["text"] == "marker-from-the-test"
    bare = spawn()
    bare.initialize()
    assert bare.call_tool("whoami", {})["content"][0]["text"] == "unset"


def test_unknown_method_is_jsonrpc_method_not_found(server: SdkServer) -> None:
    response = server.request("no/such-method", {})
    assert response == {
        "jsonrpc": "2.0",
        "id": response["id"],
        "error": {"code": -32601, "message": "Method not found", "data": "no/such-method"},
    }


def test_slow_reports_progress_when_asked(server: SdkServer) -> None:
    result = server.call_tool("slow", {"seconds": 0.05}, _meta={"progressToken": "tok"})
    assert result["content"] == [{"type": "text", "text": "slept 0.05"}]
    assert [n["params"] for n in server.notifications] == [
        {"progressToken": "tok", "progress": 0, "total": 0.05},
        {"progressToken": "tok", "progress": 0.05, "total": 0.05},
    ]
    assert all(n["method"] == "notifications/progress" for n in server.notifications)


def test_a_cancelled_call_is_never_answered(server: SdkServer) -> None:
    server.send(
        {
            "jsonrpc": "2.0",
            "id": "long",
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 60}},
        }
    )
    server.send(
        {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": "long", "reason": "the test gave up"},
        }
    )
    # The server goes on serving; a call still in flight at EOF would be answered -32000
    # (see the next test), so EOF without an answer proves the cancel took effect.
    assert server.request("ping")["result"] == {}
    server.close_stdin()
    assert server.messages_until_eof() == []
    assert server.proc.wait(timeout=EXIT_TIMEOUT) == 0


def test_closing_stdin_answers_in_flight_calls_and_exits(server: SdkServer) -> None:
    server.send(
        {
            "jsonrpc": "2.0",
            "id": 42,
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 60}},
        }
    )
    # Requests are served concurrently: this one overtakes the slow call.
    assert server.request("tools/call", {"name": "echo", "arguments": {"text": "x"}})["result"]
    server.close_stdin()
    started = time.monotonic()
    assert server.messages_until_eof() == [
        {"jsonrpc": "2.0", "id": 42, "error": {"code": -32000, "message": "Connection closed"}}
    ]
    assert server.proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert time.monotonic() - started < EXIT_TIMEOUT


def test_the_conversation_has_no_server_to_client_requests(server: SdkServer) -> None:
    server.request("tools/list")
    server.call_tool("echo", {"text": "x"})
    server.call_tool("fail", {"message": "y"})
    assert server.request("ping")["result"] == {}
    server.close_stdin()
    assert server.messages_until_eof() == []  # stderr is read to its end as well
    assert server.server_requests == []
    assert server.notifications == []
    assert server.proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert "Tool 'fail' failed" in server.stderr_text()
