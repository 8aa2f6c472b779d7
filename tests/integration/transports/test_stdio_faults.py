"""Faults of local MCP servers: each has a bounded wait and leaves no process behind.

The servers are real child processes (``stdio_servers/misbehave.py``), each misbehaving in one
way. After every test no process of any group the test spawned may remain (the suite's leak
checker covers the test's own children; :func:`group_members` covers grandchildren).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import child_env, misbehave_command, wait_for

import sark_sync


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (zombies included)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry))
    return members


@pytest.fixture
def spawned() -> Iterator[list[sark_sync.LocalServer]]:
    """Servers a test started; after it, their process groups must be empty."""
    servers: list[sark_sync.LocalServer] = []
    yield servers
    for server in servers:
        server.close()
        assert server.pid is not None
        assert group_members(server.pid) == [], f"{server.name} left processes behind"


def start(spawned: list[sark_sync.LocalServer], mode: str, *args: str,
          **options: float) -> sark_sync.LocalServer:
    server = sark_sync.LocalServer(misbehave_command(mode, *args), env=child_env(), name=mode,
                                   **options)  # type: ignore[arg-type]
    spawned.append(server)
    return server.start()


def test_crash_mid_call_fails_the_call_at_once(spawned: list[sark_sync.LocalServer]) -> None:
    server = start(spawned, "crash_mid_call")
    started = time.monotonic()
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        server.call_tool("echo", {"x": 1}, timeout=20)
    assert time.monotonic() - started < 2
    assert caught.value.returncode == 7
    assert "boom" in caught.value.stderr_tail
    with pytest.raises(sark_sync.ProcessExitedError):  # later calls fail at once too
        server.call_tool("echo", {}, timeout=20)


def test_hung_call_times_out_and_sends_cancelled(spawned: list[sark_sync.LocalServer],
                                                 tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    server = start(spawned, "hang", "--record", str(record))
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout):
        server.call_tool("echo", {}, timeout=0.5)
    assert 0.45 <= time.monotonic() - started < 1.0
    wait_for(lambda: record.exists() and "notifications/cancelled" in record.read_text(),
               timeout=5, what="notifications/cancelled to arrive")
    received = [json.loads(line) for line in record.read_text().splitlines()]
    call = next(m for m in received if m.get("method") == "tools/call")
    cancel = next(m for m in received if m.get("method") == "notifications/cancelled")
    assert cancel["params"]["requestId"] == call["id"]


def test_non_json_lines_are_skipped(spawned: list[sark_sync.LocalServer],
                                    caplog: pytest.LogCaptureFixture) -> None:
    server = start(spawned, "non_json")
    server.list_tools()  # listed here, not by the first call (whose answer it would precede)
    caplog.clear()
    for n in range(3):
        assert f"{n}" in server.call_tool("echo", {"n": n}).text
    assert sum("not JSON-RPC" in r.getMessage() for r in caplog.records) == 3


def test_20_mib_line_fails_its_call_and_the_server_stays_usable(
    spawned: list[sark_sync.LocalServer],
) -> None:
    server = start(spawned, "huge_line")
    with pytest.raises(sark_sync.ProtocolError) as caught:
        server.call_tool("echo", {"first": True}, timeout=20)
    assert "limit" in str(caught.value)
    assert "second" in server.call_tool("echo", {"second": True}, timeout=20).text


def test_stderr_flood_does_not_deadlock(spawned: list[sark_sync.LocalServer]) -> None:
    server = start(spawned, "stderr_flood")
    for n in range(2):
        assert f"{n}" in server.call_tool("echo", {"n": n}, timeout=20).text
    assert len(server.stderr_tail.splitlines()) == 100  # only the tail is kept


def test_server_ignoring_sigterm_is_killed_within_about_4_seconds(
    spawned: list[sark_sync.LocalServer],
) -> None:
    server = start(spawned, "ignore_sigterm")
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 4.8
    assert server.returncode == -9


def test_server_that_never_initializes_hits_the_startup_timeout(
    spawned: list[sark_sync.LocalServer],
) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        start(spawned, "never_initialize", startup_timeout=0.5)
    assert time.monotonic() - started < 3.0  # timeout, then a bounded shutdown
    assert "startup_timeout=0.5" in str(caught.value)


def test_slow_start_within_the_startup_timeout_works(spawned: list[sark_sync.LocalServer]
                                                    ) -> None:
    server = start(spawned, "slow_start", "--delay", "0.5", startup_timeout=5)
    assert server.call_tool("echo", {"ok": 1}).is_error is False


def test_wrong_protocol_version_is_a_protocol_error(spawned: list[sark_sync.LocalServer]
                                                    ) -> None:
    with pytest.raises(sark_sync.ProtocolError, match="1999-01-01"):
        start(spawned, "wrong_version")


def test_exit_at_start_reports_exit_code_and_stderr(spawned: list[sark_sync.LocalServer]
                                                    ) -> None:
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        start(spawned, "exit_at_start")
    assert caught.value.returncode == 2
    assert "fatal: config missing" in str(caught.value)


def test_grandchildren_are_killed_with_the_server(spawned: list[sark_sync.LocalServer],
                                                  tmp_path: Path) -> None:
    record = tmp_path / "grandchild.pid"
    server = start(spawned, "spawn_grandchild", "--record", str(record))
    assert server.call_tool("echo", {}).is_error is False
    wait_for(record.exists, timeout=5, what="the grandchild's pid file")
    grandchild = int(record.read_text())
    assert grandchild in group_members(server.pid or 0)
    server.close()
    assert group_members(server.pid or 0) == []
