"""Breaker: counted failures, half-open with exactly one probe, no global registry.

Time moves on a fake clock; threads are used where concurrency is the behaviour under test,
and every wait on them is bounded.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
from circuitbreaker import CircuitBreakerMonitor

from sark_sync import (
    AuthenticationError,
    AuthorizationDenied,
    BadRequestError,
    Breaker,
    BreakerPolicy,
    CircuitOpenError,
    ConnectionFailed,
    DeadlineExceeded,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServiceUnavailableError,
    ToolExecutionError,
    TransportTimeout,
    ValidationError,
)

WAIT = 5.0  # bound on every wait for another thread

COUNTED: list[Callable[[], BaseException]] = [
    lambda: ConnectionFailed("refused"),
    lambda: TransportTimeout("read timed out"),
    lambda: ServiceUnavailableError("unavailable", status_code=503),
    lambda: RateLimitError("rate_limited", status_code=429),
    lambda: ProtocolError("not JSON"),
    lambda: DeadlineExceeded("deadline", attempts=1),
]
NOT_COUNTED: list[Callable[[], BaseException]] = [
    lambda: BadRequestError("invalid_request", status_code=400),
    lambda: NotFoundError("not_found", status_code=404),
    lambda: AuthenticationError("unauthenticated", status_code=401),
    lambda: AuthorizationDenied("policy_denied", status_code=403),
    lambda: ValidationError("bad name"),
    lambda: DeadlineExceeded("deadline", attempts=0),
    lambda: ToolExecutionError("tool failed"),
]


def _ids(factories: list[Callable[[], BaseException]]) -> list[str]:
    return [f"{type(f()).__name__}-{getattr(f(), 'attempts', None)}" for f in factories]


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """A function that records its calls and raises what it is told to."""

    def __init__(self) -> None:
        self.count = 0

    def ok(self) -> str:
        self.count += 1
        return "ok"

    def raising(self, exc: BaseException) -> Callable[[], None]:
        def run() -> None:
            self.count += 1
            raise exc

        return run


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _breaker(clock: FakeClock, threshold: int = 5, recovery: float = 30.0) -> Breaker:
    return Breaker("http://gw.test/srv", BreakerPolicy(failure_threshold=threshold,
                                                       recovery_timeout=recovery), clock=clock)


def _fail(breaker: Breaker, exc: BaseException, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(type(exc)):
            breaker.call(Calls().raising(exc))


def _open(breaker: Breaker, threshold: int = 5) -> None:
    _fail(breaker, ConnectionFailed("refused"), threshold)
    assert breaker.state == "open"


# -- counting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", COUNTED, ids=_ids(COUNTED))
def test_breaker_stays_closed_after_4_counted_failures(clock: FakeClock,
                                                       make: Callable[[], BaseException]) -> None:
    breaker = _breaker(clock)
    _fail(breaker, make(), 4)
    calls = Calls()
    assert (breaker.state, breaker.call(calls.ok), calls.count) == ("closed", "ok", 1)


@pytest.mark.parametrize("make", COUNTED, ids=_ids(COUNTED))
def test_breaker_opens_after_exactly_5_counted_failures_and_fails_fast(
    clock: FakeClock, make: Callable[[], BaseException]
) -> None:
    breaker = _breaker(clock)
    _fail(breaker, make(), 5)
    calls = Calls()
    with pytest.raises(CircuitOpenError):
        breaker.call(calls.ok)
    assert (breaker.state, calls.count) == ("open", 0)


def test_open_error_says_which_breaker_since_when_and_when_it_probes(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    before = datetime.now(timezone.utc)
    _open(breaker)
    after = datetime.now(timezone.utc)
    clock.now += 10.0
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(Calls().ok)
    error = info.value
    assert error.breaker == "http://gw.test/srv"
    assert error.failures == 5
    assert before <= error.opened_at <= after
    # 20 s of the 30 s recovery window are left on the breaker's clock.
    assert abs((error.probe_at - datetime.now(timezone.utc)) - timedelta(seconds=20)) < \
        timedelta(seconds=1)
    assert "ConnectionFailed" in error.message and "20.0s" in error.message


@pytest.mark.parametrize("make", NOT_COUNTED, ids=_ids(NOT_COUNTED))
def test_breaker_does_not_count_client_side_and_4xx_failures(
    clock: FakeClock, make: Callable[[], BaseException]
) -> None:
    breaker = _breaker(clock)
    _fail(breaker, make(), 10)
    calls = Calls()
    assert (breaker.state, breaker.call(calls.ok), calls.count) == ("closed", "ok", 1)


def test_a_success_resets_the_count_so_only_consecutive_failures_open(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _fail(breaker, ConnectionFailed("x"), 4)
    breaker.call(Calls().ok)
    _fail(breaker, ConnectionFailed("x"), 4)
    assert breaker.state == "closed"
    _fail(breaker, ConnectionFailed("x"), 1)
    assert breaker.state == "open"


def test_an_uncounted_failure_resets_the_count_like_a_success(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _fail(breaker, ConnectionFailed("x"), 4)
    _fail(breaker, NotFoundError("not_found", status_code=404))
    _fail(breaker, ConnectionFailed("x"), 4)
    assert breaker.state == "closed"


def test_failure_threshold_1_opens_on_the_first_counted_failure(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=1)
    _fail(breaker, TransportTimeout("t"))
    with pytest.raises(CircuitOpenError):
        breaker.call(Calls().ok)


# -- half-open -------------------------------------------------------------------------------------


def test_breaker_stays_open_until_the_recovery_timeout_has_passed(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 29.999
    calls = Calls()
    with pytest.raises(CircuitOpenError):
        breaker.call(calls.ok)
    assert calls.count == 0


def test_breaker_is_half_open_once_the_recovery_timeout_has_passed(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    assert breaker.state == "half_open"


def test_recovery_timeout_0_admits_a_probe_at_once(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=1, recovery=0)
    _fail(breaker, ConnectionFailed("x"))
    calls = Calls()
    assert (breaker.state, breaker.call(calls.ok), calls.count) == ("half_open", "ok", 1)


def test_a_successful_probe_closes_the_breaker(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    breaker.call(Calls().ok)
    assert breaker.state == "closed"
    _fail(breaker, ConnectionFailed("x"), 4)  # the count started again from zero
    assert breaker.state == "closed"


def test_an_uncounted_probe_failure_closes_the_breaker(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    _fail(breaker, NotFoundError("not_found", status_code=404))
    assert breaker.state == "closed"


def test_a_failed_probe_reopens_with_a_fresh_recovery_window(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    _fail(breaker, ConnectionFailed("still down"))
    assert breaker.state == "open"
    clock.now += 29.9
    calls = Calls()
    with pytest.raises(CircuitOpenError):
        breaker.call(calls.ok)
    clock.now += 0.1
    assert (breaker.call(calls.ok), calls.count) == ("ok", 1)


class BlockingProbe:
    """A function that signals when it starts and returns only when released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self) -> str:
        with self.lock:
            self.count += 1
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the probe"
        return "probed"


@pytest.mark.timeout(30)
def test_half_open_admits_one_probe_and_fails_others_fast_while_it_runs(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    probe = BlockingProbe()
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(breaker.call(probe)))
    thread.start()
    try:
        assert probe.started.wait(WAIT)
        other = Calls()
        with pytest.raises(CircuitOpenError, match="probe in flight"):
            breaker.call(other.ok)
        assert other.count == 0
    finally:
        probe.release.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert (outcome, probe.count, breaker.state) == (["probed"], 1, "closed")


def test_keyboard_interrupt_in_the_probe_frees_the_probe_slot(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    calls = Calls()
    assert (breaker.call(calls.ok), calls.count, breaker.state) == ("ok", 1, "closed")


@pytest.mark.timeout(30)
def test_twenty_threads_on_a_half_open_breaker_make_exactly_one_call(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30.0
    probe = BlockingProbe()
    start = threading.Barrier(20)
    done = threading.Condition()
    outcomes: list[str] = []

    def worker() -> None:
        start.wait(WAIT)
        try:
            result = breaker.call(probe)
        except CircuitOpenError:
            result = "rejected"
        with done:
            outcomes.append(result)
            done.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        with done:
            assert done.wait_for(lambda: len(outcomes) == 19, WAIT), outcomes
    finally:
        probe.release.set()
        for thread in threads:
            thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert probe.count == 1
    assert sorted(outcomes) == ["probed"] + ["rejected"] * 19


@pytest.mark.timeout(30)
def test_the_call_does_not_run_under_the_breaker_lock(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    probe = BlockingProbe()
    thread = threading.Thread(target=breaker.call, args=(probe,))
    thread.start()
    try:
        assert probe.started.wait(WAIT)
        assert breaker.call(Calls().ok) == "ok"
    finally:
        probe.release.set()
        thread.join(WAIT)
    assert not thread.is_alive()


# -- no global registry ----------------------------------------------------------------------------


def test_breaker_registers_nothing_in_the_circuitbreaker_monitor(clock: FakeClock) -> None:
    before = dict(CircuitBreakerMonitor.circuit_breakers)
    breaker = Breaker("not-registered", clock=clock)
    breaker.call(Calls().ok)

    @breaker.decorate
    def decorated() -> str:
        return "d"

    as_decorator = breaker(lambda: "c")  # the package's __call__ form
    assert (decorated(), as_decorator()) == ("d", "c")
    assert dict(CircuitBreakerMonitor.circuit_breakers) == before


def test_decorate_runs_the_function_under_the_breaker(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=1)
    calls = Calls()
    wrapped = breaker.decorate(calls.raising(ConnectionFailed("x")))
    with pytest.raises(ConnectionFailed):
        wrapped()
    with pytest.raises(CircuitOpenError):
        wrapped()
    assert calls.count == 1


def test_reset_closes_an_open_breaker(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    breaker.reset()
    assert (breaker.state, breaker.call(Calls().ok)) == ("closed", "ok")
