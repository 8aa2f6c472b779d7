"""DeadlineRetry and DeadlineTimeout: what is retried, how long it waits, the deadline.

urllib3 calls these hooks from inside ``urlopen``; here they are called directly, with an
:class:`AttemptContext` in the context variable, a fake clock and a fake sleep.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from urllib3.exceptions import MaxRetryError
from urllib3.response import HTTPResponse

from sark_sync import RetryPolicy
from sark_sync._deadline import Deadline
from sark_sync.resilience._retrying import (
    AttemptContext,
    DeadlineRetry,
    DeadlineStop,
    DeadlineTimeout,
    current_attempt,
)

URL = "/api/v1/invoke"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSleep:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> FakeSleep:
    return FakeSleep(clock)


def _context(clock: FakeClock, sleep: FakeSleep, *, idempotent: bool = True,
             deadline: float = 30.0, accept: frozenset[int] = frozenset()) -> AttemptContext:
    return AttemptContext(deadline=Deadline(deadline, clock=clock), idempotent=idempotent,
                          accept_statuses=accept, sleep=sleep)


@contextmanager
def active(context: AttemptContext) -> Iterator[AttemptContext]:
    token = current_attempt.set(context)
    try:
        yield context
    finally:
        current_attempt.reset(token)


def _response(status: int, retry_after: str | None = None) -> HTTPResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return HTTPResponse(status=status, headers=headers, body=b"")


@pytest.fixture
def uniform(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Record the bounds of every full-jitter draw; each draw returns 40% of the ceiling."""
    draws: list[tuple[float, float]] = []

    def fake_uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high * 0.4

    monkeypatch.setattr(random, "uniform", fake_uniform)
    return draws


def _retry(**policy: Any) -> DeadlineRetry:
    return DeadlineRetry.from_policy(RetryPolicy(**policy))


# -- what is retried -------------------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [True, False])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_429_is_retried_for_any_method(clock: FakeClock, sleep: FakeSleep, idempotent: bool,
                                       method: str) -> None:
    with active(_context(clock, sleep, idempotent=idempotent)):
        assert _retry().is_retry(method, 429) is True


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_when_the_request_is_idempotent(
    clock: FakeClock, sleep: FakeSleep, status: int
) -> None:
    with active(_context(clock, sleep, idempotent=True)):
        assert _retry().is_retry("POST", status) is True


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_gateway_errors_are_not_retried_when_the_request_is_not_idempotent(
    clock: FakeClock, sleep: FakeSleep, status: int, method: str
) -> None:
    with active(_context(clock, sleep, idempotent=False)):
        assert _retry().is_retry(method, status) is False


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 500])
def test_client_errors_and_500_are_never_retried(clock: FakeClock, sleep: FakeSleep,
                                                 status: int) -> None:
    with active(_context(clock, sleep, idempotent=True)):
        assert _retry().is_retry("GET", status) is False


def test_an_accepted_status_is_not_retried(clock: FakeClock, sleep: FakeSleep) -> None:
    with active(_context(clock, sleep, accept=frozenset({503}))):
        assert _retry().is_retry("GET", 503) is False


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [("GET", 503, True), ("get", 502, True), ("POST", 503, False), ("POST", 429, True),
     ("GET", 404, False)],
)
def test_without_a_context_only_idempotent_methods_are_retried(method: str, status: int,
                                                               expected: bool) -> None:
    assert current_attempt.get() is None
    assert _retry().is_retry(method, status) is expected


def test_attempts_3_allow_exactly_2_retries(clock: FakeClock, sleep: FakeSleep) -> None:
    retry = _retry(attempts=3, jitter=False, backoff_base=0)
    with active(_context(clock, sleep)):
        retry = retry.increment("GET", URL, response=_response(503))
        retry = retry.increment("GET", URL, response=_response(503))
        with pytest.raises(MaxRetryError):
            retry.increment("GET", URL, response=_response(503))


def test_a_derived_retry_keeps_the_policy() -> None:
    policy = RetryPolicy(attempts=4, backoff_base=0.25)
    retry = DeadlineRetry.from_policy(policy)
    assert (retry.total, retry.new().policy) == (3, policy)


# -- how long it waits -----------------------------------------------------------------------------


def test_backoff_is_full_jitter_below_the_ceiling_of_each_retry(
    clock: FakeClock, sleep: FakeSleep, uniform: list[tuple[float, float]]
) -> None:
    retry = _retry(attempts=4)
    with active(_context(clock, sleep)) as context:
        for _ in range(3):
            retry = retry.increment("GET", URL, response=_response(503))
            retry.sleep()
    assert uniform == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0)]
    assert sleep.calls == pytest.approx([0.2, 0.4, 0.8])
    assert context.slept == pytest.approx(1.4)


def test_jittered_waits_stay_within_zero_and_the_ceiling(clock: FakeClock,
                                                         sleep: FakeSleep) -> None:
    random.seed(1234)
    with active(_context(clock, sleep, deadline=1e6)) as context:
        waits = []
        for _ in range(200):
            _retry().increment("GET", URL, response=_response(503))
            waits.append(context.next_wait)
    assert all(0.0 <= wait <= 0.5 for wait in waits)
    assert len(set(waits)) > 100  # drawn, not constant


def test_without_jitter_the_wait_is_the_ceiling(clock: FakeClock, sleep: FakeSleep) -> None:
    retry = _retry(attempts=3, jitter=False)
    with active(_context(clock, sleep)):
        retry = retry.increment("GET", URL, response=_response(502))
        retry.sleep()
        retry = retry.increment("GET", URL, response=_response(502))
        retry.sleep()
    assert sleep.calls == [0.5, 1.0]


def test_retry_after_replaces_the_backoff(clock: FakeClock, sleep: FakeSleep,
                                          uniform: list[tuple[float, float]]) -> None:
    retry = _retry()
    with active(_context(clock, sleep)) as context:
        retry = retry.increment("POST", URL, response=_response(429, "1"))
        assert context.next_wait == 1
        retry.sleep()
    assert (sleep.calls, uniform, context.slept) == ([1], [], 1)


def test_retry_after_on_503_is_honoured(clock: FakeClock, sleep: FakeSleep) -> None:
    with active(_context(clock, sleep)):
        _retry().increment("GET", URL, response=_response(503, "3")).sleep()
    assert sleep.calls == [3]


def test_unparsable_retry_after_falls_back_to_the_backoff(clock: FakeClock, sleep: FakeSleep,
                                                          uniform: list[tuple[float, float]]
                                                          ) -> None:
    with active(_context(clock, sleep)):
        _retry().increment("GET", URL, response=_response(429, "soon")).sleep()
    assert (uniform, sleep.calls) == ([(0.0, 0.5)], [0.2])


def test_retry_after_longer_than_the_cap_fails_fast(clock: FakeClock, sleep: FakeSleep) -> None:
    with active(_context(clock, sleep)) as context:
        with pytest.raises(MaxRetryError):
            _retry().increment("POST", URL, response=_response(429, "600"))
    assert (context.retry_after_refused, context.stopped, sleep.calls) == (600, None, [])


def test_refused_retry_after_is_reported_as_the_gateway_sent_it(clock: FakeClock,
                                                                sleep: FakeSleep) -> None:
    # A day: longer than the 6 h cap urllib3's own Retry-After parser applies.
    with active(_context(clock, sleep)) as context:
        with pytest.raises(MaxRetryError):
            _retry().increment("POST", URL, response=_response(429, "86400"))
    assert context.retry_after_refused == 86400


def test_retry_after_cap_is_the_policys(clock: FakeClock, sleep: FakeSleep) -> None:
    with active(_context(clock, sleep)) as context:
        _retry(retry_after_max=5).increment("GET", URL, response=_response(503, "5")).sleep()
        with pytest.raises(MaxRetryError):
            _retry(retry_after_max=5).increment("GET", URL, response=_response(503, "6"))
    assert (sleep.calls, context.retry_after_refused) == ([5], 6)


# -- the deadline ----------------------------------------------------------------------------------


def test_a_backoff_that_would_cross_the_deadline_is_not_taken(clock: FakeClock,
                                                              sleep: FakeSleep) -> None:
    with active(_context(clock, sleep, deadline=0.4)) as context:
        with pytest.raises(MaxRetryError):
            _retry(jitter=False).increment("GET", URL, response=_response(503))
    assert (context.stopped, context.next_wait, context.slept, sleep.calls) == (
        "deadline", 0.0, 0.0, [])


def test_a_retry_after_that_would_cross_the_deadline_is_not_taken(clock: FakeClock,
                                                                  sleep: FakeSleep) -> None:
    with active(_context(clock, sleep, deadline=2.0)) as context:
        with pytest.raises(MaxRetryError):
            _retry().increment("POST", URL, response=_response(429, "5"))
    assert (context.stopped, context.retry_after_refused, sleep.calls) == ("deadline", None, [])


def test_the_deadline_check_carries_the_connection_error(clock: FakeClock,
                                                         sleep: FakeSleep) -> None:
    error = ConnectionRefusedError("refused")
    with active(_context(clock, sleep, deadline=0.1)):
        with pytest.raises(MaxRetryError) as info:
            _retry(jitter=False).increment("GET", URL, error=error)
    assert info.value.reason is error


def test_sleep_is_bounded_by_the_time_left(clock: FakeClock, sleep: FakeSleep) -> None:
    with active(_context(clock, sleep, deadline=10.0)) as context:
        retry = _retry(jitter=False, backoff_base=4).increment("GET", URL, response=_response(503))
        clock.now += 7.5  # the attempt's response took a while to handle
        retry.sleep()
    assert (sleep.calls, context.slept) == ([2.5], 2.5)


def test_timeout_clone_is_bounded_by_the_time_left_and_counts_attempts(clock: FakeClock,
                                                                       sleep: FakeSleep) -> None:
    context = _context(clock, sleep, deadline=10.0)
    timeout = DeadlineTimeout(context, connect=5.0, read=30.0)
    first = timeout.clone()
    assert (first.connect_timeout, first.read_timeout, first.total, context.attempts) == (
        5.0, 10.0, 10.0, 1)
    clock.now += 8.0
    second = timeout.clone()
    assert (second.connect_timeout, second.read_timeout, second.total, context.attempts) == (
        2.0, 2.0, 2.0, 2)


def test_timeout_clone_with_no_time_left_raises_deadline_stop(clock: FakeClock,
                                                              sleep: FakeSleep) -> None:
    context = _context(clock, sleep, deadline=1.0)
    timeout = DeadlineTimeout(context, connect=5.0, read=30.0)
    clock.now += 1.0
    with pytest.raises(DeadlineStop):
        timeout.clone()
    assert (context.attempts, context.stopped) == (0, "deadline")
