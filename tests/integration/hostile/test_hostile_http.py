"""HTTP peers that attack between bytes: every exchange of the SDK ends by its deadline.

Each test points a real client at a raw-socket peer of tests/hostile/http_peer.py and asserts
the promised bound (the deadline plus :data:`MARGIN`, the documented margin), the exact error
type and message, and what the peer saw.
"""

from __future__ import annotations

import gzip
import logging
import os
import signal
import threading
import time
from typing import Any, Callable

import pytest
from hostile.http_peer import (
    CLOSE,
    RESET,
    AwaitRequest,
    HostilePeer,
    Request,
    answer,
    endless_continue,
    json_answer,
    nested_json,
    stall,
    trickle,
    trickle_body,
    trickle_headers,
)
from support import API_KEY, wait_for

import sark_sync
from sark_sync import AuditEvent, OPAAuthorizer
from sark_sync.governance import AuthorizationInput, HTTPSink
from sark_sync.resilience import watchdog
from sark_sync.resilience._watchdog import DEADLINE_MARGIN
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.timeout(30)

#: The documented bound: no exchange outlives its deadline by more than this.
MARGIN = DEADLINE_MARGIN


def timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(sark_sync.GatewayError) as info:
        call()
    return info.value, time.monotonic() - started


# -- item 1: nothing outlives the deadline ----------------------------------------------------


@pytest.mark.parametrize("script", [
    pytest.param(trickle_headers(0.1), id="header-byte-every-100ms"),
    pytest.param(endless_continue(0.1), id="endless-100-continue"),
    pytest.param(trickle_body(0.1), id="body-byte-every-100ms"),
    pytest.param(trickle_body(0.1, chunked=True), id="chunk-size-byte-every-100ms"),
    pytest.param(stall(), id="silence"),
])
def test_invoke_tool_ends_at_its_deadline_whatever_the_peer_does_between_bytes(
        peer_client: Any, script: Any) -> None:
    peer, client = peer_client(script)
    error, elapsed = timed(lambda: client.invoke_tool("demo", "echo", {}, timeout=1.0))
    assert isinstance(error, sark_sync.DeadlineExceeded)
    assert str(error).startswith("deadline of 1s exceeded")
    assert 1.0 <= elapsed <= 1.0 + MARGIN
    assert [r.path for r in peer.requests][:1] == ["/api/v1/invoke"]
    assert API_KEY not in str(error) and API_KEY not in repr(error)


def test_a_trickle_slower_than_the_read_timeout_is_a_timeout_not_a_hang(peer_client: Any) -> None:
    # Each byte comes within the read timeout (0.5 s): only the deadline (2 s) can end it.
    _peer, client = peer_client(trickle_headers(0.2), timeout=sark_sync.Timeouts(
        connect=1, read=0.5, deadline=2))
    error, elapsed = timed(lambda: client.health())
    assert isinstance(error, sark_sync.DeadlineExceeded)
    assert 2.0 <= elapsed <= 2.0 + MARGIN


def test_every_discovery_call_is_bounded_too(peer_client: Any) -> None:
    _peer, client = peer_client(endless_continue(0.05))
    for call in (lambda: client.health(timeout=0.5), lambda: client.list_servers(timeout=0.5),
                 lambda: client.get_server("demo", timeout=0.5),
                 lambda: client.list_tools(server="demo", timeout=0.5)):
        error, elapsed = timed(call)
        assert isinstance(error, sark_sync.DeadlineExceeded)
        assert 0.5 <= elapsed <= 0.5 + MARGIN


def test_a_cut_connection_is_not_reused_by_the_next_call(peer_client: Any) -> None:
    calls = iter(["slow", "fast"])

    def script(request: Request) -> Any:
        if next(calls) == "slow":
            return trickle_headers(0.05)(request)
        return [answer(200, b'{"status": "healthy", "version": "x", "servers": 1}')]

    peer, client = peer_client(script)
    error, _ = timed(lambda: client.health(timeout=0.5))
    assert isinstance(error, sark_sync.DeadlineExceeded)
    assert client.health(timeout=2).status == "healthy"
    assert peer.connections == 2


def test_the_policy_engine_client_is_bounded_by_its_timeout() -> None:
    with HostilePeer(trickle_headers(0.05)) as peer:
        authorizer = OPAAuthorizer(peer.url, timeout=0.5, cache=False)
        document = AuthorizationInput(
            server=sark_sync.ServerInfo(server_name="demo"),
            tool=sark_sync.ToolInfo(tool_name="echo", server_name="demo"), parameters={})
        started = time.monotonic()
        with pytest.raises(sark_sync.AuthorizationUnavailable) as info:
            authorizer.authorize(document)
        elapsed = time.monotonic() - started
        authorizer.close()
    assert 0.5 <= elapsed <= 0.5 + MARGIN
    assert "did not answer within 0.5s" in str(info.value)


def test_an_audit_sink_close_cuts_a_trickling_request_and_hands_the_batch_to_the_fallback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "sark_sync.audit")
    with HostilePeer(trickle_headers(0.1)) as peer:
        sink = HTTPSink(peer.url, api_key=API_KEY, flush_interval=0, timeout=30,
                        close_timeout=1.0)
        event = AuditEvent(server="demo", tool="echo", outcome="success")
        sink.emit(event)
        wait_for(lambda: peer.requests, 5, what="the sink to post")
        started = time.monotonic()
        sink.close()
        elapsed = time.monotonic() - started
    assert 1.0 - 0.05 <= elapsed <= 1.0 + MARGIN
    assert not [t for t in threading.enumerate() if t.name == "sark_sync-audit-http"]
    assert (sink.sent, sink.dropped_to_fallback) == (0, 1)
    fallback = [r.getMessage() for r in caplog.records if r.name == "sark_sync.audit.fallback"]
    assert len(fallback) == 1 and event.event_id in fallback[0]
    assert API_KEY not in caplog.text


# -- item 4, HTTP: deep nesting -----------------------------------------------------------------


def test_100000_nested_arrays_are_a_protocol_error_and_count_as_a_breaker_failure(
        peer_client: Any) -> None:
    peer, client = peer_client(nested_json(), breaker=sark_sync.BreakerPolicy(
        failure_threshold=2))
    for _ in range(2):
        with pytest.raises(sark_sync.ProtocolError) as info:
            client.invoke_tool("demo", "echo", {}, timeout=5)
        assert "nested too deeply" in str(info.value)
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo", {}, timeout=5)
    assert len(peer.requests) == 2


def test_a_deeply_nested_error_envelope_still_gives_the_status_error(peer_client: Any) -> None:
    _peer, client = peer_client(nested_json(status=404))
    with pytest.raises(sark_sync.NotFoundError) as info:
        client.get_server("demo", timeout=5)
    assert info.value.status_code == 404


# -- further hostile HTTP peers ------------------------------------------------------------------


def test_a_garbage_status_line_is_a_typed_error(peer_client: Any) -> None:
    _peer, client = peer_client(lambda r: [b"HTTP/1.1 abc nonsense\r\n\r\n", CLOSE],
                               retry=sark_sync.RetryPolicy(attempts=1))
    error, elapsed = timed(lambda: client.health(timeout=2))
    assert isinstance(error, sark_sync.ConnectionFailed)
    assert elapsed < 1.0


def test_more_than_100_headers_is_a_typed_error_not_a_hang(peer_client: Any) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(200))
    _peer, client = peer_client(lambda r: [b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n{}", CLOSE],
                               retry=sark_sync.RetryPolicy(attempts=1))
    error, elapsed = timed(lambda: client.health(timeout=2))
    assert isinstance(error, sark_sync.TransportError)
    assert elapsed < 1.0


def test_a_header_line_of_one_megabyte_is_a_typed_error(peer_client: Any) -> None:
    _peer, client = peer_client(
        lambda r: [b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", CLOSE],
        retry=sark_sync.RetryPolicy(attempts=1))
    error, _ = timed(lambda: client.health(timeout=2))
    assert isinstance(error, sark_sync.TransportError)


def test_a_body_shorter_than_its_content_length_is_a_protocol_error(peer_client: Any) -> None:
    _peer, client = peer_client(
        lambda r: [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 50\r\n\r\n{\"status\": ", CLOSE],
        retry=sark_sync.RetryPolicy(attempts=1))
    error, _ = timed(lambda: client.health(timeout=2))
    assert isinstance(error, sark_sync.ProtocolError)
    assert "cut short" in str(error)


def test_a_reset_in_the_middle_of_the_body_is_retried_for_an_idempotent_call(
        peer_client: Any) -> None:
    calls = iter(["reset", "ok"])
    good = b'{"status": "healthy", "version": "x", "servers": 1}'

    def script(request: Request) -> Any:
        if next(calls) == "reset":
            return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 52\r\n\r\n{\"sta", RESET]
        return [answer(200, good)]

    peer, client = peer_client(script)
    assert client.health(timeout=5).status == "healthy"
    assert len(peer.requests) == 2


def test_a_gzip_bomb_is_refused_at_the_size_limit_without_inflating_it_all(
        peer_client: Any) -> None:
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", 9)
    _peer, client = peer_client(lambda r: [answer(200, bomb, headers={
        "Content-Encoding": "gzip"})], retry=sark_sync.RetryPolicy(attempts=1))
    error, _elapsed = timed(lambda: client.health(timeout=10))
    assert isinstance(error, sark_sync.ProtocolError)
    assert "exceeds the 33554432-byte limit" in str(error)


def test_an_extra_response_in_the_same_write_never_reaches_the_next_call(
        peer_client: Any) -> None:
    first = b'{"status": "healthy", "version": "first", "servers": 1}'
    smuggled = b'{"status": "healthy", "version": "smuggled", "servers": 9}'
    second = b'{"status": "healthy", "version": "second", "servers": 2}'
    answers = iter([[answer(200, first) + answer(200, smuggled)], [answer(200, second)]])
    _peer, client = peer_client(lambda r: next(answers))
    assert client.health(timeout=2).version == "first"
    assert client.health(timeout=2).version == "second"


def test_a_late_extra_response_is_refused_as_another_requests_answer(peer_client: Any) -> None:
    # The extra answer is sent once the next request is on its way over the same pooled
    # connection, so it reads as that request's answer: the echoed X-Request-ID tells the
    # client it is not its own.
    def echo(request: Request, version: str) -> bytes:
        body = b'{"status": "healthy", "version": "%s", "servers": 1}' % version.encode()
        return answer(200, body, headers={"X-Request-ID": request.headers["x-request-id"]})

    calls = iter(range(100))

    def script(request: Request) -> Any:
        n = next(calls)
        if n == 0:
            return [echo(request, "first"), AwaitRequest(), echo(request, "smuggled")]
        return [echo(request, f"call-{n}")]

    peer, client = peer_client(script, retry=sark_sync.RetryPolicy(attempts=1))
    assert client.health(timeout=2).version == "first"
    versions = []
    for _ in range(2):
        try:
            versions.append(client.health(timeout=2).version)
        except sark_sync.ProtocolError as exc:
            assert "answer is for another request" in str(exc)
            versions.append("refused")
    # The refused answer's connection is dropped; whether the peer ran its script for the
    # request on it (call-1) before it saw the close is a race: the next call gets a fresh,
    # right answer either way.
    assert versions[0] == "refused" and versions[1] in ("call-1", "call-2")
    assert peer.connections == 2  # the connection out of step was closed, never reused


@pytest.mark.parametrize("value", ["1e400", "nan", "-5", "inf", "99999999999999999999",
                                   "Wed, 21 Oct 9999 07:28:00 GMT", "²"])
def test_a_hostile_retry_after_never_makes_a_call_wait_past_its_deadline(
        peer_client: Any, value: str) -> None:
    _peer, client = peer_client(lambda r: [answer(503, b'{"error": {"code": "unavailable", '
                                                b'"message": "busy"}}',
                                                headers={"Retry-After": value})])
    error, elapsed = timed(lambda: client.health(timeout=1))
    assert isinstance(error, (sark_sync.ServiceUnavailableError, sark_sync.DeadlineExceeded))
    assert elapsed <= 1.0 + MARGIN


def test_a_status_line_trickled_in_a_slow_first_byte_is_bounded(peer_client: Any) -> None:
    _peer, client = peer_client(lambda r: trickle(answer(200, b"{}"), 0.05))
    error, elapsed = timed(lambda: client.health(timeout=0.5))
    assert isinstance(error, sark_sync.DeadlineExceeded)
    assert 0.5 <= elapsed <= 0.5 + MARGIN


def test_a_slow_but_finite_answer_within_the_deadline_succeeds(peer_client: Any) -> None:
    body = b'{"status": "healthy", "version": "x", "servers": 1}'
    _peer, client = peer_client(lambda r: trickle(answer(200, body), 0.002, step=8))
    assert client.health(timeout=5).version == "x"


def test_the_watchdog_is_one_thread_for_many_clients(
        peer_client: Any) -> None:
    def watchdogs() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "sark_sync-singleton-watchdog"}

    # Unit tests make Watchdog instances of their own (each with its thread): count ours.
    before = watchdogs()
    clients = [peer_client(json_answer(lambda r: {"status": "healthy", "version": "x",
                                                   "servers": 0}))[1] for _ in range(4)]
    for client in clients:
        client.health(timeout=2)
    assert len(watchdogs() - before) <= 1  # started by the first client, or before them
    assert watchdog._thread is not None and watchdog._thread in watchdogs()


def test_a_healthy_gateway_is_unaffected(gateway: LocalGateway) -> None:
    with sark_sync.GatewayClient(gateway.url, api_key=API_KEY) as client:
        for _ in range(50):
            assert client.invoke_tool("demo", "echo", {"n": 1}, timeout=2).json() == {"n": 1}



@pytest.mark.parametrize(("body", "call"), [
    (b'{"status": 5}', lambda c: c.health(timeout=2)),
    (b'["not a server"]', lambda c: c.get_server("demo", timeout=2)),
    (b'{"servers": "nope", "total": 1}', lambda c: c.list_servers(timeout=2)),
])
def test_a_malformed_discovery_answer_counts_as_a_breaker_failure(
        peer_client: Any, body: bytes, call: Callable[[sark_sync.GatewayClient], Any]) -> None:
    peer, client = peer_client(lambda r: [answer(200, body)],
                               breaker=sark_sync.BreakerPolicy(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(sark_sync.ProtocolError):
            call(client)
    with pytest.raises(sark_sync.CircuitOpenError):
        call(client)
    assert len(peer.requests) == 2


class SoftTimeLimit(Exception):
    """Shaped like Celery's SoftTimeLimitExceeded: raised by a signal handler mid-call."""


@pytest.mark.parametrize("script", [
    pytest.param(trickle_headers(0.05), id="waiting-for-headers"),
    pytest.param(trickle_body(0.05), id="reading-the-body"),
])
def test_an_exception_a_signal_handler_raises_mid_call_passes_through_unchanged(
        peer_client: Any, script: Any) -> None:
    _peer, client = peer_client(script)

    def on_signal(signum: int, frame: Any) -> None:
        raise SoftTimeLimit

    previous = signal.signal(signal.SIGUSR1, on_signal)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(SoftTimeLimit):
            client.invoke_tool("demo", "echo", {}, timeout=5)
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    # The client is still usable: the interrupted exchange released its slot and connection.
    error, _ = timed(lambda: client.health(timeout=0.3))
    assert isinstance(error, sark_sync.DeadlineExceeded)
