"""The callbacks thread of an MCP session: user code never runs on a reader thread.

A session's channel reads the server's messages on one thread (stdio's reader, the HTTP
listening stream, a response stream being read for its answer). A user callback that blocks
there, for a log message or a resource update, would stall every answer behind it; one that
calls the session back (``read_resource`` from an update callback) would wait for an answer
only that blocked thread can read: a deadlock. So :class:`CallbackRunner` hands each callback
to a thread of its own, ``sark-sync-mcp-<name>-callbacks``, one per session:

- started lazily, by the first callback submitted (a session nobody listens to has none),
  and ended after :data:`CALLBACKS_IDLE_EXIT` seconds without work (the next callback starts
  it again), so an idle session holds no thread;
- a bounded queue (:data:`MAX_PENDING_CALLBACKS`): when a callback is so slow that the queue
  fills, what arrives is dropped with a warning (one per :data:`DROP_WARNING_EVERY` drops)
  and counted in :attr:`CallbackRunner.dropped`, so a slow callback costs notifications,
  never memory nor the reader;
- a callback that raises is logged (its type only at warning level, the traceback at debug:
  its message may quote what it was given) and the next one runs;
- :meth:`CallbackRunner.close` stops the thread and joins it within
  :data:`CALLBACKS_JOIN_TIMEOUT` seconds (a callback still blocked then is left to end on its
  own: the thread is a daemon, and it drops what is still queued);
- after ``fork()`` the child forgets the parent's thread and queue (they do not exist there)
  and starts its own on first use; a runner dropped unclosed stops its thread when collected
  (the thread holds only the queue, never the runner nor the session).
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from typing import Any, Callable

from ..resilience import forksafety

__all__ = ["CALLBACKS_IDLE_EXIT", "CALLBACKS_JOIN_TIMEOUT", "CallbackRunner",
           "MAX_PENDING_CALLBACKS"]

log = logging.getLogger("sark_sync.mcp")

#: Callbacks waiting to run, at most; past it new ones are dropped (and counted).
MAX_PENDING_CALLBACKS = 1024
#: Seconds close() waits for the thread (a callback blocked longer is abandoned).
CALLBACKS_JOIN_TIMEOUT = 2.0
#: One warning per this many dropped callbacks (the first one always warns).
DROP_WARNING_EVERY = 100
#: Seconds the thread waits for a callback before it ends (the next one starts a new thread).
CALLBACKS_IDLE_EXIT = 1.0


class _Pending:
    """The queue the thread reads: a deque under a condition, and the stop switch."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = \
            collections.deque()
        self.ready = threading.Condition(threading.Lock())
        self.stopped = False
        self.serving = False  # a thread reads the queue (set and cleared under ``ready``)

    def stop(self) -> None:
        with self.ready:
            self.stopped = True
            self.items.clear()
            self.ready.notify_all()


def _run(pending: _Pending, name: str) -> None:
    while True:
        with pending.ready:
            while not pending.items and not pending.stopped:
                if not pending.ready.wait(CALLBACKS_IDLE_EXIT) and not pending.items:
                    pending.serving = False  # idle: the next submit starts a thread
                    return
            if pending.stopped:
                return
            callback, args = pending.items.popleft()
        try:
            callback(*args)
        except Exception as exc:  # the user's bug must not end the thread
            log.warning("%s: a callback raised %s", name, type(exc).__name__)
            log.debug("%s: the callback's traceback", name, exc_info=True)


class CallbackRunner:
    """Runs the callbacks of the session ``name`` one after the other on its own thread.

    :param limit: callbacks queued at most (>= 1); later ones are dropped while it is full.
    """

    def __init__(self, name: str, limit: int = MAX_PENDING_CALLBACKS) -> None:
        self.name = name
        self._limit = limit
        self._lock = threading.Lock()
        self._pending = _Pending(limit)
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Callbacks dropped because the queue was full (or the runner closed).
        self.dropped = 0
        self._finalizer = weakref.finalize(self, _Pending.stop, self._pending)
        forksafety.register(self)

    def submit(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Queue ``callback(*args)``; False (and counted in :attr:`dropped`) if the queue is
        full or the runner is closed. Never blocks."""
        with self._lock:
            if self._closed:
                self.dropped += 1
                return False
            pending = self._pending
            with pending.ready:
                full = len(pending.items) >= pending.limit
                start = not full and not pending.serving
                if not full:
                    pending.items.append((callback, args))
                    pending.serving = True
                    pending.ready.notify()
            if full:
                self.dropped += 1
                dropped = self.dropped
            elif start:
                self._thread = threading.Thread(
                    target=_run, args=(pending, self.name),
                    name=f"sark-sync-mcp-{self.name}-callbacks", daemon=True)
                self._thread.start()
        if full:
            if dropped % DROP_WARNING_EVERY == 1 or DROP_WARNING_EVERY == 1:
                log.warning("%s: a callback is too slow, %d pending: dropped a notification "
                            "(%d dropped so far)", self.name, pending.limit, dropped)
            return False
        return True

    @property
    def running(self) -> bool:
        """Whether the thread is started and alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self, timeout: float = CALLBACKS_JOIN_TIMEOUT) -> None:
        """Stop the thread (what is still queued is dropped) and join it within ``timeout``
        seconds. Idempotent; never raises. Called from a callback, it does not join itself."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._pending.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: a callback still runs after %.3gs; not waiting for it",
                            self.name, timeout)

    def _after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: a new queue, started on first use."""
        self._lock = threading.Lock()
        self._thread = None
        self._pending = _Pending(self._limit)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _Pending.stop, self._pending)
