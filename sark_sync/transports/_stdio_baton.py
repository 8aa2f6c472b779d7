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

A call whose line fits in ``PIPE_BUF`` goes out and has its answer read in one step
(:meth:`CallerReading.exchange`); an answer that comes as one whole line is then taken by its
caller without the table of awaited calls (``CallTable.own_answer``): client and server often
share a CPU, where each step of a call costs several times what it costs alone.

A caller reads only what it can stop promptly: it watches the pipe, the close waker and the
process's exit, and hands anything but data (EOF, exit, close) back to the reader thread,
which owns those paths. It never reads past its own deadline.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from typing import Any, Callable

from ._stdio_io import READ_CHUNK
from ._stdio_process import Waker

__all__ = ["LINGER", "CallerReading", "ReadBaton"]

#: How long the reader thread leaves the pipe to callers after the last one read from it.
LINGER = 0.01


class ReadBaton:
    """The right to read one server's stdout. ``wanted()`` says whether any answer is awaited."""

    __slots__ = ("_last_read", "_wake", "_wanted", "lock")

    def __init__(self, wanted: Callable[[], object]) -> None:
        self.lock = threading.Lock()  # held by whoever reads
        self._wake = threading.Event()
        self._wanted = wanted
        self._last_read = 0.0

    def try_take(self) -> bool:
        """Take the baton if nobody holds it (a caller about to read its own answer)."""
        return self.lock.acquire(blocking=False)

    def caller_done(self) -> None:
        """A caller gives the baton back; wakes the reader thread if answers are still
        awaited (nobody else may be reading)."""
        self._last_read = time.monotonic()
        self.lock.release()
        if self._wanted():
            self._wake.set()

    def reader_yields(self) -> bool:
        """The reader thread, after delivering a chunk: True if it keeps reading (answers are
        awaited, or awaited again just after it let go), False if callers have the pipe."""
        if self._wanted():
            return True
        self.lock.release()
        return bool(self._wanted()) and self.lock.acquire(blocking=False)

    def reader_takes(self, stopping: Callable[[], bool]) -> bool:
        """Park the reader thread until it should read again, then take the baton. False:
        ``stopping()`` came true and the baton stayed with a caller for the whole
        ``READER_JOIN`` bound (it must not touch the pipe then)."""
        while True:
            self._wake.wait(LINGER)
            self._wake.clear()
            if stopping():
                return self.lock.acquire(timeout=STOP_TAKE_TIMEOUT)
            if (self._wanted() or time.monotonic() - self._last_read >= LINGER) \
                    and self.lock.acquire(blocking=False):
                return True

    def reader_release(self) -> None:
        """The reader thread is done with the pipe for good (EOF, exit, close)."""
        self.lock.release()

    def wake(self) -> None:
        """Wake a parked reader thread now (close() stops it)."""
        self._wake.set()

    def after_fork(self) -> None:
        """In a forked child: the holder may have been a thread that does not exist here."""
        self.lock = threading.Lock()
        self._wake = threading.Event()


#: Longest a stopping reader thread waits for a caller to give the pipe back (a caller's poll
#: wakes on the close waker at once; only a callback blocking in ``on_notification`` keeps it).
STOP_TAKE_TIMEOUT = 1.0


class CallerReading:
    """The caller's side of :class:`~._stdio_pipes.ServerProcess`, a base class of it kept
    beside the rules it follows: take the pipe, send a request and read its answer, give the
    pipe back. The attributes are the ServerProcess's."""

    pidfd: int
    owner_pid: int
    _baton: ReadBaton
    _write_lock: threading.Lock
    _release_wanted: bool  # close() wants the fds closed
    _stdin_closed: bool
    _stop_readers: Waker
    _stop_writers: Waker
    _caller_poller: Any
    _stdin_fd: int
    _stdout_fd: int
    _release_fds: Callable[[], None]  # closes the read side once nobody reads it

    def take_pipe(self) -> bool:
        """Take stdout to read it on the calling thread, if nobody else reads it now
        (:mod:`._stdio_baton`): one wake-up per call instead of two. Until :meth:`give_pipe`,
        nobody else reads it, and its fds stay open: closing them takes the baton for good.
        False without a pidfd: the caller could not see an exit."""
        if self.pidfd < 0 or not self._baton.lock.acquire(False):  # try_take(), without a call
            return False
        if self._release_wanted or self._stop_readers.is_set:
            self.give_pipe()  # close() may have found the baton taken: it is closed here
            return False
        return True

    def exchange(self, data: bytes, deadline: float) -> bytes | None:
        """Write ``data`` (at most ``PIPE_BUF`` bytes: a pipe takes it whole or not at all)
        and read what stdout brings next, on this thread, if nobody else reads stdout now
        and the pipe and the writers' lock take ``data`` at once. Returns that chunk (b"" if
        none came: the deadline, or EOF, exit or close, the reader thread's to handle) with
        the pipe still taken (read on with :meth:`next_chunk`, then :meth:`give_pipe`).
        None: nothing was written, the pipe is not taken (:meth:`write` reports why)."""
        if os.getpid() != self.owner_pid or not self.take_pipe():
            return None
        written = 0
        try:
            if self._write_lock.acquire(blocking=False):
                try:
                    if not (self._stdin_closed or self._stop_writers.is_set):
                        written = os.write(self._stdin_fd, data)
                except OSError:  # a full pipe, or a broken one (write() reports it)
                    pass
                finally:
                    self._write_lock.release()
            if written:  # all of it: at most PIPE_BUF bytes
                return self.next_chunk(deadline) or b""
        except BaseException:
            self.give_pipe()
            raise
        self.give_pipe()
        return None

    def give_pipe(self) -> None:
        self._baton.caller_done()
        if self._release_wanted:
            self._release_fds()  # close() found the pipe taken: the fds are closed here

    def next_chunk(self, deadline: float) -> bytes | None:
        """Holding the pipe: what stdout delivers next, or None at ``deadline`` and on anything
        but data (EOF, exit, close), which the reader thread then handles."""
        poller, fd = self._caller_poller, self._stdout_fd
        if poller is None:
            poller = self._caller_poller = select.poll()
            for watched in (fd, self._stop_readers.fileno(), self.pidfd):
                poller.register(watched, select.POLLIN)
        while True:  # poll_milliseconds() and read_chunk() written out: once per call
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            events = poller.poll(int(remaining * 1000) + 1)
            if len(events) == 1 and events[0][0] == fd:
                try:
                    return os.read(fd, READ_CHUNK) or None  # b"": EOF, the reader thread's
                except BlockingIOError:
                    continue
                except OSError as exc:  # EBADF, EIO: as EOF; else a bug to report
                    if exc.errno in (errno.EBADF, errno.EIO):
                        return None
                    raise
            elif events:
                return None  # close() or an exit (data or not): the reader thread's
