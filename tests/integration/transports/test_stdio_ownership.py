"""Who may touch a local server: only the process that started it, and only while it is held.

A forked child shares the parent's pipes; writing to them would run tools in the parent's
server and steal its answers. A session nobody holds any more must not leave a process behind.
And the demo server must exit cleanly however its stdin ends, calls in flight or not.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
from typing import Any

import pytest
from support import child_env, demo_server_command, in_child, wait_for

import sark_sync

#: Pipelined calls per round, and rounds: the lost-answer race showed in ~1 round of 2.
CALLS = 19
ROUNDS = 15


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_cannot_call_a_bare_local_server_of_its_parent() -> None:
    with sark_sync.LocalServer(demo_server_command(), env=child_env(), name="demo") as server:
        outcome = in_child(lambda: server.call_tool("echo", {"text": "from the child"}).text)
        assert outcome[:2] == ["raised", "ProcessExitedError"]
        assert "belongs to the process that started it" in outcome[2]
        # Nothing reached the parent's server: its next answer is its own, and it is alive.
        assert server.call_tool("echo", {"text": "parent"}).text == "parent"
        assert server.alive


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_connected_server_in_a_forked_child_fails_locally_and_never_goes_to_the_gateway(
) -> None:
    unused = "http://127.0.0.1:9"  # nothing listens: a call routed there would say so
    with sark_sync.GatewayClient(unused, transport_mode="auto") as client, \
            client.connect_local_server(demo_server_command(), env=child_env(), name="mine"):

        def call() -> Any:
            return client.invoke_tool("mine", "echo", {"text": "child"}).text

        outcome = in_child(call)
        assert outcome[:2] == ["raised", "ProcessExitedError"]
        assert "connect it again" in outcome[2]
        assert client.invoke_tool("mine", "echo", {"text": "parent"}).text == "parent"


def test_a_session_nobody_holds_is_stopped_when_collected() -> None:
    server = sark_sync.LocalServer(demo_server_command(), env=child_env()).start()
    pid = server.pid
    assert pid is not None and server.alive
    process = server._transport._process  # to check the exit code after the session is gone
    del server
    gc.collect()
    assert process is not None
    wait_for(lambda: process.poll() is not None, 10, what=f"process {pid} to exit")
    assert process.returncode == 0  # closed by the finalizer: stdin closed, a clean exit


def test_the_demo_server_answers_every_pipelined_call_and_exits_0_at_eof() -> None:
    """Calls written together with the end of stdin: every one is answered, and the process
    exits 0. (It once unregistered a call before writing its answer, so the interpreter could
    exit mid-write: answers lost and "Fatal Python error" in about half the rounds.)"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # flushes itself
    lines = [json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}})]
    lines += [json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": "x" * i}}})
              for i in range(1, CALLS + 1)]
    for round_ in range(ROUNDS):
        process = subprocess.Popen(demo_server_command(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            out, err = process.communicate(("\n".join(lines) + "\n").encode(), timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        answered = sorted(json.loads(line)["id"] for line in out.splitlines())
        assert (process.returncode, answered) == (0, list(range(CALLS + 1))), \
            (round_, err.decode(errors="replace")[-500:])


def test_a_local_server_leads_its_own_process_group_in_our_session_where_possible() -> None:
    """Its own group, so shutdown reaches its grandchildren; on Python >= 3.11 not a new
    session, which Linux would schedule as another autogroup (slower round trips)."""
    import sys

    with sark_sync.LocalServer(demo_server_command(), env=child_env()) as server:
        pid = server.pid
        assert pid is not None
        assert os.getpgid(pid) == pid
        same_session = os.getsid(pid) == os.getsid(0)
        assert same_session == (sys.version_info >= (3, 11))
