"""Deadline on an injected clock: no sleeping."""

from __future__ import annotations

import pytest

from sark_sync import DeadlineExceeded, Timeouts
from sark_sync._deadline import Deadline


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_remaining_counts_down_with_the_clock(clock: FakeClock) -> None:
    deadline = Deadline(10.0, clock=clock)
    assert deadline.remaining() == 10.0
    clock.now += 2.5
    assert deadline.remaining() == 7.5


def test_remaining_is_never_negative(clock: FakeClock) -> None:
    deadline = Deadline(1.0, clock=clock)
    clock.now += 5.0
    assert deadline.remaining() == 0.0


def test_expired_turns_true_exactly_at_the_deadline(clock: FakeClock) -> None:
    deadline = Deadline(3.0, clock=clock)
    clock.now += 2.999
    assert deadline.expired is False
    clock.now = 1003.0
    assert deadline.expired is True


def test_bound_is_the_smaller_of_the_wait_and_the_time_left(clock: FakeClock) -> None:
    deadline = Deadline(5.0, clock=clock)
    assert deadline.bound(2.0) == 2.0
    assert deadline.bound(8.0) == 5.0
    clock.now += 4.0
    assert deadline.bound(2.0) == 1.0
    clock.now += 10.0
    assert deadline.bound(2.0) == 0.0


def test_exceeded_returns_deadline_exceeded_with_timeout_and_context(clock: FakeClock) -> None:
    error = Deadline(2.5, clock=clock).exceeded("waiting for a slot", attempts=0, server="s")
    assert type(error) is DeadlineExceeded
    assert (error.timeout, error.attempts, error.server, error.slept, error.last_error) == (
        2.5, 0, "s", 0.0, None)
    assert error.message == "deadline of 2.5s exceeded waiting for a slot"


def test_deadline_keeps_the_per_attempt_timeouts(clock: FakeClock) -> None:
    timeouts = Timeouts(connect=1, read=2, deadline=3)
    assert Deadline(3.0, clock=clock, timeouts=timeouts).timeouts is timeouts


def test_repr_shows_timeout_and_remaining(clock: FakeClock) -> None:
    deadline = Deadline(10.0, clock=clock)
    clock.now += 0.25
    assert repr(deadline) == "<Deadline timeout=10s remaining=9.750s>"
