"""Who reads a local server's stdout: its reader thread, or the caller waiting for an answer.

Why: a caller whose answer the reader thread reads is woken twice per call, the reader by the
pipe, then the caller by the reader. On a server that answers in 150 µs that chain cost
10-20 µs a call (issue 16: the stdio round trip was 1.22-1.31 times the raw pipe's). So a
caller that finds nobody reading reads for itself: it polls the pipe, feeds what comes
through the same dispatch the reader thread uses (its answer, and anyone else's), and gives
the pipe back as soon as its own answer is in.

The baton is a lock held by whoever reads. The rules that keep every answer read:

- a caller only ever *tries* the baton (never waits for it): if someone holds it, that one is
  reading, and the caller waits for its answer as before;
- whoever gives the baton back while answers are still awaited makes sure somebody reads:
  the reader thread takes it again at once, a caller wakes the reader thread (``_wake``). A
  caller that failed to take the baton registered its request before trying, and the holder
  gives it back after that try, so the holder's look at ``wanted()`` sees the request;
- the reader thread gives the baton up when no answer is awaited, and then *parks*: it takes
  the pipe again when woken for an unread answer, or :data:`LINGER` seconds after the last
  caller read (so a notification sent while nobody calls waits at most about that long). A
  program calling in a loop keeps the pipe to itself, and keeps its single wake-up per call.

A caller reads only what it can stop promptly: it watches the pipe, the close waker and the
process's exit, and hands anything but data (EOF, exit, close) back to the reader thread,
which owns those paths. It never reads past its own deadline.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["LINGER", "ReadBaton"]

#: How long the reader thread leaves the pipe to callers after the last one read from it.
LINGER = 0.01


class ReadBaton:
    """The right to read one server's stdout. ``wanted()`` says whether any answer is awaited."""

    __slots__ = ("_last_read", "_lock", "_wake", "_wanted")

    def __init__(self, wanted: Callable[[], object]) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._wanted = wanted
        self._last_read = 0.0

    def try_take(self) -> bool:
        """Take the baton if nobody holds it (a caller about to read its own answer)."""
        return self._lock.acquire(blocking=False)

    def caller_done(self) -> None:
        """A caller gives the baton back; wakes the reader thread if answers are still
        awaited (nobody else may be reading)."""
        self._last_read = time.monotonic()
        self._lock.release()
        if self._wanted():
            self._wake.set()

    def reader_yields(self) -> bool:
        """The reader thread, after delivering a chunk: True if it keeps reading (answers are
        awaited, or awaited again just after it let go), False if callers have the pipe."""
        if self._wanted():
            return True
        self._lock.release()
        return bool(self._wanted()) and self._lock.acquire(blocking=False)

    def reader_takes(self, stopping: Callable[[], bool]) -> bool:
        """Park the reader thread until it should read again, then take the baton. False:
        ``stopping()`` came true and the baton stayed with a caller for the whole
        ``READER_JOIN`` bound (it must not touch the pipe then)."""
        while True:
            self._wake.wait(LINGER)
            self._wake.clear()
            if stopping():
                return self._lock.acquire(timeout=STOP_TAKE_TIMEOUT)
            if (self._wanted() or time.monotonic() - self._last_read >= LINGER) \
                    and self._lock.acquire(blocking=False):
                return True

    def reader_release(self) -> None:
        """The reader thread is done with the pipe for good (EOF, exit, close)."""
        self._lock.release()

    def wake(self) -> None:
        """Wake a parked reader thread now (close() stops it)."""
        self._wake.set()

    def after_fork(self) -> None:
        """In a forked child: the holder may have been a thread that does not exist here."""
        self._lock = threading.Lock()
        self._wake = threading.Event()


#: Longest a stopping reader thread waits for a caller to give the pipe back (a caller's poll
#: wakes on the close waker at once; only a callback blocking in ``on_notification`` keeps it).
STOP_TAKE_TIMEOUT = 1.0
