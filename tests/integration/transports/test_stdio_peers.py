"""The stdio test peers do what they claim: the demo MCP server and the misbehaving servers.

The stdio transport's tests trust these peers to be correct and their faults to be real, so
they are checked here with a raw JSON-RPC helper over ``subprocess.Popen``, independent of the
sark_sync client. Children run without ``PYTHONUNBUFFERED`` (this machine exports it), so a
missing flush shows up as a hang; every read is bounded (a reader thread and a queue with
timeouts), and every child is killed, reaped and its pipes closed, even when a test fails.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from support import demo_server_command, misbehave_command, wait_for

import sark_sync

BUILTIN_TOOLS = [
    "echo", "add", "slow", "fail", "log", "crash", "env", "big", "notify_list_changed",
    "ask_client", "ping_client", "count",
]
#: Upper bound for anything that should happen "at once" (generous for a loaded CI machine).
PROMPT = 5.0


def child_env(**extra: str) -> dict[str, str]:
    """os.environ minus PYTHONUNBUFFERED, with this sark_sync importable by the child."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    package_root = str(Path(sark_sync.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


class Peer:
    """A raw JSON-RPC client on a child's stdio. Reads go through a queue fed by a thread, so
    every wait has a timeout; ``close()`` kills the child's process group, reaps it, joins the
    threads and closes the pipes."""

    def __init__(self, args: Sequence[str], *, drain_stderr: bool = True, **env: str) -> None:
        self.proc = subprocess.Popen(
            list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=child_env(**env), start_new_session=True, close_fds=True)
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []  # messages read while waiting for another
        self._stderr = bytearray()
        self._next_id = 0
        self._threads = [threading.Thread(target=self._read_stdout, name="peer-stdout")]
        self._threads[0].start()
        if drain_stderr:
            self.drain_stderr()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            self._stderr += chunk

    def drain_stderr(self) -> None:
        thread = threading.Thread(target=self._read_stderr, name="peer-stderr")
        self._threads.append(thread)
        thread.start()

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr)

    # -- writing ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.proc.stdin is not None
        raw = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    # -- reading ---------------------------------------------------------------------------

    def raw_line(self, timeout: float = PROMPT) -> bytes:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout:g}s; stderr: {self.stderr!r}") from None
        if line is None:
            self.lines.put(None)  # stays at EOF
            raise AssertionError(f"stdout closed; exit {self.proc.poll()}, {self.stderr!r}")
        return line

    def recv(self, timeout: float = PROMPT) -> dict[str, Any]:
        message = json.loads(self.raw_line(timeout))
        assert isinstance(message, dict)
        return message

    def response(self, id: Any, timeout: float = PROMPT) -> dict[str, Any]:
        """The response to ``id``; other messages read meanwhile go to ``backlog``."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if message.get("id") == id and "method" not in message:
                return message
            self.backlog.append(message)

    def nothing_for(self, seconds: float) -> None:
        """Assert that no line arrives for ``seconds`` (a bounded wait on the queue)."""
        with suppress(queue.Empty):
            line = self.lines.get(timeout=seconds)
            raise AssertionError(f"unexpected line: {line!r:.200}")

    # -- MCP -------------------------------------------------------------------------------

    def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        response = self.response(self.request("initialize", {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw-peer", "version": "0"}}))
        self.notify("notifications/initialized")
        result: dict[str, Any] = response["result"]
        return result

    def call(self, name: str, arguments: dict[str, Any] | None = None,
             timeout: float = PROMPT, **params: Any) -> dict[str, Any]:
        id = self.request("tools/call", {"name": name, "arguments": arguments or {}, **params})
        return self.response(id, timeout)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close_stdin(self) -> None:
        """EOF for the child."""
        assert self.proc.stdin is not None
        with suppress(OSError):
            self.proc.stdin.close()

    def close(self) -> None:
        self.close_stdin()
        if self.proc.returncode is None:  # the unreaped pid still names the group: safe
            with suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(PROMPT)
        for thread in self._threads:
            thread.join(PROMPT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def peer(args: Sequence[str], **options: Any) -> Iterator[Peer]:
    p = Peer(args, **options)
    try:
        yield p
    finally:
        p.close()


def demo(*flags: str, **options: Any) -> Any:
    return peer(demo_server_command(*flags), **options)


def misbehave(mode: str, *flags: str, **options: Any) -> Any:
    return peer(misbehave_command(mode, *flags), **options)


def text(response: dict[str, Any]) -> str:
    content = response["result"]["content"]
    assert [block["type"] for block in content] == ["text"]
    value: str = content[0]["text"]
    return value


# ---------------------------------------------------------------------------------------------
# The demo server: handshake and tools/list
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_demo_initialize_answers_a_supported_requested_version(version: str) -> None:
    with demo() as p:
        assert p.initialize(version) == {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": True}, "logging": {}},
            "serverInfo": {"name": "sark-sync-demo", "version": sark_sync.__version__},
        }


def test_demo_initialize_answers_the_latest_to_an_unknown_version() -> None:
    with demo() as p:
        assert p.initialize("2099-01-01")["protocolVersion"] == "2025-11-25"


def test_demo_protocol_version_flag_forces_the_answer() -> None:
    with demo("--protocol-version", "1999-01-01") as p:
        assert p.initialize("2025-06-18")["protocolVersion"] == "1999-01-01"


def test_demo_refuses_requests_before_initialize_but_answers_ping() -> None:
    with demo() as p:
        refused = p.response(p.request("tools/list"))
        assert refused["error"] == {"code": -32600, "message": "server not initialized"}
        assert p.response(p.request("ping"))["result"] == {}
        p.initialize()
        assert "tools" in p.response(p.request("tools/list"))["result"]


def test_demo_tools_list_pages_with_an_opaque_cursor() -> None:
    with demo("--tools", "120", "--page-size", "50") as p:
        p.initialize()
        pages: list[list[dict[str, Any]]] = []
        cursor = None
        while True:
            result = p.response(p.request("tools/list", {"cursor": cursor} if cursor else {}))
            pages.append(result["result"]["tools"])
            cursor = result["result"].get("nextCursor")
            if cursor is None:
                break
            assert isinstance(cursor, str) and not cursor.isdigit()
        assert [len(page) for page in pages] == [50, 50, 32]
        names = [tool["name"] for page in pages for tool in page]
        assert names == BUILTIN_TOOLS + [f"tool_{i:03d}" for i in range(120)]
        for tool in (t for page in pages for t in page):
            assert set(tool) >= {"name", "description", "inputSchema", "annotations"}
            assert tool["inputSchema"]["type"] == "object"
            assert isinstance(tool["annotations"]["readOnlyHint"], bool)
        assert text(p.call("count")) == "132"
        assert text(p.call("tool_007")) == "tool_007"


@pytest.mark.parametrize("cursor", ["nonsense", 12, base64.urlsafe_b64encode(b"offset:999")])
def test_demo_tools_list_rejects_a_bad_cursor(cursor: Any) -> None:
    with demo() as p:
        p.initialize()
        if isinstance(cursor, bytes):
            cursor = cursor.decode()
        error = p.response(p.request("tools/list", {"cursor": cursor}))["error"]
        assert error["code"] == -32602


# ---------------------------------------------------------------------------------------------
# The demo server: tools
# ---------------------------------------------------------------------------------------------


def test_demo_simple_tools_answer_as_documented() -> None:
    with demo(DEMO_MARKER="marker value 42") as p:
        p.initialize()
        echo = p.call("echo", {"text": "héllo\nworld"})["result"]
        assert echo == {"content": [{"type": "text", "text": "héllo\nworld"}], "isError": False}
        add = p.call("add", {"a": 2, "b": 0.5})["result"]
        assert add["content"][0]["text"] == "2.5" and add["structuredContent"] == {"sum": 2.5}
        assert add["isError"] is False
        assert text(p.call("env", {"name": "DEMO_MARKER"})) == "marker value 42"
        missing = p.call("env", {"name": "PYTHONUNBUFFERED"})["result"]
        assert missing["structuredContent"] == {"value": None}  # the child really lacks it
        assert text(p.call("big", {"bytes": 3_000_000})) == "x" * 3_000_000


def test_demo_tool_failures_are_results_with_is_error() -> None:
    with demo() as p:
        p.initialize()
        failed = p.call("fail", {"message": "nope"})["result"]
        assert failed == {"content": [{"type": "text", "text": "nope"}], "isError": True}
        assert p.call("fail")["result"]["isError"] is True
        bad = p.call("add", {"a": "1", "b": 2})["result"]
        assert bad["isError"] is True and "'a'" in bad["content"][0]["text"]


def test_demo_unknown_tool_is_a_protocol_error() -> None:
    with demo() as p:
        p.initialize()
        error = p.call("no_such_tool")["error"]
        assert error["code"] == -32602 and "no_such_tool" in error["message"]
        assert p.response(p.request("no/such/method"))["error"]["code"] == -32601


def test_demo_slow_reports_progress_when_given_a_token() -> None:
    with demo() as p:
        p.initialize()
        done = p.call("slow", {"seconds": 0.2, "steps": 4}, _meta={"progressToken": "tok"})
        assert text(done) == "done"
        assert p.backlog == [
            {"jsonrpc": "2.0", "method": "notifications/progress",
             "params": {"progressToken": "tok", "progress": n, "total": 4}}
            for n in range(1, 5)
        ]
        assert text(p.call("slow", {"seconds": 0})) == "done"
        assert len(p.backlog) == 4  # no token, no progress


def test_demo_cancelled_slow_call_gets_no_response() -> None:
    with demo() as p:
        p.initialize()
        slow = p.request("tools/call", {"name": "slow", "arguments": {"seconds": 30}})
        p.notify("notifications/cancelled", {"requestId": slow, "reason": "test"})
        started = time.monotonic()
        assert text(p.call("echo", {"text": "after"})) == "after"
        p.nothing_for(0.3)  # a slow step is at most 0.05 s: its answer would be here by now
        assert time.monotonic() - started < PROMPT
        assert p.backlog == []
        p.close()
        assert b"cancelling call" in p.stderr


def test_demo_slow_call_does_not_block_echo() -> None:
    with demo() as p:
        p.initialize()
        slow = p.request("tools/call", {"name": "slow", "arguments": {"seconds": 1.0}})
        started = time.monotonic()
        assert text(p.call("echo", {"text": "quick"})) == "quick"
        assert time.monotonic() - started < 0.9
        assert p.backlog == []  # slow has not answered yet
        assert text(p.response(slow)) == "done"


def test_demo_log_and_list_changed_send_notifications_before_answering() -> None:
    with demo() as p:
        p.initialize()
        assert text(p.call("log", {"level": "warning", "message": "careful"})) == "logged"
        assert text(p.call("notify_list_changed")) == "ok"
        assert p.backlog == [
            {"jsonrpc": "2.0", "method": "notifications/message",
             "params": {"level": "warning", "logger": "demo", "data": "careful"}},
            {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
        ]


def test_demo_ask_client_reports_the_clients_error_or_result() -> None:
    with demo() as p:
        p.initialize()
        first = p.request("tools/call", {"name": "ask_client", "arguments": {}})
        ask = p.recv()
        assert ask == {"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"}
        p.send({"jsonrpc": "2.0", "id": "srv-1",
                "error": {"code": -32601, "message": "Method not found"}})
        assert text(p.response(first)) == "error -32601"
        second = p.request("tools/call", {"name": "ask_client", "arguments": {}})
        assert p.recv()["id"] == "srv-2"
        p.send({"jsonrpc": "2.0", "id": "srv-2", "result": {"roots": []}})
        answer = p.response(second)["result"]
        assert answer["content"][0]["text"] == 'result {"roots": []}'
        assert answer["structuredContent"] == {"result": {"roots": []}}


def test_demo_ping_client_waits_for_the_clients_pong() -> None:
    with demo() as p:
        p.initialize()
        call = p.request("tools/call", {"name": "ping_client", "arguments": {}})
        ping = p.recv()
        assert ping == {"jsonrpc": "2.0", "id": "srv-1", "method": "ping"}
        p.nothing_for(0.2)  # it waits for us
        p.send({"jsonrpc": "2.0", "id": "srv-1", "result": {}})
        assert text(p.response(call)) == "pong received"


def test_demo_answers_malformed_lines_and_keeps_serving() -> None:
    with demo() as p:
        p.initialize()
        invalid_utf8 = b'{"jsonrpc": "2.0", "id": 5, "method": "ping", "x": "\xc3\x28"}\n'
        for bad in (b"this is not json\n", invalid_utf8, b'{"jsonrpc": "2.0", "id": 1\n'):
            p.send(bad)
            error = p.recv()
            assert error["id"] is None and error["error"]["code"] == -32700
        p.send(b'{"jsonrpc": "1.0", "id": 77, "method": "ping"}\n')
        error = p.recv()
        assert error["id"] == 77 and error["error"]["code"] == -32600
        utf8 = {"jsonrpc": "2.0", "id": 78, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "h\u00e9llo \u2028 w\u00f6rld"}}}
        p.send(json.dumps(utf8, ensure_ascii=False).encode("utf-8") + b"\n")  # raw UTF-8
        assert text(p.response(78)) == "h\u00e9llo \u2028 w\u00f6rld"


def test_demo_exits_0_at_eof_within_2s() -> None:
    with demo() as p:
        p.initialize()
        started = time.monotonic()
        p.close_stdin()
        assert p.wait_exit(2.0) == 0
        assert time.monotonic() - started < 2.0


def test_demo_at_eof_lets_a_call_in_flight_run_at_most_1s() -> None:
    with demo() as p:
        p.initialize()
        quick = p.request("tools/call", {"name": "slow", "arguments": {"seconds": 0.2}})
        p.request("tools/call", {"name": "slow", "arguments": {"seconds": 60}})
        p.close_stdin()
        assert p.wait_exit(2.0) == 0
        assert text(p.response(quick)) == "done"  # the finished call was answered
        assert p.lines.get(timeout=PROMPT) is None  # and the cancelled one was not


@pytest.mark.parametrize(("arguments", "code"), [({}, 3), ({"code": 9}, 9)])
def test_demo_crash_exits_at_once_with_the_code(arguments: dict[str, Any], code: int) -> None:
    with demo() as p:
        p.initialize()
        p.request("tools/call", {"name": "crash", "arguments": arguments})
        assert p.wait_exit(PROMPT) == code
        assert p.lines.get(timeout=PROMPT) is None  # EOF, no answer
        p.close()
        assert f"crashing on purpose with exit code {code}".encode() in p.stderr


def test_demo_exits_on_sigterm() -> None:
    with demo() as p:
        p.initialize()
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(PROMPT) == -signal.SIGTERM


# ---------------------------------------------------------------------------------------------
# The misbehaving servers
# ---------------------------------------------------------------------------------------------


def test_misbehave_crash_mid_call_exits_7_with_boom() -> None:
    with misbehave("crash_mid_call") as p:
        p.initialize()
        assert p.response(p.request("tools/list"))["result"]["tools"][0]["name"] == "echo"
        p.request("tools/call", {"name": "echo", "arguments": {}})
        assert p.wait_exit(PROMPT) == 7
        assert p.lines.get(timeout=PROMPT) is None
        p.close()
        assert p.stderr == b"boom\n"


def test_misbehave_hang_never_answers_and_records_the_cancellation(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    with misbehave("hang", "--record", str(record)) as p:
        p.initialize()
        call = p.request("tools/call", {"name": "echo", "arguments": {}})
        p.nothing_for(0.3)
        p.notify("notifications/cancelled", {"requestId": call, "reason": "timeout"})
        assert p.response(p.request("ping"))["result"] == {}  # still reading
        lines = [json.loads(line) for line in record.read_bytes().splitlines()]
        assert [line["method"] for line in lines] == [
            "initialize", "notifications/initialized", "tools/call", "notifications/cancelled",
            "ping",
        ]
        assert lines[3]["params"] == {"requestId": call, "reason": "timeout"}
        p.close_stdin()
        assert p.wait_exit(PROMPT) == 0


def test_misbehave_non_json_precedes_each_response_with_garbage() -> None:
    with misbehave("non_json") as p:
        p.initialize()
        for method in ("ping", "tools/list", "tools/call"):
            id = p.request(method, {"name": "echo", "arguments": {}})
            garbage = p.raw_line()
            with pytest.raises(ValueError):
                json.loads(garbage)
            assert p.recv()["id"] == id


def test_misbehave_huge_line_sends_one_line_over_20_mib_then_behaves() -> None:
    with misbehave("huge_line") as p:
        p.initialize()
        first = p.request("tools/call", {"name": "echo", "arguments": {}})
        line = p.raw_line(timeout=30)
        assert len(line) > 20 * 1024 * 1024 and line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert json.loads(line)["id"] == first
        assert text(p.call("echo", {"n": 2})) == "{'n': 2}"


def test_misbehave_stderr_flood_blocks_a_client_that_does_not_drain_stderr() -> None:
    with misbehave("stderr_flood", drain_stderr=False) as p:
        p.initialize()
        call = p.request("tools/call", {"name": "echo", "arguments": {}})
        p.nothing_for(1.0)  # blocked writing stderr into a full pipe
        p.drain_stderr()
        assert text(p.response(call)) == "{}"
        p.close()
        assert len(p.stderr) > 1024 * 1024


def test_misbehave_ignore_sigterm_survives_sigterm_and_eof_but_not_sigkill() -> None:
    with misbehave("ignore_sigterm") as p:
        p.initialize()
        p.proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait_exit(0.5)
        p.close_stdin()
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait_exit(0.5)
        os.killpg(p.proc.pid, signal.SIGKILL)
        assert p.wait_exit(PROMPT) == -signal.SIGKILL


def test_misbehave_never_initialize_answers_nothing() -> None:
    with misbehave("never_initialize") as p:
        p.request("initialize", {"protocolVersion": "2025-11-25"})
        p.request("ping")
        p.nothing_for(1.0)
        assert p.proc.poll() is None
        p.close_stdin()
        assert p.wait_exit(PROMPT) == 0


def test_misbehave_wrong_version_answers_1999() -> None:
    with misbehave("wrong_version") as p:
        assert p.initialize("2025-11-25")["protocolVersion"] == "1999-01-01"


def test_misbehave_exit_at_start_exits_2_before_reading() -> None:
    with misbehave("exit_at_start") as p:
        assert p.wait_exit(PROMPT) == 2
        assert p.lines.get(timeout=PROMPT) is None
        p.close()
        assert p.stderr == b"fatal: config missing\n"


def test_misbehave_slow_start_delays_the_initialize_answer() -> None:
    with misbehave("slow_start", "--delay", "0.5") as p:
        started = time.monotonic()
        id = p.request("initialize", {"protocolVersion": "2025-06-18"})
        p.nothing_for(0.3)
        assert p.response(id)["result"]["protocolVersion"] == "2025-06-18"
        assert time.monotonic() - started >= 0.5


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaping it if it is our child)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def test_misbehave_spawn_grandchild_leaves_an_orphan_unless_the_group_is_killed(
    tmp_path: Path,
) -> None:
    record = tmp_path / "grandchild.pid"
    with misbehave("spawn_grandchild", "--record", str(record)) as p:
        try:
            p.initialize()
            wait_for(record.exists, PROMPT, what="the pid file")
            grandchild = int(record.read_text())
            assert _alive(grandchild)
            assert os.getpgid(grandchild) == p.proc.pid  # same group as the server
            p.close_stdin()
            assert p.wait_exit(PROMPT) == 0
            assert _alive(grandchild)  # an orphan, unless someone kills the group
        finally:
            with suppress(OSError):
                os.killpg(p.proc.pid, signal.SIGKILL)
        wait_for(lambda: not _alive(grandchild), PROMPT, what="the grandchild to die")
