"""FairSlots: permits granted strictly in arrival order, every wait bounded, no permit ever lost.

Order is proven, not hoped for: each waiter starts only once the one before it is visibly
queued (its thread parked on its own waiter lock, seen in its frame), so the arrival order is
known, and the order in which the permits are granted is recorded.
"""

from __future__ import annotations

import inspect
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import WAIT, wait_for

from sark_sync.resilience import FairSlots

pytestmark = pytest.mark.timeout(60)


def _line_of(function: object, text: str) -> int:
    lines, first = inspect.getsourcelines(function)  # type: ignore[arg-type]
    return first + next(n for n, line in enumerate(lines) if text in line)


#: Where a queued waiter parks, on its own waiter lock.
PARKED = _line_of(FairSlots.acquire, "waiter.acquire(timeout=")


def _at_line(thread: threading.Thread, line: int) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and frame.f_code is FairSlots.acquire.__code__ \
        and frame.f_lineno == line


def parked(thread: threading.Thread) -> bool:
    """Whether ``thread`` is queued in :meth:`FairSlots.acquire`, waiting for its permit."""
    return _at_line(thread, PARKED)


class Waiter:
    """A thread that asks ``slots`` for a permit, records when it is granted (or not), and
    gives it back when told to."""

    def __init__(self, slots: FairSlots, name: object, granted: list[object],
                 timeout: float = WAIT, hold: threading.Event | None = None) -> None:
        self.slots, self.name, self.granted, self.timeout = slots, name, granted, timeout
        self.hold = hold
        self.got: bool | None = None
        self.thread = threading.Thread(target=self._run, name=f"waiter-{name}")

    def _run(self) -> None:
        self.got = self.slots.acquire(self.timeout)
        if self.got:
            self.granted.append(self.name)
            if self.hold is not None:
                self.hold.wait(WAIT)
            self.slots.release()

    def start_queued(self) -> Waiter:
        """Start, and return once visibly queued: the next one arrives after this one."""
        self.thread.start()
        wait_for(lambda: parked(self.thread), what=f"waiter {self.name} to queue")
        return self

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def threads() -> Iterator[list[Waiter]]:
    made: list[Waiter] = []
    yield made
    for waiter in made:
        if waiter.thread.ident is not None:
            waiter.join()


def test_the_uncontended_path_takes_and_gives_back_permits() -> None:
    slots = FairSlots(2)
    assert slots.acquire(0) and slots.acquire(0)
    assert not slots.acquire(0)
    assert (slots.free, slots.waiting, slots.size) == (0, 0, 2)
    slots.release()
    slots.release()
    assert slots.free == 2
    with pytest.raises(ValueError, match="more times than acquired"):
        slots.release()
    with pytest.raises(ValueError, match="at least one permit"):
        FairSlots(0)
    assert repr(slots) == "<FairSlots size=2 free=2 waiting=0>"


def test_waiters_get_the_permit_in_the_order_they_queued(threads: list[Waiter]) -> None:
    slots = FairSlots(1)
    assert slots.acquire(0)
    granted: list[object] = []
    for n in range(12):
        threads.append(Waiter(slots, n, granted).start_queued())
    assert slots.waiting == 12
    slots.release()
    for waiter in threads:
        waiter.join()
    assert granted == list(range(12))
    assert (slots.free, slots.waiting) == (1, 0)


def test_with_several_slots_the_oldest_waiters_go_first(threads: list[Waiter]) -> None:
    slots = FairSlots(3)
    assert all(slots.acquire(0) for _ in range(3))
    granted: list[object] = []
    holds = [threading.Event() for _ in range(9)]
    for n in range(9):
        threads.append(Waiter(slots, n, granted, hold=holds[n]).start_queued())
    for _ in range(3):
        slots.release()
    wait_for(lambda: len(granted) == 3, what="the three oldest waiters to get a permit")
    assert set(granted) == {0, 1, 2} and slots.waiting == 6
    for n in range(6):  # each permit given back goes to the oldest still waiting
        holds[n].set()
        wait_for(lambda n=n: len(granted) == 4 + n, what=f"a permit for waiter {3 + n}")
        assert granted[-1] == 3 + n
    for hold in holds:
        hold.set()
    for waiter in threads:
        waiter.join()
    assert (slots.free, slots.waiting) == (3, 0)


def test_a_newcomer_never_takes_a_permit_released_to_a_waiter(threads: list[Waiter]) -> None:
    slots = FairSlots(1)
    assert slots.acquire(0)
    hold = threading.Event()
    granted: list[object] = []
    first = Waiter(slots, "first", granted, hold=hold).start_queued()
    threads.append(first)
    slots.release()  # handed to "first", whether or not it has run yet
    assert not slots.acquire(0), "barged past the waiter"
    late = Waiter(slots, "late", granted).start_queued()  # queues behind, even now
    threads.append(late)
    hold.set()
    first.join()
    late.join()
    assert granted == ["first", "late"]
    assert slots.free == 1


def test_a_waiter_that_times_out_leaves_the_queue_and_the_count_stays_exact(
        threads: list[Waiter]) -> None:
    slots = FairSlots(1)
    assert slots.acquire(0)
    assert slots.acquire(0.02) is False
    assert (slots.free, slots.waiting) == (0, 0)
    granted: list[object] = []
    before = Waiter(slots, "before", granted).start_queued()
    quitter = Waiter(slots, "quitter", granted, timeout=0.05).start_queued()
    after = Waiter(slots, "after", granted).start_queued()
    threads.extend([before, quitter, after])
    quitter.join()
    assert quitter.got is False and slots.waiting == 2
    slots.release()
    before.join()
    after.join()
    assert granted == ["before", "after"]
    assert (slots.free, slots.waiting) == (1, 0)
    assert slots.acquire(-1.0)  # a free permit, whatever the timeout
    assert not slots.acquire(-1.0)  # none free: a timeout <= 0 never waits
    slots.release()


@pytest.mark.parametrize("behind", [False, True], ids=["alone", "with-a-waiter-behind"])
def test_a_release_in_the_instant_a_waiter_times_out_passes_the_permit_on(
        threads: list[Waiter], behind: bool) -> None:
    """The race, made to happen: the waiter's timeout ends while the test holds the slots'
    lock; a release then hands the permit to that waiter, which has already given up. It must
    pass the permit on (to the next waiter, or back to the count) and report False."""
    slots = FairSlots(1)
    assert slots.acquire(0)
    granted: list[object] = []
    quitter = Waiter(slots, "quitter", granted, timeout=0.2).start_queued()
    threads.append(quitter)
    if behind:
        threads.append(Waiter(slots, "next", granted).start_queued())
    with slots._lock:
        wait_for(lambda: not parked(quitter.thread),
                 what="the waiter's timeout to end (it then blocks on the lock we hold)")
        slots._release_locked()  # what release() does, racing the timeout
    for waiter in threads:
        waiter.join()
    assert quitter.got is False
    assert granted == (["next"] if behind else [])
    assert (slots.free, slots.waiting) == (1, 0)


class Interrupted(Exception):
    pass


def test_a_waiter_interrupted_by_a_signal_leaves_the_queue(threads: list[Waiter]) -> None:
    """A signal handler's exception (as KeyboardInterrupt is) raised in a queued waiter takes
    it out of the queue: the next release goes to the waiter behind it, not to nobody."""
    slots = FairSlots(1)
    assert slots.acquire(0)
    granted: list[object] = []
    main = threading.main_thread()
    assert threading.current_thread() is main  # signal handlers run in the main thread

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    def signal_when_queued() -> None:
        wait_for(lambda: parked(main), what="the main thread to queue")
        threads.append(Waiter(slots, "behind", granted).start_queued())
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    sender = threading.Thread(target=signal_when_queued)
    try:
        sender.start()
        with pytest.raises(Interrupted):
            slots.acquire(WAIT)
    finally:
        sender.join(WAIT)
        signal.signal(signal.SIGUSR1, previous)
    assert slots.waiting == 1
    slots.release()
    threads[0].join()
    assert granted == ["behind"]
    assert (slots.free, slots.waiting) == (1, 0)


def test_releases_racing_timeouts_never_lose_or_leak_a_permit() -> None:
    slots = FairSlots(1)
    outcomes = {True: 0, False: 0}
    for _ in range(300):
        assert slots.acquire(0)
        result: list[bool] = []
        thread = threading.Thread(target=lambda got=result: got.append(slots.acquire(0.001)))
        thread.start()
        wait_for(lambda got=result: slots.waiting or got,
                 what="the waiter to queue or give up")
        slots.release()
        thread.join(WAIT)
        outcomes[result[0]] += 1
        if result[0]:
            slots.release()
        assert (slots.free, slots.waiting) == (1, 0)
    assert sum(outcomes.values()) == 300


def _hammer(slots: FairSlots, threads: int, rounds: int, seed: int) -> int:
    """``threads`` threads, each ``rounds`` times: ask with a short random timeout, hold
    briefly, give back. Returns the most permits ever held at once."""
    lock = threading.Lock()
    held = [0, 0]  # now, most
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        start.wait(WAIT)
        try:
            for _ in range(rounds):
                if not slots.acquire(rng.choice((0.0, 0.0005, 0.002, 0.05))):
                    continue
                with lock:
                    held[0] += 1
                    held[1] = max(held)
                for _ in range(rng.randrange(50)):
                    pass
                with lock:
                    held[0] -= 1
                slots.release()
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT * 3)
    assert not any(worker.is_alive() for worker in workers) and failures == []
    return held[1]


@pytest.mark.stress
@settings(max_examples=12, deadline=None)
@given(size=st.integers(1, 6), threads=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_under_contention_the_count_is_exact_and_never_exceeded(
        size: int, threads: int, seed: int) -> None:
    slots = FairSlots(size)
    most = _hammer(slots, threads, 40, seed)
    assert 1 <= most <= size
    assert (slots.free, slots.waiting) == (size, 0)


def test_after_fork_the_child_has_every_permit_and_absorbs_the_forking_threads(
        threads: list[Waiter]) -> None:
    """What the at-fork hook does in the child (the real fork is in the integration tests):
    the parent's holders and waiters are gone; a permit the forking thread held may still be
    given back there, and is absorbed rather than raising."""
    slots = FairSlots(2)
    assert slots.acquire(0)  # the forking thread's own
    hold = threading.Event()
    granted: list[object] = []
    holder = Waiter(slots, "holder", granted, hold=hold)
    holder.thread.start()
    threads.append(holder)
    wait_for(lambda: granted == ["holder"], what="a parent thread to hold the other permit")
    threads.append(Waiter(slots, "waiter", granted).start_queued())
    parent_lock, parent_waiters = slots._lock, slots._waiters
    try:
        slots._after_fork_in_child()
        assert (slots.free, slots.waiting) == (2, 0)
        assert slots._lock is not parent_lock
        assert slots.acquire(0) and slots.acquire(0) and not slots.acquire(0)
        slots.release()
        slots.release()
        slots.release()  # the forking thread's permit, from before the fork
        slots.release()  # (and the holder's, were it here)
        with pytest.raises(ValueError):
            slots.release()
    finally:  # put the "parent" back as it was, to end its threads
        slots._lock, slots._waiters, slots._free, slots._stale = parent_lock, parent_waiters, 0, 0
        hold.set()
        slots.release()
