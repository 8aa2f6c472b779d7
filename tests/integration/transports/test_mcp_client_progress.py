"""Progress and cancellation through ``GatewayClient.invoke_tool``/``submit``, against the
in-repo scripted stdio servers and the official MCP server (tests/realcomp/mcp_client_server.py,
mcp 2.3.0) over stdio and over Streamable HTTP at 2025-11-25 and 2026-07-28.

Proved here: progress reaches the caller in order, on the session's callbacks thread, all of it
before the call returns; ``future.cancel()`` on a 60 s tool and ``CancelToken.cancel()`` free
the caller at once and the server observes the cancellation (``slow(tag)`` records it); the
token's reason reaches the server in ``notifications/cancelled``; a cancelled call is neither
retried nor counted by the breaker, and its audit event is an ``error`` of type
``CallCancelled``. The autouse leak guard checks threads, descriptors and children after each.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from mcp_peer import Recorder, server_options, servers_argument
from realcomp.client_fixtures import ClientPeer
from support import FAST_RETRY, child_env, demo_server_command, misbehave_command, wait_for

import sark_sync
from sark_sync import CallCancelled, CancelToken
from sark_sync.governance import CallableSink
from sark_sync.transports._mcp_progress import MAX_PROGRESS_MESSAGE_CHARS

pytestmark = [pytest.mark.timeout(90)]

UNUSED_GATEWAY = "http://127.0.0.1:9"  # MCP servers only: the gateway is never reached
#: How long ``future.cancel()`` may take (it frees the waiter itself: bound check, not a
#: benchmark; the work is a callback that sets an event or closes a socket).
CANCEL_BOUND = 0.1
#: How long a caller blocked in ``invoke_tool`` may take to wake up after the token's cancel
#: (the thread's wake-up on a machine shared by many processes, plus writing the notification).
WAKE_BOUND = 1.0
#: Bound of the calls that must succeed (they take milliseconds).
CALL_TIMEOUT = 30.0
#: The scripted server whose progress reports lie.
PROGRESS_PEER = Path(__file__).resolve().parents[1] / "stdio_servers" / "progress_peer.py"


def client_for(peer: ClientPeer, events: list[Any] | None = None,
               **options: Any) -> sark_sync.GatewayClient:
    return sark_sync.GatewayClient(
        UNUSED_GATEWAY, retry=FAST_RETRY,
        audit=[] if events is None else CallableSink(events.append),
        **{servers_argument(peer): {"peer": server_options(peer)}}, **options)


def tool_calls(events: list[Any]) -> list[tuple[str | None, str | None, str | None]]:
    return [(e.tool, e.outcome, e.error_type) for e in events
            if e.event_type == "tool_invocation"]


# -- the official server ------------------------------------------------------------------------


@pytest.mark.realcomp
def test_progress_arrives_in_order_through_invoke_tool_and_submit(
        mcp_client_peer: ClientPeer) -> None:
    seen: list[tuple[tuple[float, float | None, str | None], str]] = []

    def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(((value, total, message), threading.current_thread().name))

    expected = [(float(n), 30.0, f"step {n}") for n in range(1, 31)]
    with client_for(mcp_client_peer) as client:
        result = client.invoke_tool("peer", "steps", {"count": 30}, progress=progress,
                                    timeout=CALL_TIMEOUT)
        assert result.text == "steps 30"
        assert [s[0] for s in seen] == expected  # all of them, before the call returned
        assert {s[1] for s in seen} == {"sark-sync-mcp-peer-callbacks"}
        seen.clear()
        future = client.submit("peer", "steps", {"count": 30}, progress=progress,
                               timeout=CALL_TIMEOUT)
        assert future.result(CALL_TIMEOUT).text == "steps 30"
        assert [s[0] for s in seen] == expected


@pytest.mark.realcomp
def test_cancelling_the_future_of_a_60s_tool_frees_the_caller_and_the_server_sees_it(
        mcp_client_peer: ClientPeer) -> None:
    tag = f"future-{mcp_client_peer.kind}"
    events: list[Any] = []
    running = Recorder()
    with client_for(mcp_client_peer, events, max_workers=1) as client:
        client.list_tools("peer")
        future = client.submit("peer", "slow", {"tag": tag}, progress=running,
                               timeout=CALL_TIMEOUT)
        running.wait(1)  # the server runs the tool (it reports progress)
        started = time.monotonic()
        assert future.cancel() is True
        assert time.monotonic() - started < CANCEL_BOUND
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result(0)
        wait_for(lambda: client.invoke_tool("peer", "cancelled", {"tag": tag},
                                            timeout=CALL_TIMEOUT).text == "yes",
                 timeout=10, interval=0.05, what="the server to see the cancellation")
        breaker = client.breaker_for("peer")
        assert (breaker.failure_count, breaker.state) == (0, "closed")
        # The worker audits the slow call as it ends: maybe after the calls made since.
        slow = wait_for(lambda: [c for c in tool_calls(events) if c[0] == "slow"], timeout=10,
                        what="the audit event of the cancelled call")
        assert slow == [("slow", "error", "CallCancelled")]  # once: not retried
        assert {c[0] for c in tool_calls(events)} == {"slow", "cancelled"}


@pytest.mark.realcomp
def test_a_cancel_token_frees_invoke_tool_with_its_reason_and_the_server_sees_it(
        mcp_client_peer: ClientPeer) -> None:
    tag = f"token-{mcp_client_peer.kind}"
    token = CancelToken()
    running = Recorder()
    outcome: list[BaseException] = []
    cancelled_at: list[float] = []
    with client_for(mcp_client_peer) as client:

        def call() -> None:
            try:
                client.invoke_tool("peer", "slow", {"tag": tag}, progress=running,
                                   cancel=token, timeout=CALL_TIMEOUT)
            except BaseException as exc:
                outcome.append(exc)
            cancelled_at.append(time.monotonic())

        caller = threading.Thread(target=call, name="test-caller")
        caller.start()
        try:
            running.wait(1)
            started = time.monotonic()
            token.cancel("the user left")
            caller.join(10)
            assert cancelled_at and cancelled_at[0] - started < WAKE_BOUND
        finally:
            token.cancel()
            caller.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], CallCancelled)
        error = outcome[0]
        assert (error.reason, error.server, error.tool) == ("the user left", "peer", "slow")
        wait_for(lambda: client.invoke_tool("peer", "cancelled", {"tag": tag},
                                            timeout=CALL_TIMEOUT).text == "yes",
                 timeout=10, interval=0.05, what="the server to see the cancellation")
        # The same token, cancelled, stops the next call before anything is sent.
        with pytest.raises(CallCancelled):
            client.invoke_tool("peer", "slow", {"tag": tag + "-never"}, cancel=token)
        assert client.invoke_tool("peer", "cancelled", {"tag": tag + "-never"}).text == "no"


# -- scripted stdio servers ---------------------------------------------------------------------


def test_progress_of_the_scripted_demo_server_arrives_in_order() -> None:
    seen = Recorder()
    servers = {"demo": {"command": demo_server_command(), "env": child_env()}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], local_servers=servers) as client:
        result = client.invoke_tool("demo", "slow", {"seconds": 0.05, "steps": 8},
                                    progress=seen, timeout=CALL_TIMEOUT)
    assert result.text == "done"
    assert seen.items == [(float(n), 8.0, None) for n in range(1, 9)]


def test_the_reason_of_a_token_reaches_a_local_server(tmp_path: Path) -> None:
    """A server that never answers (it records what it receives): the token's reason is the
    ``reason`` of ``notifications/cancelled``, sent once, for the call's request id."""
    record = tmp_path / "received.jsonl"
    servers = {"hang": {"command": misbehave_command("hang", "--record", str(record)),
                        "env": child_env()}}
    token = CancelToken()
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], retry=FAST_RETRY,
                                 local_servers=servers) as client:
        future = client.submit("hang", "echo", {"x": 1}, cancel=token, timeout=CALL_TIMEOUT)
        wait_for(lambda: record.exists() and "tools/call" in record.read_text(), timeout=10,
                 what="the server to take tools/call")
        started = time.monotonic()
        token.cancel("no longer needed")
        assert time.monotonic() - started < CANCEL_BOUND
        assert future.cancelled()
        wait_for(lambda: "notifications/cancelled" in record.read_text(), timeout=5,
                 what="notifications/cancelled")
        received = [json.loads(line) for line in record.read_text().splitlines()]
        call = next(m for m in received if m.get("method") == "tools/call")
        cancels = [m for m in received if m.get("method") == "notifications/cancelled"]
        assert [c["params"] for c in cancels] == [
            {"requestId": call["id"], "reason": "no longer needed"}]
        assert [m.get("method") for m in received].count("tools/call") == 1


def test_lying_progress_reports_are_skipped_and_the_good_ones_arrive_in_order(
        caplog: pytest.LogCaptureFixture) -> None:
    """Over a real pipe: reports with a progress that is no finite number, tokens of another
    type or call, params that are no object, a broken line; wrong total and message types
    become None, a 1 MiB message is cut. The reader survives, and so does the session."""
    seen = Recorder()
    servers = {"liar": {"command": [sys.executable, str(PROGRESS_PEER)], "env": child_env()}}
    with sark_sync.GatewayClient(UNUSED_GATEWAY, audit=[], local_servers=servers) as client:
        result = client.invoke_tool("liar", "report", {}, progress=seen, timeout=CALL_TIMEOUT)
        assert result.text == "reported"
        assert seen.items == [(1.0, 3.0, "one"), (2.0, None, None),
                              (3.0, 3.0, "m" * MAX_PROGRESS_MESSAGE_CHARS)]
        skipped = [r for r in caplog.records if "without a numeric progress" in r.getMessage()]
        assert len(skipped) == 5
        assert client.invoke_tool("liar", "report", {}).text == "reported"  # still usable
