"""fork() with a live local server: the child closes its copies of the server's pipes.

Otherwise the child keeps the server's stdin open, the parent's close() gets no EOF through,
and after 2 s it ends in SIGTERM instead of a clean exit. The child only closes fds: it never
signals or waits for the parent's process (and it has none of the parent's threads).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest
from hostile.stdio_peer import peer_command
from support import child_env, reap

import sark_sync

#: A clean close (stdin EOF, exit 0) takes milliseconds; the bug took the 2 s stdin grace.
CLEAN_CLOSE = 1.0


def pipe_targets(server: sark_sync.LocalServer) -> set[str]:
    """``pipe:[inode]`` of the server's stdin, stdout and stderr in this process."""
    process = server._transport._process
    return {os.readlink(f"/proc/self/fd/{stream.fileno()}")
            for stream in (process.stdin, process.stdout, process.stderr)}


def close_while_a_child_lives(close: Callable[[], None]) -> tuple[set[str], float]:
    """Fork a child that stays alive until ``close()`` returned in the parent; return the fd
    targets the child had open, and how long ``close()`` took."""
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its fds, then wait for the parent's word
        status = 1
        try:
            os.close(report_r)
            os.close(release_w)
            targets = []
            for name in os.listdir("/proc/self/fd"):
                try:
                    targets.append(os.readlink(f"/proc/self/fd/{name}"))
                except OSError:
                    pass
            os.write(report_w, json.dumps(targets).encode())
            os.close(report_w)
            os.read(release_r, 1)
            status = 0
        finally:
            os._exit(status)
    os.close(report_w)
    os.close(release_r)
    try:
        with os.fdopen(report_r, "rb") as report:
            targets = set(json.loads(report.read()))
        started = time.monotonic()
        close()
        elapsed = time.monotonic() - started
    finally:
        os.write(release_w, b"x")
        os.close(release_w)
        assert reap(pid, timeout=10) == 0
    return targets, elapsed


@pytest.mark.fork
@pytest.mark.timeout(20)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_bare_local_server_closes_cleanly_while_a_forked_child_lives() -> None:
    server = sark_sync.LocalServer(peer_command("normal"), env=child_env(), name="p").start()
    assert server.call_tool("echo", {"n": 1}).text == '{"n": 1}'
    ours = pipe_targets(server)
    child_targets, elapsed = close_while_a_child_lives(server.close)
    assert ours.isdisjoint(child_targets)
    assert elapsed < CLEAN_CLOSE, elapsed
    assert server.returncode == 0  # stdin EOF reached it: a clean exit, no SIGTERM


@pytest.mark.fork
@pytest.mark.timeout(20)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_client_local_server_closes_cleanly_while_a_forked_child_lives() -> None:
    client = sark_sync.GatewayClient("http://127.0.0.1:9", local_servers={
        "p": {"command": peer_command("normal"), "env": child_env()}})
    try:
        assert client.invoke_tool("p", "echo", {"n": 1}).text == '{"n": 1}'
        server = client._resources.local._entries["p"].server
        assert server is not None
        ours = pipe_targets(server)
        child_targets, elapsed = close_while_a_child_lives(client.close)
    finally:
        client.close()
    assert ours.isdisjoint(child_targets)
    assert elapsed < CLEAN_CLOSE, elapsed
    assert server.returncode == 0
