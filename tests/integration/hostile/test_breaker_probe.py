"""Only an outcome from the server moves a breaker, over real sockets (issue 11, item 9).

A half-open breaker whose probe dies waiting for a connection slot (``max_workers=1``, a slow
call holding the only slot, a short-deadline probe) stays half-open, and the next real probe
decides. A malformed answer of the server (a body nested too deeply, an envelope that is not
one) is a counted failure, not a success. ``with breaker:`` does not exist.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Callable

import pytest
from support import paths, wait_for

import sark_sync
from sark_sync.testing import Fault, LocalGateway

pytestmark = pytest.mark.timeout(30)

Make = Callable[..., sark_sync.GatewayClient]

NO_RETRY = sark_sync.RetryPolicy(attempts=1)
#: Seconds an open breaker waits before it admits a probe: short, the tests wait it out.
RECOVERY = 0.2
#: The deadline of a probe that cannot get a connection slot.
PROBE_DEADLINE = 0.3


class SlotHolder:
    """A call to ``other/hold`` that keeps the client's only connection slot until released."""

    def __init__(self, gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcome: list[object] = []

        @gateway.tool("other")
        def hold(parameters: dict[str, object]) -> object:
            self.started.set()
            assert self.release.wait(10)
            return "held"

        self.thread = threading.Thread(
            target=lambda: self.outcome.append(client.invoke_tool("other", "hold").text))

    def __enter__(self) -> SlotHolder:
        self.thread.start()
        assert self.started.wait(5), "the slot holder never reached the gateway"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def half_open(gateway: LocalGateway, make_client: Make
              ) -> Iterator[tuple[sark_sync.GatewayClient, sark_sync.Breaker]]:
    """A client with one connection slot whose ``demo`` breaker one 503 opened and that has
    turned half-open since."""
    client = make_client(max_workers=1, retry=NO_RETRY, breaker=sark_sync.BreakerPolicy(
        failure_threshold=1, recovery_timeout=RECOVERY))
    gateway.add_fault(Fault(status=503, server="demo"))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        client.invoke_tool("demo", "echo")
    breaker = client.breaker_for("demo")
    wait_for(lambda: breaker.state == "half_open", 5, what="the breaker to half-open")
    gateway.clear_requests()
    yield client, breaker


def _probe_that_gets_no_slot(gateway: LocalGateway, client: sark_sync.GatewayClient,
                             breaker: sark_sync.Breaker) -> None:
    with SlotHolder(gateway, client) as holder:
        with pytest.raises(sark_sync.DeadlineExceeded) as caught:
            client.invoke_tool("demo", "echo", timeout=PROBE_DEADLINE)
        assert caught.value.attempts == 0
        assert str(caught.value).startswith(
            "deadline of 0.3s exceeded waiting for a free connection slot")
        assert (breaker.state, breaker.failure_count) == ("half_open", 1)
    assert holder.outcome == ["held"]
    assert paths(gateway) == ["POST /api/v1/invoke"]  # the holder's call only
    assert b'"server":"other"' in gateway.requests[0].body


def test_a_probe_that_never_got_a_connection_slot_leaves_the_breaker_half_open(
    gateway: LocalGateway, half_open: tuple[sark_sync.GatewayClient, sark_sync.Breaker]
) -> None:
    client, breaker = half_open
    _probe_that_gets_no_slot(gateway, client, breaker)
    # The next real probe decides: the server answers, the breaker closes.
    assert client.invoke_tool("demo", "echo", {"p": 1}).structured == {"p": 1}
    assert (breaker.state, breaker.failure_count) == ("closed", 0)


def test_after_a_probe_without_a_slot_a_failing_real_probe_opens_the_breaker(
    gateway: LocalGateway, half_open: tuple[sark_sync.GatewayClient, sark_sync.Breaker]
) -> None:
    client, breaker = half_open
    _probe_that_gets_no_slot(gateway, client, breaker)
    gateway.add_fault(Fault(status=503, server="demo"))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        client.invoke_tool("demo", "echo")
    assert (breaker.state, breaker.failure_count) == ("open", 2)
    gateway.clear_requests()
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo")
    assert gateway.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"[" * 100_000 + b"]" * 100_000, "nested"),
     (b'{"unexpected": true}', "malformed invoke response")],
    ids=["nested-100000-deep", "not-an-envelope"],
)
def test_a_malformed_answer_of_the_server_is_a_counted_failure(
    gateway: LocalGateway, half_open: tuple[sark_sync.GatewayClient, sark_sync.Breaker],
    body: bytes, message: str
) -> None:
    client, breaker = half_open
    gateway.add_fault(Fault(status=200, body=body, content_type="application/json",
                            server="demo"))
    with pytest.raises(sark_sync.ProtocolError) as caught:
        client.invoke_tool("demo", "echo")
    assert message in str(caught.value)
    assert (breaker.state, breaker.failure_count, breaker.last_failure) == (
        "open", 2, sark_sync.ProtocolError)
    gateway.clear_requests()
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo")
    assert gateway.requests == []


def test_with_breaker_does_not_exist_and_an_open_breaker_stays_shut(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client(retry=NO_RETRY, breaker=sark_sync.BreakerPolicy(failure_threshold=1))
    gateway.add_fault(Fault(status=503, server="demo"))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        client.invoke_tool("demo", "echo")
    breaker = client.breaker_for("demo")
    ran: list[bool] = []
    with pytest.raises(TypeError if sys.version_info >= (3, 11) else AttributeError):
        with breaker:  # type: ignore[attr-defined]
            ran.append(True)
    assert (ran, breaker.state) == ([], "open")
    gateway.clear_requests()
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("demo", "echo")
    assert gateway.requests == []
