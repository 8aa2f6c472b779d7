"""What else a local server can do between two bytes, and each bound that holds against it.

None of these is named by the issue; each is a real way a child process misbehaves. Every test
asserts the bound (the call's timeout plus :data:`MARGIN`, or the shutdown ladder), the exact
error and its message, and that the session (or the client) still behaves afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from hostile.stdio_peer import peer_command
from support import child_env, wait_for

import sark_sync
from sark_sync.transports import _stdio_baton, _stdio_process

#: What a bound may be exceeded by: scheduling on a shared machine, not design slack.
MARGIN = 0.2


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[sark_sync.LocalServer]:
    mode, *args = request.param.split()
    with sark_sync.LocalServer(peer_command(mode, *args), env=child_env(), name=mode) as server:
        yield server


def timed_out_within(server: sark_sync.LocalServer, timeout: float) -> str:
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        server.call_tool("echo", {"n": 1}, timeout=timeout)
    elapsed = time.monotonic() - started
    assert timeout - 0.01 <= elapsed < timeout + MARGIN, elapsed
    return str(caught.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["trickle --delay 0.002"], indirect=True)
def test_a_trickled_answer_arrives_but_cannot_stretch_the_timeout(
    peer: sark_sync.LocalServer,
) -> None:
    """One byte every 2 ms: a ~90-byte answer takes ~0.2 s. Within a 5 s timeout it is read
    whole; within 0.05 s the call ends at 0.05 s, however many bytes keep coming."""
    assert peer.call_tool("echo", {"n": 1}, timeout=5).text == '{"n": 1}'
    message = timed_out_within(peer, 0.05)
    assert message == "local MCP server 'trickle' did not answer tools/call within 0.05s " \
                      "(server=trickle)"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["stderr_flood"], indirect=True)
def test_an_endless_stderr_flood_neither_blocks_the_server_nor_grows_the_tail(
    peer: sark_sync.LocalServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sark_sync.stdio")  # not 6 KB INFO lines by 1000s
    for n in range(5):
        assert peer.call_tool("echo", {"n": n}, timeout=10).text == f'{{"n": {n}}}'
    lines = wait_for(lambda: len(peer.stderr_tail.splitlines()) >= 100 and
                       len(peer.stderr_tail.splitlines()), 10, what="100 lines of stderr")
    assert lines == 100  # the tail, never more, while the flood goes on
    started = time.monotonic()
    peer.close()  # it exits at stdin EOF while its flood thread still writes
    elapsed = time.monotonic() - started
    # Well before SIGKILL: a flood that blocked the shutdown would only end there. (Usually
    # ~20 ms, by stdin EOF; on a loaded machine its interpreter may need the SIGTERM rung.)
    assert elapsed < _stdio_process.STDIN_CLOSE_TIMEOUT + _stdio_process.TERMINATE_TIMEOUT
    assert peer.returncode in (0, -15)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["invalid_utf8"], indirect=True)
def test_invalid_utf8_fails_its_call_at_once_and_the_session_goes_on(
    peer: sark_sync.LocalServer,
) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.ProtocolError) as caught:
        peer.call_tool("echo", {"n": 1}, timeout=10)
    assert time.monotonic() - started < 1.0
    assert str(caught.value) == ("unreadable answer from 'invalid_utf8': not valid UTF-8 (at "
                                 "byte 68) (server=invalid_utf8)")
    assert peer.call_tool("echo", {"n": 2}, timeout=10).text == '{"n": 2}'


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["wrong_id", "string_id", "bool_id"], indirect=True)
def test_an_answer_with_another_id_never_resolves_the_call(
    peer: sark_sync.LocalServer,
) -> None:
    """id+1000, "1" for 1, or true (which equals 1 in a Python dict): none is our call's id,
    so the call ends at its timeout rather than taking a stranger's answer."""
    name = peer.name
    assert timed_out_within(peer, 0.5) == (
        f"local MCP server {name!r} did not answer tools/call within 0.5s (server={name})")
    assert peer.alive


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["duplicate_id"], indirect=True)
def test_a_duplicate_answer_is_dropped_and_never_given_to_the_next_call(
    peer: sark_sync.LocalServer,
) -> None:
    for n in range(3):
        assert peer.call_tool("echo", {"n": n}, timeout=10).text == f'{{"n": {n}}}'


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["huge_id"], indirect=True)
def test_an_answer_with_a_5000_digit_id_is_dropped_and_the_real_one_is_taken(
    peer: sark_sync.LocalServer,
) -> None:
    assert peer.call_tool("echo", {"n": 1}, timeout=10).text == '{"n": 1}'
    assert peer.call_tool("echo", {"n": 2}, timeout=10).text == '{"n": 2}'


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["close_stdin"], indirect=True)
def test_a_server_that_closes_its_stdin_fails_the_call_and_is_no_longer_alive(
    peer: sark_sync.LocalServer,
) -> None:
    wait_for(lambda: _stdin_closed_by_peer(peer), 5, what="the peer to close its stdin")
    with pytest.raises(sark_sync.ProcessExitedError) as caught:
        peer.call_tool("echo", {"n": 1}, timeout=10)
    assert str(caught.value) == ("local MCP server 'close_stdin' closed its stdin while running "
                                 "(server=close_stdin)")
    assert not peer.alive  # so a pool restarts it instead of failing every call
    with pytest.raises(sark_sync.ProcessExitedError, match="closed its stdin while running"):
        peer.call_tool("echo", {"n": 2}, timeout=10)


def _stdin_closed_by_peer(server: sark_sync.LocalServer) -> bool:
    """True once the server's end of its stdin pipe is gone (no fd of it points there)."""
    import os

    pid = server.pid
    assert pid is not None
    ours = os.readlink(f"/proc/self/fd/{server._transport._process.stdin.fileno()}")
    try:
        theirs = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    return ours not in theirs


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["no_read"], indirect=True)
def test_a_server_that_stops_reading_cannot_block_a_write_past_the_timeout_nor_be_reused(
    peer: sark_sync.LocalServer,
) -> None:
    big = {"blob": "x" * (4 * 1024 * 1024)}  # far more than a pipe buffer
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        peer.call_tool("echo", big, timeout=0.5)
    assert time.monotonic() - started < 0.5 + MARGIN
    assert str(caught.value) == ("local MCP server 'no_read' stopped reading its stdin "
                                 "(server=no_read)")
    # Half of that call's line is in the pipe: no later message could be framed after it.
    assert not peer.alive
    with pytest.raises(sark_sync.ProcessExitedError) as later:
        peer.call_tool("echo", {"n": 1}, timeout=0.5)
    assert str(later.value) == ("local MCP server 'no_read' stopped reading its stdin in the "
                                "middle of a message; start it again (server=no_read)")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["no_read"], indirect=True)
def test_a_small_call_the_full_pipe_cannot_take_waits_its_timeout_and_tears_nothing(
    peer: sark_sync.LocalServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call of at most PIPE_BUF bytes is first offered to the pipe at once (and its answer
    read in place); a full pipe takes none of it, and the call then waits for room like any
    other, within its timeout. Nothing went out, so the session is not torn."""
    transport = peer._transport
    monkeypatch.setattr(_stdio_baton, "LINGER", 30.0)  # the pipe stays the callers': in place
    peer.list_tools(timeout=5)  # the peer's last read: after it, it reads nothing more
    for size in (3000, 0):  # 3 KB lines fill the pipe's pages, 31-byte ones the last page
        with pytest.raises(sark_sync.TransportTimeout):
            for _ in range(100_000):
                transport.notify("n", {"blob": "x" * size} if size else None, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(sark_sync.TransportTimeout) as caught:
        peer.call_tool("echo", {"n": 1}, timeout=0.3)
    assert 0.3 - 0.01 <= time.monotonic() - started < 0.3 + MARGIN
    assert str(caught.value) == ("local MCP server 'no_read' stopped reading its stdin "
                                 "(server=no_read)")
    assert peer.alive and not transport._proc.torn  # whole lines only: still framed
    assert transport._calls.pending == {}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["sigstop"], indirect=True)
def test_a_stopped_server_is_ended_by_sigterm_not_left_for_sigkill(
    peer: sark_sync.LocalServer,
) -> None:
    """A process stopped by SIGSTOP keeps SIGTERM pending for ever; the ladder sends SIGCONT
    with it, so the server ends at the SIGTERM rung."""
    timed_out_within(peer, 0.3)
    started = time.monotonic()
    peer.close()
    elapsed = time.monotonic() - started
    assert elapsed < _stdio_process.STDIN_CLOSE_TIMEOUT + 1.0, elapsed
    assert peer.returncode == -15


@pytest.mark.timeout(30)
def test_a_program_with_more_than_1024_open_fds_can_still_use_local_servers() -> None:
    """select() cannot watch fd numbers >= 1024, so a busy program (many sockets, files) would
    have its server's pipes numbered out of its reach; the transport waits with poll()."""
    import os

    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with sark_sync.LocalServer(peer_command("normal"), env=child_env(), name="high") as s:
            stdin_fd = s._transport._process.stdin.fileno()
            assert stdin_fd > 1024
            assert s.call_tool("echo", {"n": 1}, timeout=10).text == '{"n": 1}'
            assert s.call_tool("echo", {"blob": "x" * 300_000}, timeout=10).text.endswith('x"}')
        assert s.returncode == 0
    finally:
        for fd in held:
            os.close(fd)
