"""100,000-deep JSON on the stdio path: never a RecursionError, never a dead reader thread.

A response nested that deep fails its own call with ProtocolError at once (the id is read from
the line's first bytes); a notification or a server request nested that deep is logged and
dropped; and the session answers the next call. Arguments nested too deeply to encode are a
ValidationError before anything is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hostile.stdio_peer import peer_command
from support import child_env

import sark_sync

DEPTH = 100_000
NESTED_ARGUMENTS = ("parameters are nested too deeply to encode as JSON (deeper than the "
                    "interpreter's recursion limit): RecursionError")


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[sark_sync.LocalServer]:
    with sark_sync.LocalServer(peer_command(request.param, "--depth", str(DEPTH)),
                               env=child_env(), name="deep") as server:
        yield server


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["deep_response"], indirect=True)
def test_a_deep_response_fails_its_call_with_protocol_error_and_the_session_goes_on(
    peer: sark_sync.LocalServer,
) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.ProtocolError) as caught:
        peer.call_tool("echo", {"n": 1}, timeout=10)
    assert time.monotonic() - started < 2.0  # at once, not at the 10 s timeout
    assert str(caught.value) == (
        "unreadable answer from 'deep': nested too deeply to decode (server=deep)")
    assert not isinstance(caught.value.__cause__, RecursionError)
    assert peer.call_tool("echo", {"n": 2}, timeout=10).text == '{"n": 2}'
    assert peer.alive


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["deep_notification", "deep_request"], indirect=True)
def test_a_deep_message_of_the_server_is_logged_and_dropped(
    peer: sark_sync.LocalServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sark_sync.stdio")
    for n in range(3):
        assert peer.call_tool("echo", {"n": n}, timeout=10).text == f'{{"n": {n}}}'
    dropped = [r.getMessage() for r in caplog.records
               if "nested too deeply to decode" in r.getMessage()]
    assert dropped == ["deep wrote a line that is not JSON-RPC (ignored): nested too deeply "
                       "to decode"] * 3
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)  # the reader lives
    assert peer.alive


@pytest.mark.timeout(30)
@pytest.mark.parametrize("peer", ["normal"], indirect=True)
def test_deeply_nested_arguments_are_a_validation_error_and_nothing_is_sent(
    peer: sark_sync.LocalServer,
) -> None:
    with pytest.raises(sark_sync.ValidationError) as caught:
        peer.call_tool("echo", {"deep": nested(DEPTH)}, timeout=10)
    assert str(caught.value) == NESTED_ARGUMENTS
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert peer.call_tool("echo", {"n": 1}, timeout=10).text == '{"n": 1}'


@pytest.mark.timeout(30)
def test_deeply_nested_arguments_through_the_client_are_a_validation_error() -> None:
    with sark_sync.GatewayClient("http://127.0.0.1:9", local_servers={
            "deep": {"command": peer_command("normal"), "env": child_env()}}) as client:
        with pytest.raises(sark_sync.ValidationError) as caught:
            client.invoke_tool("deep", "echo", {"deep": nested(DEPTH)}, timeout=10)
        assert str(caught.value) == NESTED_ARGUMENTS
        assert client.invoke_tool("deep", "echo", {"n": 1}, timeout=10).text == '{"n": 1}'
