"""One deadline watchdog for every HTTP exchange of the package.

A socket timeout bounds one read, not an exchange: a peer that sends one header byte every
half second, or an endless series of ``100 Continue`` interim responses, keeps every read
short and the exchange alive for as long as it likes. The only bound that holds whatever the
peer does between bytes is to cut the exchange from outside when its time is up.

So an exchange registers with one process-wide thread (``sark_sync-singleton-watchdog``) the
instant it must be over by. If it is still running then, the watchdog runs its ``expire``
callback, which shuts its sockets down (:mod:`sark_sync.transports._guarded`): the blocked
read returns at once, and the caller sees its deadline error. Shutting down, never closing:
the file descriptor stays owned by the reading thread, so no fd number is freed (and reused)
under a read.

Cost on the hot path: one lock, one heap push, and no wake-up of the thread unless the new
exchange ends before every other. Exchanges that finish in time stay in the heap until their
instant passes (or a purge drops them), and the thread wakes at most once per
:data:`WATCHDOG_TICK`, so a busy client does not wake it once per call.

The thread is a daemon and lives as long as the process; a forked child starts its own on
first use (the parent's exchanges are not the child's).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from typing import Callable, Protocol

__all__ = ["DEADLINE_MARGIN", "WATCHDOG_TICK", "Watched", "watchdog"]

#: The promise: no exchange outlives its deadline by more than this many seconds, whatever
#: the peer does between bytes (docs/gateway/ERROR_HANDLING.md; the hostile-peer tests pin it).
DEADLINE_MARGIN = 0.1
#: The watchdog wakes at most once per tick, so an exchange is cut at most this late (plus the
#: time its thread takes to notice): most of the margin is left for a loaded machine.
WATCHDOG_TICK = 0.01
#: Finished exchanges are purged from the heap once they are this many and half of it.
PURGE_AT = 1024


class Watched(Protocol):
    """An exchange the watchdog can cut."""

    #: True once the exchange is over: the watchdog then forgets it without a call.
    finished: bool

    def expire(self) -> None:
        """The exchange's time is up: cut it. Called on the watchdog thread, at most once
        per ``watch``; must not block."""


class Watchdog:
    """Calls ``expire()`` on each watched exchange still running at its instant."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._init()

    def _init(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watched]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def watch(self, at: float, exchange: Watched) -> None:
        """Call ``exchange.expire()`` at ``at`` (on this watchdog's clock) unless it has
        finished by then. Watching the same exchange again with an earlier instant moves its
        cut earlier; a later one changes nothing."""
        if self._pid != os.getpid():  # a fork that bypassed the at-fork hook
            self._init()
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="sark_sync-singleton-watchdog", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    # No new thread at interpreter shutdown (an atexit flush of an audit
                    # sink): the exchange goes unwatched, each read still bounded by its
                    # socket timeout, rather than failing.
                    return
                self._thread = thread
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (at, next(self._order), exchange))
            if earliest is None or at < earliest:
                self._cond.notify()

    def pending(self) -> int:
        """How many exchanges are in the heap (finished ones not yet purged included)."""
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        # Its own references: a forked child replaces the attributes, never this thread's.
        heap, cond = self._heap, self._cond
        while True:
            due: list[Watched] = []
            with cond:
                while not due:
                    now = self._clock()
                    while heap and (heap[0][2].finished or heap[0][0] <= now):
                        _, _, exchange = heapq.heappop(heap)
                        if not exchange.finished:
                            due.append(exchange)
                    if due:
                        break
                    if len(heap) >= PURGE_AT:
                        _purge(heap)
                    if heap:
                        cond.wait(max(heap[0][0] - now, WATCHDOG_TICK))
                    else:
                        cond.wait()
            for exchange in due:
                try:
                    exchange.expire()
                except Exception:  # an exchange's failure must not stop the watchdog
                    pass

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its exchanges are not ours.
        self._init()


def _purge(heap: list[tuple[float, int, Watched]]) -> None:
    live = [entry for entry in heap if not entry[2].finished]
    if len(live) <= len(heap) // 2:
        heap[:] = live
        heapq.heapify(heap)


watchdog = Watchdog()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=watchdog._after_fork_in_child)
