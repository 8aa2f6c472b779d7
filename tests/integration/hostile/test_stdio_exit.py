"""A server that exits is noticed at its exit, not at its pipes' EOF, and close() never closes an
fd under a reader thread.

The peers are tests/hostile/stdio_peer.py. The nastiest: the server exits while a grandchild in
its own session (out of reach of the group kill) keeps its stdout and stderr open and writes
to them. The call must fail within :data:`EXIT_BOUND` of the exit, close() must leave no thread
of ours, and a pipe opened after close() must keep its data to itself (a leftover reader would
steal it and log it to ``sark_sync.stdio``, as it once did with reused fd numbers).
"""

from __future__ import annotations

import logging
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile.stdio_peer import peer_command
from support import child_env, wait_for

import sark_sync

#: How soon after the server's exit its pending call must fail (the promise: "at the exit").
EXIT_BOUND = 0.5
#: How long the grandchild holds the pipes: far longer than any bound asserted here.
HOLD = 30.0


def stdio_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("sark-sync-stdio-") and t.is_alive()]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat", "rb") as stat:  # a zombie waiting for init is gone too
        return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"


def watch_exit(pid: int) -> queue.Queue[float]:
    """A queue that receives the instant ``pid`` exits, seen through a pidfd of our own (the
    transport's reaping does not hide an exit from it)."""
    pidfd = os.pidfd_open(pid)
    seen: queue.Queue[float] = queue.Queue()

    def watch() -> None:
        try:
            select.select([pidfd], [], [], 15)
            seen.put(time.monotonic())
        finally:
            os.close(pidfd)

    threading.Thread(target=watch, name="test-exit-watch", daemon=True).start()
    return seen


@pytest.fixture
def grandchild(tmp_path: Path) -> Iterator[Path]:
    """Where the peer records its grandchild's pid; the grandchild is killed after the test
    (by pid: it is in a session of its own, so no group kill of ours reaches it)."""
    record = tmp_path / "grandchild.pid"
    yield record
    if record.exists():
        pid = int(record.read_text())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: gone(pid), 5, what=f"grandchild {pid} to go")


@pytest.mark.timeout(20)
def test_a_call_fails_at_the_exit_while_a_grandchild_holds_the_pipes(
    grandchild: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sark_sync.stdio")
    server = sark_sync.LocalServer(
        peer_command("grandchild_holds_pipes", "--record", str(grandchild), "--hold", str(HOLD),
                     "--noise", "noise-from-grandchild"),
        env=child_env(), name="holder").start()
    pid = server.pid
    assert pid is not None
    exited_at = watch_exit(pid)
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        server.call_tool("echo", {}, timeout=15)
    failed_at = time.monotonic()
    assert str(caught.value).startswith("local MCP server 'holder' exited with code 5")
    assert caught.value.returncode == 5
    exit_time = exited_at.get(timeout=5)
    assert failed_at - exit_time < EXIT_BOUND, failed_at - exit_time
    assert not server.alive
    grandchild_pid = int(wait_for(lambda: grandchild.exists() and grandchild.read_text(), 5))
    assert not gone(grandchild_pid)  # still holding the pipes

    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0  # the process is gone: no ladder to climb
    assert stdio_threads() == []

    # A pipe opened now may get the numbers of the closed fds; nobody else may read it.
    caplog.clear()
    read_end, write_end = os.pipe()
    try:
        sentinel = b"sentinel-after-close\n"
        os.write(write_end, sentinel)
        os.set_blocking(read_end, False)
        assert os.read(read_end, 1024) == sentinel
    finally:
        os.close(read_end)
        os.close(write_end)
    assert not any("sentinel" in r.getMessage() for r in caplog.records)
    assert grandchild_pid and not gone(grandchild_pid)  # it was never ours to kill


@pytest.mark.timeout(20)
def test_exit_with_a_grandchild_holding_the_pipes_through_the_client(grandchild: Path) -> None:
    command = peer_command("grandchild_holds_pipes", "--record", str(grandchild),
                           "--hold", str(HOLD))
    with sark_sync.GatewayClient("http://127.0.0.1:9", local_servers={
            "holder": {"command": command, "env": child_env()}},
            breaker=sark_sync.BreakerPolicy(enabled=False),
            retry=sark_sync.RetryPolicy(attempts=1)) as client:  # one spawn, one grandchild
        assert [t.name for t in client.list_tools("holder", timeout=10)] == ["echo"]  # started
        started = time.monotonic()
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            client.invoke_tool("holder", "echo", {}, timeout=10)
        assert time.monotonic() - started < EXIT_BOUND + 0.5  # the exit, not the 10 s
        assert str(caught.value).startswith("local MCP server 'holder' exited with code 5")
    assert stdio_threads() == []


@pytest.mark.timeout(20)
def test_exit_right_after_the_handshake_fails_the_next_call_with_the_exit_code() -> None:
    with sark_sync.LocalServer(peer_command("exit_after_init"), env=child_env(),
                               name="quitter") as server:
        wait_for(lambda: not server.alive, 5, what="the exit to be noticed")
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            server.call_tool("echo", {}, timeout=5)
        assert str(caught.value) == "local MCP server 'quitter' exited with code 6 (server=quitter)"
        assert caught.value.returncode == 6


@pytest.mark.timeout(20)
def test_half_a_line_then_exit_fails_the_call_as_an_unreadable_answer() -> None:
    """The last bytes, without their newline, are still read at the exit: they carry the id,
    so the call learns its answer was cut, not merely that the server went away."""
    with sark_sync.LocalServer(peer_command("partial_then_exit"), env=child_env(),
                               name="cut") as server:
        started = time.monotonic()
        with pytest.raises(sark_sync.ProtocolError) as caught:
            server.call_tool("echo", {"x": 1}, timeout=10)
        assert time.monotonic() - started < EXIT_BOUND + 0.5
        assert str(caught.value).startswith("unreadable answer from 'cut': not JSON: ")
        wait_for(lambda: not server.alive, 5, what="the exit to be noticed")
        with pytest.raises(sark_sync.ProcessExitedError, match="exited with code 4"):
            server.call_tool("echo", {}, timeout=5)


@pytest.mark.timeout(20)
def test_close_while_a_call_waits_fails_it_at_once_and_leaves_no_thread() -> None:
    server = sark_sync.LocalServer(peer_command("wrong_id"), env=child_env(), name="w").start()
    errors: list[BaseException] = []
    waiting = threading.Event()

    def call() -> None:
        waiting.set()
        try:
            server.call_tool("echo", {}, timeout=15)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    waiting.wait(5)
    wait_for(lambda: server._transport._calls.pending, 5, what="the call to be pending")
    started = time.monotonic()
    server.close()
    caller.join(5)
    assert time.monotonic() - started < 3.0  # stdin EOF: it exits at once
    assert [type(e) for e in errors] == [sark_sync.ProcessExitedError]
    assert str(errors[0]) == "local MCP server 'w' was closed (server=w)"
    assert stdio_threads() == []
