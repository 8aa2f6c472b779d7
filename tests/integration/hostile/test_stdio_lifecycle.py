"""Starting, restarting and abandoning a local server fit in the calling operation's deadline;
the abandoned process is still ended and reaped, in the background, within the shutdown ladder;
and every spawn counts against the restart policy.

Bounds asserted: a call with ``timeout=T`` against a server that never completes its handshake
returns within T + :data:`MARGIN`; an abandoned server is reaped within the ladder
(:data:`LADDER` = stdin close 2 s + SIGTERM 2 s + SIGKILL) plus :data:`MARGIN`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hostile.stdio_peer import peer_command
from support import child_env, wait_for

import sark_sync
from sark_sync.transports import _stdio_process

#: What a bound may be exceeded by: scheduling on a shared 2-core machine, not design slack.
MARGIN = 0.1
#: The shutdown ladder of a server that ignores stdin EOF and SIGTERM.
LADDER = (_stdio_process.STDIN_CLOSE_TIMEOUT + _stdio_process.TERMINATE_TIMEOUT
          + _stdio_process.KILL_TIMEOUT)
UNUSED_GATEWAY = "http://127.0.0.1:9"
NO_BREAKER = sark_sync.BreakerPolicy(enabled=False)


def reaped(pid: int) -> bool:
    """True once ``pid`` is neither running nor a zombie (it is our child: waited for)."""
    return not os.path.exists(f"/proc/{pid}")


def client_for(mode: str, *args: str, **options: object) -> sark_sync.GatewayClient:
    return sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers={
        "srv": {"command": peer_command(mode, *args), "env": child_env()}},
        breaker=NO_BREAKER, **options)  # type: ignore[arg-type]


def reaper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sark_sync-singleton-reaper"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("mode", "error", "message"), [
    ("never_initialize", sark_sync.DeadlineExceeded,
     "deadline of 1s exceeded waiting for srv/echo"),
    ("stdout_closed_ignore_term", sark_sync.ProcessExitedError,
     "local MCP server 'srv' closed its stdout while running (server=srv, tool=echo, "
     "attempts=1)"),
])
def test_a_start_that_cannot_finish_ends_within_the_deadline(
    mode: str, error: type[Exception], message: str,
) -> None:
    """Never answering initialize, or closing stdout while ignoring SIGTERM: either way the
    call returns within its 1 s, and the server's shutdown ladder (4 s and more for the
    second) is not the caller's to wait for."""
    with client_for(mode) as client:
        started = time.monotonic()
        with pytest.raises(error) as caught:
            client.invoke_tool("srv", "echo", {}, timeout=1)
        elapsed = time.monotonic() - started
        assert elapsed < 1 + MARGIN, elapsed
        assert str(caught.value).startswith(message)
        server = client._resources.local._entries["srv"].server
        assert server is not None and server.pid is not None
        pid = server.pid
    # close() waited for the abandoned server: reaped, no zombie.
    assert reaped(pid)


@pytest.mark.timeout(20)
def test_a_server_that_closes_stdout_fails_at_once_not_at_the_deadline() -> None:
    with client_for("stdout_closed_ignore_term") as client:
        started = time.monotonic()
        with pytest.raises(sark_sync.ProcessExitedError) as caught:
            client.invoke_tool("srv", "echo", {}, timeout=5)
        assert time.monotonic() - started < 1.0
        assert str(caught.value) == (
            "local MCP server 'srv' closed its stdout while running (server=srv, tool=echo, "
            "attempts=1)")


@pytest.mark.timeout(20)
def test_an_abandoned_server_is_reaped_in_the_background_within_the_ladder() -> None:
    """stdout closed after the handshake, SIGTERM ignored: the restart abandons it at once,
    and the reaper climbs the ladder to SIGKILL and reaps it, without the caller. One
    attempt per call: the server also dies in the tools/list made before a call, which is
    safe to retry (the call was never sent), and the retries' restarts are not measured here."""
    client = client_for("stdout_closed_ignore_term", "--after-init",
                        restart=sark_sync.RestartPolicy(max_restarts=5, backoff=0),
                        retry=sark_sync.RetryPolicy(attempts=1))
    try:
        with pytest.raises(sark_sync.ProcessExitedError, match="closed its stdout"):
            client.invoke_tool("srv", "echo", {}, timeout=5)
        first = client._resources.local._entries["srv"].server
        assert first is not None and first.pid is not None
        abandoned_at = time.monotonic()
        with pytest.raises(sark_sync.ProcessExitedError, match="closed its stdout"):
            client.invoke_tool("srv", "echo", {}, timeout=5)  # restarts: abandons the first
        assert time.monotonic() - abandoned_at < 2.0  # did not wait for the ladder
        assert [t.daemon for t in reaper_threads()] == [True]
        wait_for(lambda: reaped(first.pid or 0), LADDER + 1.0,
                   what="the abandoned server to be reaped")
        assert time.monotonic() - abandoned_at < LADDER + 1.0
        assert first.returncode == -9  # it ignored SIGTERM: the ladder ended in SIGKILL
    finally:
        client.close()
    wait_for(lambda: not reaper_threads(), 5, what="the idle reaper to end")


@pytest.mark.timeout(20)
def test_a_failed_start_of_a_bare_local_server_returns_within_its_startup_timeout() -> None:
    server = sark_sync.LocalServer(peer_command("stdout_closed_ignore_term", "--after-init"),
                                   env=child_env(), name="s", startup_timeout=1)
    # The handshake succeeds, then stdout closes: start() must not climb the ladder itself.
    server.start()
    with pytest.raises(sark_sync.ProcessExitedError):
        server.call_tool("echo", {}, timeout=5)
    started = time.monotonic()
    server.abandon()
    assert time.monotonic() - started < MARGIN
    server.close()  # waits for the background ladder: bounded by it
    assert time.monotonic() - started < LADDER + 1.0
    assert server.returncode == -9


@pytest.mark.timeout(30)
def test_every_spawn_counts_against_the_restart_policy(tmp_path: Path) -> None:
    record = tmp_path / "spawns"
    with client_for("die_in_handshake", "--record", str(record),
                    restart=sark_sync.RestartPolicy(max_restarts=1, backoff=0)) as client:
        errors = []
        for _ in range(20):
            with pytest.raises(sark_sync.ProcessExitedError) as caught:
                client.invoke_tool("srv", "echo", {}, timeout=5)
            errors.append(str(caught.value))
    assert len(record.read_text().splitlines()) == 2  # the start and one restart
    assert errors[0].startswith("local MCP server 'srv' exited with code 3")
    assert errors[1].startswith("local MCP server 'srv' exited with code 3")
    assert errors[2:] == [
        "local MCP server 'srv' exited and was restarted 1 times in 60s: not restarting it "
        "again yet (server=srv, tool=echo, attempts=1)\nlast lines of its stderr:\n"
        "dying in handshake"] * 18
