"""The process side of the stdio transport: wake-up pipes, exit watching, the shutdown ladder
and the background reaper.

Why these pieces exist:

- **Wakers.** A reader thread blocks in ``select`` on its pipe *and* on a self-pipe it owns, so
  ``close()`` can stop it and join it *before* any of its fds is closed. Closing an fd under a
  thread that still reads it is a bug with a long tail: the number is reused by whatever the
  program opens next, and the thread then reads someone else's data.
- **Exit watching.** A pipe reaches EOF only when *every* holder closes it; a grandchild in
  its own session may hold the server's stdout for minutes after the server exited. The
  readers therefore also watch the process itself: a pidfd where the kernel has one (readable
  when the process exits), else a poll every :data:`EXIT_POLL_INTERVAL`.
- **The ladder** (close stdin, :data:`STDIN_CLOSE_TIMEOUT`, SIGTERM,
  :data:`TERMINATE_TIMEOUT`, SIGKILL, :data:`KILL_TIMEOUT`, then the group, then the readers)
  is written once, as a generator of waits, and driven either by the caller of ``close()`` or
  by the reaper.
- **The reaper** is one process-wide thread, ``sark_sync-singleton-reaper``, started when a
  server is abandoned (a failed start or restart must return within the caller's deadline,
  while the ladder may take seconds) and ending as soon as it has nothing left to reap.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from ..resilience import forksafety

__all__ = [
    "ENV_ALLOW_LIST", "EXIT_POLL_INTERVAL", "KILL_TIMEOUT", "LADDER_BOUND", "OWN_GROUP",
    "STDIN_CLOSE_TIMEOUT", "TERMINATE_TIMEOUT", "Ladder", "Step", "Waker", "child_environment",
    "open_pidfd", "process_steps", "reaper", "run_ladder", "signal_process",
]

log = logging.getLogger("sark_sync.stdio")

#: Parent environment variables a child inherits unless the caller says otherwise.
ENV_ALLOW_LIST = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG")

#: Grace period for the server to exit after its stdin closes.
STDIN_CLOSE_TIMEOUT = 2.0
#: Grace period after SIGTERM before SIGKILL.
TERMINATE_TIMEOUT = 2.0
#: Longest wait for the kernel to reap a SIGKILLed process, and for its group to empty.
KILL_TIMEOUT = 2.0
#: Without a pidfd, how often a reader checks whether the process exited.
EXIT_POLL_INTERVAL = 0.05
#: How often the reaper (and a closing caller) looks at the process group and the readers.
TICK = 0.01
#: Longest wait for the reader threads to stop once woken (they only leave a select).
READER_JOIN_TIMEOUT = 2.0
#: The whole ladder, end to end: what a caller waiting for an abandoned server may wait.
LADDER_BOUND = STDIN_CLOSE_TIMEOUT + TERMINATE_TIMEOUT + 2 * KILL_TIMEOUT + READER_JOIN_TIMEOUT

#: The child leads its own process group. On Python >= 3.11 without a new session: Linux
#: schedules every session as its own autogroup, and a child in another autogroup measured
#: 15-25 µs slower per round trip (bench_stdio). Older Pythons can only make a new session
#: safely (``preexec_fn`` is not safe with threads), which is as correct, only slower.
OWN_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True})

#: One step of a ladder: wait until this monotonic time, or (when the flag is set) until the
#: process exits, whichever comes first.
Step = tuple[float, bool]
#: The shutdown of one server, as the waits between its rungs (see :func:`process_steps`).
Ladder = Iterator[Step]



def child_environment(env: Mapping[str, str] | None, inherit: bool = False) -> dict[str, str]:
    """The environment of a child: the allow-list (or everything with ``inherit=True``) from
    this process, updated with ``env``."""
    source = os.environ
    base = dict(source) if inherit else {k: source[k] for k in ENV_ALLOW_LIST if k in source}
    base.update(env or {})
    return base

class Waker:
    """A self-pipe: ``set()`` makes ``fileno()`` readable for good. Setting after ``close()`` is
    a no-op, never a write to a number the program may have reused."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self.is_set = False

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with self._lock:
            if self.is_set or self._write < 0:
                return
            self.is_set = True
            try:
                os.write(self._write, b"x")
            except OSError:  # a full pipe is readable already
                pass

    def close(self) -> None:
        with self._lock:
            self._close()

    def close_after_fork(self) -> None:
        """In a forked child: the lock may be held by a parent thread that does not exist here."""
        self._lock = threading.Lock()
        self._close()

    def _close(self) -> None:
        for fd in (self._read, self._write):
            if fd >= 0:
                _close_fd(fd)
        self._read = self._write = -1


def open_pidfd(pid: int) -> int:
    """A pidfd for ``pid`` (readable once it exits), or -1 where the kernel or Python has none."""
    opener: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if opener is None:
        return -1
    try:
        return opener(pid)
    except OSError:  # ENOSYS on old kernels, EPERM under some seccomp filters
        return -1


def signal_process(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to the process and to its process group. Both: a server that left its
    group (setsid, setpgid) is out of reach of the group signal, and its grandchildren are out
    of reach of the process signal. ``send_signal`` does nothing once the process is reaped, so
    a reused pid is never hit."""
    try:
        process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass
    _signal_group(process.pid, signum)
    if signum == signal.SIGTERM:
        # A stopped process (SIGSTOP, a debugger) would keep SIGTERM pending for ever.
        _signal_group(process.pid, signal.SIGCONT)
        try:
            process.send_signal(signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)  # the server leads its own group: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_steps(process: subprocess.Popen[bytes]) -> Ladder:
    """Signal ``process`` up the ladder until it exits, then empty its process group. The
    caller has closed its stdin already."""
    if process.poll() is None:
        yield time.monotonic() + STDIN_CLOSE_TIMEOUT, True
    if process.poll() is None:
        signal_process(process, signal.SIGTERM)
        yield time.monotonic() + TERMINATE_TIMEOUT, True
    if process.poll() is None:
        signal_process(process, signal.SIGKILL)
        yield time.monotonic() + KILL_TIMEOUT, True
    if process.poll() is None:
        log.warning("pid %d survived SIGKILL for %gs", process.pid, KILL_TIMEOUT)
    # Grandchildren left in the group would hold our pipes open: end them too.
    _signal_group(process.pid, signal.SIGKILL)
    end = time.monotonic() + KILL_TIMEOUT
    while group_alive(process.pid):
        if time.monotonic() >= end:
            log.warning("process group %d still has members after SIGKILL", process.pid)
            return
        yield time.monotonic() + TICK, False


def run_ladder(ladder: Ladder, process: subprocess.Popen[bytes]) -> None:
    """Drive ``ladder`` in the calling thread."""
    for until, on_exit in ladder:
        remaining = until - time.monotonic()
        if remaining <= 0:
            continue
        if on_exit:
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(remaining)


class _Job:
    __slots__ = ("done", "ladder", "process", "step")

    def __init__(self, ladder: Ladder, process: subprocess.Popen[bytes],
                 done: threading.Event) -> None:
        self.ladder, self.process, self.done = ladder, process, done
        self.step: Step = (0.0, False)  # due at once: the first step runs the first rung


class _Reaper:
    """Drives the ladders of abandoned servers, all at once, on one thread that exists only
    while there is something to reap."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: list[_Job] = []
        self._thread: threading.Thread | None = None

    def abandon(self, ladder: Ladder, process: subprocess.Popen[bytes],
                done: threading.Event) -> None:
        """Run ``ladder`` in the background and set ``done`` when it is over."""
        with self._cond:
            self._jobs.append(_Job(ladder, process, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="sark_sync-singleton-reaper")
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    return
                jobs = list(self._jobs)
            finished = [job for job in jobs if self._advance(job)]
            with self._cond:
                for job in finished:
                    self._jobs.remove(job)
                if self._jobs:
                    now = time.monotonic()
                    soonest = min(job.step[0] for job in self._jobs) - now
                    self._cond.wait(max(0.0, min(soonest, TICK)))
            for job in finished:
                job.done.set()

    @staticmethod
    def _advance(job: _Job) -> bool:
        """Take the job's next step if it is due; True when the ladder is over."""
        until, on_exit = job.step
        if time.monotonic() < until and not (on_exit and job.process.poll() is not None):
            return False
        try:
            job.step = next(job.ladder)
        except StopIteration:
            return True
        except Exception:  # a bug must not stop the reaping of the others
            log.exception("shutting down pid %d failed", job.process.pid)
            return True
        return False

    def wait_idle(self, timeout: float) -> None:
        """At interpreter exit: let the ladders under way finish (bounded), so no server is
        left running when the daemon thread is stopped."""
        with self._cond:
            jobs = list(self._jobs)
        end = time.monotonic() + timeout
        for job in jobs:
            job.done.wait(max(0.0, end - time.monotonic()))

    def _after_fork_in_child(self) -> None:
        # The jobs are the parent's processes: never signal or wait for them here.
        self._cond = threading.Condition(threading.Lock())
        self._jobs = []
        self._thread = None


reaper = _Reaper()
forksafety.register(reaper)
atexit.register(reaper.wait_idle, LADDER_BOUND)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
