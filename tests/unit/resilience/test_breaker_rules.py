"""Only an outcome from the server moves a breaker, and the public Breaker has no way in that
bypasses its rules (issue 11, item 9).

Time moves on a fake clock; nothing sleeps.
"""

from __future__ import annotations

import sys
from typing import Callable

import pytest
from circuitbreaker import CircuitBreaker

from sark_sync import (
    AuthorizationDenied,
    AuthorizationUnavailable,
    Breaker,
    BreakerPolicy,
    CircuitOpenError,
    ClientClosedError,
    ConnectionFailed,
    DeadlineExceeded,
    NotFoundError,
    ProtocolError,
    RPCError,
    ServiceUnavailableError,
    ValidationError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _half_open(clock: FakeClock) -> Breaker:
    breaker = Breaker("http://gw.test/srv", BreakerPolicy(failure_threshold=2,
                                                          recovery_timeout=10), clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionFailed):
            breaker.call(_raiser(ConnectionFailed("refused")))
    clock.now += 10
    assert breaker.state == "half_open"
    return breaker


def _raiser(exc: BaseException) -> Callable[[], None]:
    def run() -> None:
        raise exc

    return run


NO_WORD_FROM_THE_SERVER: list[Callable[[], BaseException]] = [
    lambda: DeadlineExceeded("deadline of 0.2s exceeded waiting for a free connection slot",
                             attempts=0),
    lambda: DeadlineExceeded("deadline exceeded", attempts=None),
    lambda: ValidationError("bad name"),
    lambda: ClientClosedError("closed"),
    lambda: AuthorizationUnavailable("engine down"),
    lambda: AuthorizationDenied("the client's authorizer denied", code="policy_denied"),
    lambda: CircuitOpenError("inner", breaker="x"),
    lambda: RuntimeError("a bug in a hook"),
    lambda: KeyboardInterrupt(),
]
IDS = ["deadline-no-attempt", "deadline-unknown", "validation", "closed", "authorizer-down",
       "client-deny", "circuit-open", "foreign", "interrupt"]


@pytest.mark.parametrize("make", NO_WORD_FROM_THE_SERVER, ids=IDS)
def test_a_probe_that_never_reached_the_server_leaves_the_breaker_half_open(
    make: Callable[[], BaseException]
) -> None:
    clock = FakeClock()
    breaker = _half_open(clock)
    error = make()
    with pytest.raises(type(error)):
        breaker.call(_raiser(error))
    assert (breaker.state, breaker.failure_count) == ("half_open", 2)
    # The probe slot is free: the next caller is the probe, and its outcome decides.
    with pytest.raises(ServiceUnavailableError):
        breaker.call(_raiser(ServiceUnavailableError("down", status_code=503)))
    assert (breaker.state, breaker.failure_count) == ("open", 3)


@pytest.mark.parametrize("make", NO_WORD_FROM_THE_SERVER, ids=IDS)
def test_no_word_from_the_server_neither_counts_nor_resets_a_closed_breaker(
    make: Callable[[], BaseException]
) -> None:
    breaker = Breaker("b", BreakerPolicy(failure_threshold=2), clock=FakeClock())
    with pytest.raises(ConnectionFailed):
        breaker.call(_raiser(ConnectionFailed("refused")))
    error = make()
    with pytest.raises(type(error)):
        breaker.call(_raiser(error))
    assert (breaker.state, breaker.failure_count) == ("closed", 1)
    with pytest.raises(ConnectionFailed):
        breaker.call(_raiser(ConnectionFailed("refused")))
    assert breaker.state == "open"


def test_the_next_real_probe_closes_the_breaker_after_one_that_never_reached_the_server() -> None:
    clock = FakeClock()
    breaker = _half_open(clock)
    with pytest.raises(DeadlineExceeded):
        breaker.call(_raiser(DeadlineExceeded("slot", attempts=0)))
    assert breaker.call(lambda: "answered") == "answered"
    assert (breaker.state, breaker.failure_count) == ("closed", 0)


@pytest.mark.parametrize(
    "make",
    [lambda: NotFoundError("not_found", status_code=404),
     lambda: AuthorizationDenied("policy_denied", status_code=403),
     lambda: RPCError("invalid params", code=-32602)],
    ids=["404", "gateway-403", "json-rpc-error"],
)
def test_an_answer_of_the_server_closes_a_half_open_breaker(
    make: Callable[[], BaseException]
) -> None:
    breaker = _half_open(FakeClock())
    with pytest.raises(type(make())):
        breaker.call(_raiser(make()))
    assert (breaker.state, breaker.failure_count) == ("closed", 0)


def test_a_protocol_error_probe_opens_the_breaker_again() -> None:
    breaker = _half_open(FakeClock())
    with pytest.raises(ProtocolError):
        breaker.call(_raiser(ProtocolError("response nested too deeply")))
    assert (breaker.state, breaker.last_failure) == ("open", ProtocolError)


def test_breaker_is_not_a_circuitbreaker_subclass_nor_a_context_manager() -> None:
    breaker = Breaker("b", clock=FakeClock())
    assert not isinstance(breaker, CircuitBreaker)
    assert not hasattr(breaker, "__enter__") and not hasattr(breaker, "__exit__")
    for bypass in ("call_generator", "call_async", "call_async_generator"):
        assert not hasattr(breaker, bypass)


def test_with_breaker_is_refused_and_an_open_breaker_stays_open() -> None:
    clock = FakeClock()
    breaker = Breaker("b", BreakerPolicy(failure_threshold=1), clock=clock)
    with pytest.raises(ConnectionFailed):
        breaker.call(_raiser(ConnectionFailed("refused")))
    entered = []
    expected = TypeError if sys.version_info >= (3, 11) else AttributeError
    with pytest.raises(expected):
        with breaker:  # type: ignore[attr-defined]
            entered.append(True)
    assert (entered, breaker.state, breaker.failure_count) == ([], "open", 1)


def test_the_decorator_forms_obey_the_open_state() -> None:
    breaker = Breaker("b", BreakerPolicy(failure_threshold=1), clock=FakeClock())
    runs: list[str] = []

    @breaker
    def as_call() -> None:
        runs.append("call")
        raise ConnectionFailed("refused")

    with pytest.raises(ConnectionFailed):
        as_call()
    with pytest.raises(CircuitOpenError):
        as_call()
    with pytest.raises(CircuitOpenError):
        breaker.decorate(lambda: runs.append("decorated"))()
    assert runs == ["call"]


def test_the_public_state_reads_as_the_package_named_it() -> None:
    clock = FakeClock()
    breaker = Breaker("gw/srv", BreakerPolicy(failure_threshold=1, recovery_timeout=5),
                      clock=clock)
    assert (breaker.name, str(breaker), breaker.closed, breaker.opened) == (
        "gw/srv", "gw/srv", True, False)
    assert (breaker.failure_threshold, breaker.recovery_timeout) == (1, 5)
    with pytest.raises(ConnectionFailed):
        breaker.call(_raiser(ConnectionFailed("refused")))
    assert (breaker.opened, breaker.closed, breaker.last_failure) == (True, False,
                                                                      ConnectionFailed)
    assert breaker.is_failure(ConnectionFailed, ConnectionFailed("x")) is True
    assert breaker.is_failure(DeadlineExceeded, DeadlineExceeded("x", attempts=0)) is False
