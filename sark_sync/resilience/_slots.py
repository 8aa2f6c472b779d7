"""First-come-first-served slots: a bounded semaphore that serves its waiters in arrival order.

Why not :class:`threading.BoundedSemaphore`: its waiters race for each released permit. With
32 threads sharing 8 slots, a thread that loses the race waits again, and can lose many rounds
in a row: the median call is fine, the slowest calls wait several times as long as they should
(issue 16: p99 at 2.4 times raw requests'). Here a release never puts the permit back in a pool
for anyone to grab: it hands it straight to the oldest waiter, so a caller's wait is bounded by
the calls queued ahead of it, and a thread arriving while others wait joins the end of the queue
(no barging) even if it comes just as a permit is released.

The design: one lock guarding a count of free permits and a deque of waiters, each a
:class:`threading.Lock` held locked by its owner until :meth:`FairSlots.release` unlocks it.
While anyone waits, no permit is free (a release goes to a waiter instead), so the uncontended
path is one lock acquire and release, with no per-call allocation: it runs on every gateway
call, and the benchmarks compare it with raw requests.

A waiter whose timeout ends (or that is interrupted: KeyboardInterrupt) leaves the queue. If a
release handed it the permit in the instant between its timeout and its taking the lock back,
that permit is passed on at once (to the next waiter, or back to the count): ``acquire``
returning False (or raising) always means no permit is held, and no permit is ever lost.

Fork: a child has only the thread that forked, so the parent's holders and waiters are gone;
the at-fork hook (:mod:`._forksafety`) gives the child a new lock, every permit free and no
waiter. A permit the forking thread itself held may still be released in the child: such
releases past the size are absorbed (up to the number of permits held at fork time) instead of
raising, so a call in progress across ``fork()`` ends normally there.
"""

from __future__ import annotations

import threading
from collections import deque

from . import _forksafety

__all__ = ["FairSlots"]


class FairSlots:
    """``size`` permits, granted strictly in the order they were asked for. Thread-safe.

    ``acquire(timeout)`` waits at most ``timeout`` seconds (never unbounded) and returns
    whether a permit is held; each permit held is given back with :meth:`release`.
    """

    __slots__ = ("__weakref__", "_free", "_lock", "_size", "_stale", "_waiters")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"FairSlots needs at least one permit, got {size}")
        self._size = size
        self._free = size
        self._stale = 0  # permits held across a fork, whose release the child absorbs
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        _forksafety.register(self)

    @property
    def size(self) -> int:
        """How many permits there are in all."""
        return self._size

    @property
    def free(self) -> int:
        """Permits free now (0 whenever anyone waits)."""
        return self._free

    @property
    def waiting(self) -> int:
        """Threads waiting for a permit now."""
        return len(self._waiters)

    def acquire(self, timeout: float) -> bool:
        """Take a permit, waiting at most ``timeout`` seconds behind those who asked first.

        ``timeout <= 0`` only takes a free permit. False: the time ran out and no permit is
        held (the caller is out of the queue)."""
        with self._lock:
            if self._free:  # never while anyone waits: release hands permits to waiters
                self._free -= 1
                return True
            if timeout <= 0:
                return False
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        try:
            if waiter.acquire(timeout=min(timeout, threading.TIMEOUT_MAX)):
                return True  # release() handed us its permit
        except BaseException:  # KeyboardInterrupt, or a signal handler's exception
            self._leave(waiter)
            raise
        self._leave(waiter)
        return False

    def _leave(self, waiter: threading.Lock) -> None:
        """Out of the queue without a permit: if a release handed us one in the meantime
        (after the timeout, before we took the lock back), it goes on at once."""
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # popped by a release: the permit is ours to pass on
                self._release_locked()

    def release(self) -> None:
        """Give a permit back: to the oldest waiter if anyone waits, else to the free count.

        Raises :class:`ValueError` if released more times than acquired (as
        :class:`threading.BoundedSemaphore` does)."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._waiters:
            self._waiters.popleft().release()
        elif self._free < self._size:
            self._free += 1
        elif self._stale:
            self._stale -= 1  # a permit taken before fork(), given back in the child
        else:
            raise ValueError("FairSlots released more times than acquired")

    def _after_fork_in_child(self) -> None:
        """In a forked child: the holders and waiters were the parent's threads (but for the
        forking thread, whose permit, if it held one, is absorbed when it gives it back)."""
        self._stale = min(self._size, self._stale + self._size - self._free)
        self._lock = threading.Lock()
        self._waiters = deque()
        self._free = self._size

    def __repr__(self) -> str:
        return f"<FairSlots size={self._size} free={self._free} waiting={len(self._waiters)}>"
