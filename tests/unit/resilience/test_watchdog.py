"""The deadline watchdog: cuts what outlives its instant, and nothing else."""

from __future__ import annotations

import threading
import time

import pytest
from support import wait_for

from sark_sync import ConnectionFailed, TransportTimeout
from sark_sync.resilience._watchdog import PURGE_AT, WATCHDOG_TICK, Watchdog
from sark_sync.transports._guarded import Exchange, guarded, timed_out, was_cut

pytestmark = pytest.mark.timeout(20)


class Recorder:
    def __init__(self) -> None:
        self.finished = False
        self.expired_at: float | None = None
        self.calls = 0
        self.event = threading.Event()

    def expire(self) -> None:
        self.calls += 1
        self.expired_at = time.monotonic()
        self.event.set()


@pytest.fixture
def dog() -> Watchdog:
    return Watchdog()


def test_an_exchange_still_running_is_expired_at_its_instant_not_before(dog: Watchdog) -> None:
    watched = Recorder()
    at = time.monotonic() + 0.2
    dog.watch(at, watched)
    assert watched.event.wait(2)
    assert watched.expired_at is not None
    assert at <= watched.expired_at <= at + WATCHDOG_TICK + 0.05
    assert watched.calls == 1


def test_a_finished_exchange_is_never_expired(dog: Watchdog) -> None:
    watched, witness = Recorder(), Recorder()
    dog.watch(time.monotonic() + 0.05, watched)
    watched.finished = True
    dog.watch(time.monotonic() + 0.1, witness)  # expired after the first one's instant
    assert witness.event.wait(2)
    assert watched.calls == 0


def test_an_earlier_exchange_wakes_the_thread_early(dog: Watchdog) -> None:
    late, early = Recorder(), Recorder()
    dog.watch(time.monotonic() + 30, late)
    at = time.monotonic() + 0.1
    dog.watch(at, early)
    assert early.event.wait(2)
    assert early.expired_at is not None and early.expired_at <= at + WATCHDOG_TICK + 0.05
    late.finished = True


def test_expiry_order_follows_the_instants(dog: Watchdog) -> None:
    order: list[int] = []
    done = threading.Event()

    class Named(Recorder):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def expire(self) -> None:
            order.append(self.n)
            if len(order) == 3:
                done.set()

    now = time.monotonic()
    for n, offset in ((2, 0.15), (0, 0.05), (1, 0.1)):
        dog.watch(now + offset, Named(n))
    assert done.wait(2)
    assert order == [0, 1, 2]


def test_finished_exchanges_are_purged_without_waiting_for_their_instants(dog: Watchdog) -> None:
    far = time.monotonic() + 3600
    watched = [Recorder() for _ in range(PURGE_AT * 2)]
    for one in watched:
        dog.watch(far, one)
    for one in watched:
        one.finished = True
    live = Recorder()
    # Earlier than every other instant: wakes the thread, which finds nothing due and purges.
    # Its instant is far too, so only the purge (not popping what is due) can drop the rest.
    dog.watch(time.monotonic() + 60, live)
    wait_for(lambda: dog.pending() == 1, 2,
             what=lambda: f"the purge to leave the live exchange alone; {dog.pending()} pending")
    assert live.calls == 0
    live.finished = True


def test_a_failing_expire_does_not_stop_the_watchdog(dog: Watchdog) -> None:
    class Broken(Recorder):
        def expire(self) -> None:
            raise RuntimeError("boom")

    dog.watch(time.monotonic() + 0.01, Broken())
    after = Recorder()
    dog.watch(time.monotonic() + 0.05, after)
    assert after.event.wait(2)


def test_the_thread_is_one_daemon_named_as_a_singleton(dog: Watchdog) -> None:
    def named() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "sark_sync-singleton-watchdog"}

    before = named()  # other watchdogs' threads (the process-wide one, earlier tests' dogs)
    watched = [Recorder() for _ in range(10)]
    for one in watched:
        dog.watch(time.monotonic() + 60, one)
    (thread,) = named() - before  # ten exchanges, one thread
    assert thread.daemon
    for one in watched:
        one.finished = True


def test_after_fork_the_child_forgets_the_parents_exchanges(dog: Watchdog) -> None:
    dog.watch(time.monotonic() + 60, Recorder())
    dog._after_fork_in_child()
    assert dog.pending() == 0


def test_guarded_marks_the_exchange_finished_and_knows_when_it_was_cut() -> None:
    with guarded(time.monotonic() + 0.05) as exchange:
        assert not was_cut()
        wait_for(lambda: exchange.cut, 2, what="the watchdog to cut the exchange")
        assert was_cut()
    assert exchange.finished and not was_cut()


def test_a_finished_exchange_is_not_cut_later() -> None:
    at = time.monotonic() + 0.05
    with guarded(at) as exchange:
        pass
    # guarded() uses the process-wide watchdog on the real clock, so its instant must really
    # pass. Not a sleep: a witness due later is cut only after the watchdog has dealt with
    # every earlier instant (its heap is in order), this exchange's included.
    with guarded(at + 0.05) as witness:
        wait_for(lambda: witness.cut, 2, what="the watchdog to pass the finished one's instant")
    assert exchange.finished and not exchange.cut


def test_tighten_moves_the_cut_earlier() -> None:
    with guarded(time.monotonic() + 60) as exchange:
        exchange.tighten(time.monotonic() + 0.05)
        wait_for(lambda: exchange.cut, 2, what="the cut at the tightened instant")


def test_an_exchange_without_sockets_expires_quietly() -> None:
    exchange = Exchange()
    exchange.expire()
    assert exchange.cut
    exchange.expire()  # idempotent


def test_a_timeout_at_the_deadline_counts_as_the_deadline_even_before_the_cut() -> None:
    """The socket's read timeout and the watchdog's cut fall due together: either one means
    the time ran out; another error, or a timeout before the deadline, does not."""
    exchange, now = Exchange(), time.monotonic()
    timeout = TransportTimeout("timed out waiting for the response")
    assert timed_out(exchange, timeout, now)
    assert not timed_out(exchange, timeout, now + 60)
    assert not timed_out(exchange, ConnectionFailed("reset"), now)
    exchange.expire()
    assert timed_out(exchange, ConnectionFailed("reset"), now + 60)
