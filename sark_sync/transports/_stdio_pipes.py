"""A local server's process and its three pipes, as bytes: spawn, read, write, shut down.

:class:`ServerProcess` owns every OS resource of one server: the process, its pipes, a pidfd,
two wakers and the two reader threads. It knows nothing of JSON-RPC: the stdout and stderr
readers hand chunks to callbacks. Its contract:

- a reader returns when its pipe reaches EOF, when ``close()`` wakes it, or as soon as the
  process exits (even if a grandchild still holds the pipe), after draining what is left;
- a write blocks at most its timeout, and a closing caller wakes it out of its ``select``;
- stdout is read by whoever holds its baton: the stdout reader, or a caller reading its own
  answer (:meth:`ServerProcess.take_pipe`, :mod:`._stdio_baton`), which hands EOF, exit and
  close back to the reader;
- no fd is closed while a thread of ours may still use it: stdin under the writers' lock,
  the read side by the last of {the closing caller, the readers, callers reading} to be done
  with it;
- after ``fork()`` the child closes its copies of the fds and never signals or waits for the
  parent's process.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

from .._exceptions import ProcessStartError, TransportTimeout
from ..resilience import forksafety
from ._stdio_baton import CallerReading, ReadBaton
from ._stdio_io import close_fd, close_quietly, drain, poll_milliseconds, read_chunk
from ._stdio_process import (
    EXIT_POLL_INTERVAL,
    LADDER_BOUND,
    OWN_GROUP,
    READER_JOIN_TIMEOUT,
    TICK,
    Ladder,
    Waker,
    open_pidfd,
    process_steps,
    reaper,
    run_ladder,
)

__all__ = ["ProcessClosed", "ServerProcess"]

log = logging.getLogger("sark_sync.stdio")

#: After stdout's EOF, how long to wait for the exit code and the stderr tail that explain it.
EXIT_CODE_GRACE = 0.25
#: Longest a closing caller waits for writers to leave once woken (they only leave a select).
WRITER_STOP_TIMEOUT = 1.0

class ProcessClosed(Exception):
    """A write found the server closed (by us): the caller reports why it is gone."""


class ServerProcess(CallerReading):
    """A spawned server; ``on_stdout``/``on_stderr`` get its output, ``on_stdout_end`` is called
    once stdout is over unless ``close()`` ended it. ``awaited()`` says whether any answer is
    awaited: a caller may then read stdout itself (:meth:`take_pipe`, :mod:`._stdio_baton`)."""

    def __init__(self, command: Sequence[str], *, name: str, env: Mapping[str, str],
                 cwd: str | os.PathLike[str] | None, on_stdout: Callable[[bytes], None],
                 on_stderr: Callable[[bytes], None], on_stdout_end: Callable[[], None],
                 awaited: Callable[[], object]) -> None:
        try:
            process = subprocess.Popen(
                list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env), cwd=cwd, close_fds=True, bufsize=0,
                **OWN_GROUP,
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ProcessStartError(
                f"could not start local MCP server {name!r}: {reason}: {command[0]!r}",
                command=command[0],
            ) from exc
        assert process.stdin and process.stdout and process.stderr
        self.process = process
        self.name, self._stdin_fd = name, process.stdin.fileno()  # the fd: writers' lock only
        self._stdout_fd = process.stdout.fileno()  # read by the baton's holder only
        self.owner_pid = os.getpid()
        self.pidfd = open_pidfd(process.pid)  # before anyone may reap it
        for stream in (process.stdin, process.stdout, process.stderr):
            os.set_blocking(stream.fileno(), False)
        self._stop_readers, self._stop_writers = Waker(), Waker()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stdin_closed = False
        self.torn = False
        self._readers_alive = 2
        self._release_wanted = self._released = False
        self._shutdown: threading.Event | None = None  # set when the ladder is over
        self._stderr_done = threading.Event()
        self._on_stdout_end = on_stdout_end
        self._baton = ReadBaton(awaited)
        self._caller_poller: Any = None  # used by the baton's holder only
        self._pipe_lost = False  # the reader thread stopped while a caller kept the pipe
        forksafety.register(self)
        self.threads = [
            threading.Thread(target=self._pump, args=(process.stdout, on_stdout, True),
                             name=f"sark-sync-stdio-{name}-reader", daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, on_stderr, False),
                             name=f"sark-sync-stdio-{name}-stderr", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop_readers.is_set

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Run the ladder here; if it runs already, wait for its end (bounded)."""
        ladder = self._begin_shutdown()
        if ladder is not None:
            run_ladder(ladder, self.process)
        elif self._shutdown is not None and os.getpid() == self.owner_pid:
            self._shutdown.wait(LADDER_BOUND)

    def abandon(self) -> None:
        """Leave the ladder to the background reaper."""
        ladder = self._begin_shutdown()
        if ladder is not None:
            assert self._shutdown is not None
            reaper.abandon(ladder, self.process, self._shutdown)

    def release(self) -> None:
        """``close()`` for a finalizer: never waits for a ladder already under way."""
        ladder = self._begin_shutdown()
        if ladder is not None:
            run_ladder(ladder, self.process)

    def _begin_shutdown(self) -> Ladder | None:
        with self._lock:
            if self._shutdown is not None or os.getpid() != self.owner_pid:
                return None
            self._shutdown = threading.Event()
        return self._ladder(self._shutdown)

    def _ladder(self, done: threading.Event) -> Ladder:
        try:
            self._close_stdin()
            yield from process_steps(self.process)
            self._stop_readers.set()
            self._baton.wake()
            end = time.monotonic() + READER_JOIN_TIMEOUT
            current = threading.current_thread()
            while any(t.is_alive() for t in self.threads if t is not current):
                if time.monotonic() >= end:
                    log.warning("a reader of %s is still busy (in a callback?): it closes its "
                                "pipes when it returns", self.name)
                    break
                yield time.monotonic() + TICK, False
            with self._lock:
                self._release_wanted = True
            self._release_fds()
            log.debug("stopped %s (exit code %s)", self.name, self.process.returncode)
        finally:
            done.set()

    def _close_stdin(self) -> None:
        """Close stdin once no writer can be using it: wake the writers, take their lock."""
        self._stop_writers.set()
        if not self._write_lock.acquire(timeout=WRITER_STOP_TIMEOUT):
            log.warning("a writer to %s did not stop; its stdin stays open", self.name)
            return
        try:
            if not self._stdin_closed:
                self._stdin_closed = True
                close_quietly(self.process.stdin)
        finally:
            self._write_lock.release()

    def _release_fds(self) -> None:
        """Close the read side once close() asked for it and no reader is left to use it
        (called by the ladder, by each reader thread on its way out, and by a caller giving
        the pipe back: the last one closes). Closing takes the baton and keeps it, so no
        caller can be reading stdout then, nor take it afterwards."""
        if not self._baton.try_take():
            return  # someone reads stdout: it calls this again when it lets go
        with self._lock:
            closing = self._release_wanted and self._readers_alive == 0 and not self._released
            self._released = self._released or closing
        if not closing:
            self._baton.reader_release()
            return
        close_quietly(self.process.stdout)
        close_quietly(self.process.stderr)
        if self.pidfd >= 0:
            close_fd(self.pidfd)
            self.pidfd = -1
        self._stop_readers.close()
        if self._stdin_closed:
            self._stop_writers.close()  # no writer reaches it once stdin is closed

    def _after_fork_in_child(self) -> None:
        """In a forked child (single-threaded; locks may be held by parent threads that do
        not exist here): close our copies of the fds, so the parent's close() still ends in a
        clean EOF for the server; never signal or wait for the parent's process."""
        if os.getpid() == self.owner_pid or self._released:
            return
        self._lock, self._write_lock = threading.Lock(), threading.Lock()
        self._baton.after_fork()
        self._caller_poller = None
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            close_quietly(stream)
        if self.pidfd >= 0:
            close_fd(self.pidfd)
            self.pidfd = -1
        self._stop_readers.close_after_fork()
        self._stop_writers.close_after_fork()
        self._stdin_closed = self._released = True
        self._shutdown = threading.Event()  # nothing to shut down here
        self.threads = []

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes, timeout: float) -> None:
        """Write all of ``data`` within ``timeout``, one writer at a time. Raises
        :class:`TransportTimeout`, :class:`ProcessClosed` (closed by us) or the ``OSError`` of
        a broken pipe. A timeout after part of ``data`` went out sets :attr:`torn`: the
        server's stdin now ends in half a message, and nothing more can be framed on it."""
        deadline = time.monotonic() + timeout
        if not self._write_lock.acquire(timeout=max(0.0, timeout)):
            raise TransportTimeout(f"timed out waiting to write to {self.name!r}",
                                   server=self.name)
        try:
            if self._stdin_closed or self._stop_writers.is_set:
                raise ProcessClosed()
            try:  # most writes go out whole at once
                written = os.write(self._stdin_fd, data)
            except BlockingIOError:
                written = 0
            if written < len(data):
                self._write_rest(memoryview(data)[written:], deadline, len(data))
        finally:
            self._write_lock.release()

    def _write_rest(self, view: memoryview, deadline: float, size: int) -> None:
        """The rest of a write the pipe did not take at once (under the writers' lock)."""
        fd, stop = self._stdin_fd, self._stop_writers.fileno()
        poller = select.poll()  # not select(): it fails on fd numbers >= 1024
        poller.register(fd, select.POLLOUT)
        poller.register(stop, select.POLLIN)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.torn = len(view) < size
                raise TransportTimeout(
                    f"local MCP server {self.name!r} stopped reading its stdin",
                    server=self.name)
            events = dict(poller.poll(poll_milliseconds(remaining)))
            if stop in events:
                raise ProcessClosed()
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                pass

    # -- reading -------------------------------------------------------------------------------

    def _pump(self, stream: Any, deliver: Callable[[bytes], None], is_stdout: bool) -> None:
        try:
            for chunk in self._chunks(stream.fileno(), self._baton if is_stdout else None):
                deliver(chunk)
            if not self._pipe_lost:
                deliver(b"")
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("stdio reader of %s failed", self.name)
        finally:
            try:
                if is_stdout:
                    self._stdout_over()
                else:
                    self._stderr_done.set()
            finally:
                with self._lock:
                    self._readers_alive -= 1
                self._release_fds()

    def _stdout_over(self) -> None:
        if self.stopping:
            return  # close() failed the calls already
        try:
            # EOF usually means exit: wait (briefly) for the code that explains it. wait(),
            # not poll(): poll() says None while another thread holds Popen's waitpid lock.
            self.process.wait(EXIT_CODE_GRACE)
        except subprocess.TimeoutExpired:
            pass
        if self.process.poll() is not None:
            self._stderr_done.wait(EXIT_CODE_GRACE)  # the stderr tail explains the exit
        self._on_stdout_end()

    def _chunks(self, fd: int, baton: ReadBaton | None) -> Iterator[bytes]:
        """What ``fd`` delivers until EOF, until close() wakes the readers, or until the
        process exits (then what is left in the pipe, up to EXIT_DRAIN_BYTES). With a
        ``baton`` (stdout), the pipe is read only while holding it: between calls it is left
        to callers reading their own answers (:mod:`._stdio_baton`)."""
        stop, pidfd = self._stop_readers.fileno(), self.pidfd
        poller = select.poll()  # not select(): it fails on fd numbers >= 1024
        for watched in (fd, stop, pidfd):
            if watched >= 0:
                poller.register(watched, select.POLLIN)
        timeout = None if pidfd >= 0 else poll_milliseconds(EXIT_POLL_INTERVAL)
        next_poll = time.monotonic() + EXIT_POLL_INTERVAL
        holding = baton is not None and baton.try_take()
        try:
            while True:
                if baton is not None and not holding:
                    if not baton.reader_takes(lambda: self.stopping):
                        self._pipe_lost = True
                        log.warning("a caller of %s kept reading its stdout past close()",
                                    self.name)
                        return
                    holding = True
                ready = {ready_fd for ready_fd, _ in poller.poll(timeout)}
                if stop in ready:
                    # close() stops the readers once the process is gone: what it wrote before
                    # (an answer to a call in flight) is still read, as at an exit.
                    yield from drain(fd)
                    return
                if fd in ready:
                    chunk = read_chunk(fd)
                    if chunk == b"":
                        return
                    if chunk:
                        yield chunk
                        if baton is not None and not baton.reader_yields():
                            holding = False  # callers read their own answers now
                            continue
                if pidfd >= 0:
                    exited = pidfd in ready
                elif time.monotonic() >= next_poll:
                    exited = self.process.poll() is not None
                    next_poll = time.monotonic() + EXIT_POLL_INTERVAL
                else:
                    exited = False
                if exited:
                    yield from drain(fd)
                    return
        finally:
            if holding and baton is not None:
                baton.reader_release()
