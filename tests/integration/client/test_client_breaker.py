"""Circuit breakers per (gateway, server), over real sockets (docs/gateway/ERROR_HANDLING.md)."""

from __future__ import annotations

import socket
import threading
from typing import Callable

import pytest
from support import paths, wait_for

import sark_sync
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]

NO_RETRY = sark_sync.RetryPolicy(attempts=1)


def _fail_five_times(client: sark_sync.GatewayClient, server: str = "demo") -> None:
    for _ in range(5):
        with pytest.raises(sark_sync.ServiceUnavailableError):
            client.invoke_tool(server, "echo" if server == "demo" else "ping")


def test_five_counted_failures_open_the_breaker_and_calls_fail_fast(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(status=503, times=5))
    _fail_five_times(client)
    gateway.clear_requests()
    with pytest.raises(sark_sync.CircuitOpenError) as caught:
        client.invoke_tool("demo", "echo")
    assert gateway.requests == []  # the network was not touched
    error = caught.value
    assert error.breaker == f"{gateway.url}/demo"
    assert error.failures == 5
    assert error.opened_at is not None and error.probe_at > error.opened_at
    assert error.server == "demo"


def test_after_recovery_20_threads_produce_exactly_one_probe(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(retry=NO_RETRY,
                         breaker=sark_sync.BreakerPolicy(recovery_timeout=0.2))
    gateway.add_fault(Fault(status=503, times=5))
    _fail_five_times(client)
    breaker = client.breaker_for("demo")
    assert breaker.state == "open"
    probe_started = threading.Event()
    release_probe = threading.Event()

    @gateway.tool("demo")
    def slow(parameters: dict[str, object]) -> object:
        probe_started.set()
        assert release_probe.wait(10)
        return "recovered"

    wait_for(lambda: breaker.state == "half_open", timeout=5,
               what="the recovery timeout to half-open the breaker")
    gateway.clear_requests()
    outcomes: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def call() -> None:
        start.wait(5)
        try:
            outcome: object = client.invoke_tool("demo", "slow").text
        except sark_sync.CircuitOpenError as exc:
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    assert probe_started.wait(5)
    wait_for(lambda: len(outcomes) == 19, timeout=5,
               what=lambda: f"19 calls to fail fast during the probe; {len(outcomes)} did")
    release_probe.set()
    for thread in threads:
        thread.join(10)
    assert paths(gateway) == ["POST /api/v1/invoke"]
    assert outcomes.count("recovered") == 1
    assert sum(isinstance(o, sark_sync.CircuitOpenError) for o in outcomes) == 19
    assert breaker.state == "closed"
    assert client.invoke_tool("demo", "echo").is_error is False


def test_failed_probe_opens_the_breaker_again(make_client: Make, gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY,
                         breaker=sark_sync.BreakerPolicy(recovery_timeout=0.2))
    gateway.add_fault(Fault(status=503, times=6))
    _fail_five_times(client)
    breaker = client.breaker_for("demo")
    wait_for(lambda: breaker.state == "half_open", timeout=5,
               what="the recovery timeout to half-open the breaker")
    with pytest.raises(sark_sync.ServiceUnavailableError):
        client.invoke_tool("demo", "echo")
    assert breaker.state == "open"
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_client_errors_never_open_the_breaker(make_client: Make, gateway: LocalGateway,
                                              status: int) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(status=status, times=10))
    for _ in range(10):
        with pytest.raises(sark_sync.GatewayError) as caught:
            client.invoke_tool("demo", "echo")
        assert not isinstance(caught.value, sark_sync.CircuitOpenError)
    assert client.breaker_for("demo").state == "closed"
    assert client.invoke_tool("demo", "echo").is_error is False


def test_tool_errors_never_open_the_breaker(client: sark_sync.GatewayClient) -> None:
    for _ in range(10):
        assert client.invoke_tool("demo", "fail").is_error is True
    assert client.breaker_for("demo").state == "closed"


def test_breakers_of_two_servers_are_independent(make_client: Make, gateway: LocalGateway
                                                 ) -> None:
    client = make_client(retry=NO_RETRY)
    gateway.add_fault(Fault(status=502, times=5, server="demo"))
    for _ in range(5):
        with pytest.raises(sark_sync.UpstreamError):
            client.invoke_tool("demo", "echo")
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo")
    assert client.invoke_tool("other", "ping").text == "pong"
    assert client.breaker_for("other").state == "closed"


def test_connection_failures_open_the_breaker(make_client: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(url=f"http://127.0.0.1:{port}", retry=NO_RETRY)
    for _ in range(5):
        with pytest.raises(sark_sync.ConnectionFailed):
            client.list_servers()
    with pytest.raises(sark_sync.CircuitOpenError):
        client.list_servers()


def test_breakers_can_be_disabled(make_client: Make, gateway: LocalGateway) -> None:
    client = make_client(retry=NO_RETRY, breaker=sark_sync.BreakerPolicy(enabled=False))
    gateway.add_fault(Fault(status=503, times=8))
    for _ in range(8):
        with pytest.raises(sark_sync.ServiceUnavailableError):
            client.invoke_tool("demo", "echo")
    assert client.invoke_tool("demo", "echo").is_error is False
