"""Leak detection for the integration tests: threads, file descriptors, child processes.

Used by the ``no_leaks`` fixture of tests/conftest.py, and importable by tests that check the
guard itself (``import leak_guard``; tests/ is on sys.path). A snapshot holds the live threads,
the open file descriptors and the child processes, where "child" also covers every member of
a process group or session led by a process spawned with subprocess during the session
(:func:`record_spawns`): a grandchild orphaned by a stdio server is reparented to init, out of
sight of a children-only check.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LEAK_DEADLINE", "Snapshot", "find_leaks", "kill_leaked_children", "record_spawns",
           "snapshot", "wait_for_baseline"]

#: How long threads, fds and children may take to go away after a test.
LEAK_DEADLINE = 3.0
#: Pause between two polls (never a longer bare sleep).
POLL_INTERVAL = 0.01
#: How often unreachable objects are collected while polling.
GC_INTERVAL = 0.25

#: Process-wide singleton threads, created lazily once and kept for the life of the
#: interpreter, which may therefore outlive the test that first needed them. Patterns are
#: fnmatch patterns on ``Thread.name``. Each pattern is tolerated for ONE live thread per
#: process: the first one seen is remembered, and a second live thread matching the same
#: pattern is a leak (a "singleton" created per client or per call is not a singleton).
#: Convention: sark_sync names such threads ``sark_sync-singleton-<purpose>``.
ALLOWED_SINGLETON_THREADS: tuple[str, ...] = ("sark_sync-singleton-*",)

#: fd targets (fnmatch on ``os.readlink('/proc/self/fd/N')``) that may outlive a test.
#: Empty on purpose: every fd a test opens must be closed by the time the test is over.
ALLOWED_FD_TARGETS: tuple[str, ...] = ()

# pattern -> the singleton thread accepted for it (kept for the whole session).
accepted_singletons: dict[str, threading.Thread] = {}

@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[threading.Thread]
    fds: dict[int, str]
    children: dict[tuple[int, str], str] = field(default_factory=dict)


def _live_threads() -> frozenset[threading.Thread]:
    # Threads not started by the threading module (_DummyThread) can be neither joined nor
    # reliably told dead on every version: they are ignored.
    dummy = getattr(threading, "_DummyThread", ())
    return frozenset(t for t in threading.enumerate() if t.is_alive() and not isinstance(t, dummy))


def _open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the directory fd of listdir itself, closed by now
    return fds


# Every process this test session spawned with subprocess (recorded by pytest_configure):
# the process groups and sessions they lead are watched too, since a grandchild orphaned by a
# stdio server is reparented to init, out of sight of a children-only check.
_spawned: set[int] = set()


def record_spawns() -> None:
    """Record the pid of every process spawned with subprocess from now on."""
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def recording(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _spawned.add(self.pid)

    subprocess.Popen._execute_child = recording  # type: ignore[attr-defined]


def _children() -> dict[tuple[int, str], str]:
    """Child processes of this process, and members of the process groups and sessions led
    by a process it spawned: (pid, start time) -> description."""
    me = os.getpid()
    found: dict[tuple[int, str], str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ... starttime": comm may hold spaces and parentheses.
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 20:
            continue
        ppid, pgid, sid = int(fields[1]), int(fields[2]), int(fields[3])
        grouped = int(entry) != me and (pgid in _spawned or sid in _spawned)
        if ppid != me and not grouped:
            continue
        state, starttime = fields[0], fields[19]
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            raw = b""
        cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or f"[{comm}]"
        zombie = " (zombie: never waited for)" if state == "Z" else ""
        whose = "" if ppid == me else f" (in the process group or session of spawned pid {pgid})"
        found[(int(entry), starttime)] = f"pid {entry} state {state}{zombie}{whose}: {cmdline}"
    return found


def snapshot() -> Snapshot:
    return Snapshot(threads=_live_threads(), fds=_open_fds(), children=_children())


def _singleton_pattern(thread: threading.Thread) -> str | None:
    for pattern in ALLOWED_SINGLETON_THREADS:
        if fnmatch.fnmatchcase(thread.name, pattern):
            return pattern
    return None


def find_leaks(before: Snapshot) -> tuple[list[str], dict[str, threading.Thread]]:
    """What is live now and was not before; and the singletons this test may introduce."""
    problems: list[str] = []
    new_singletons: dict[str, threading.Thread] = {}

    for thread in sorted(_live_threads() - before.threads, key=lambda t: t.name):
        pattern = _singleton_pattern(thread)
        if pattern is not None and pattern not in new_singletons:
            previous = accepted_singletons.get(pattern)
            if previous is None or previous is thread or not previous.is_alive():
                new_singletons[pattern] = thread
                continue
        kind = "daemon thread" if thread.daemon else "thread"
        extra = f" (a second {pattern!r} singleton)" if pattern else ""
        problems.append(f"{kind} {thread.name!r} ident={thread.ident}{extra}")

    for fd, target in sorted(_open_fds().items()):
        if before.fds.get(fd) == target:
            continue
        if any(fnmatch.fnmatchcase(target, p) for p in ALLOWED_FD_TARGETS):
            continue
        problems.append(f"fd {fd} -> {target}")

    for key, description in sorted(_children().items()):
        if key not in before.children:
            problems.append(f"child process {description}")

    return problems, new_singletons


def kill_leaked_children(before: Snapshot) -> None:
    """Do not let a leaked child outlive the test run (or hang CI)."""
    for pid, _ in set(_children()) - set(before.children):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def wait_for_baseline(before: Snapshot) -> tuple[list[str], dict[str, threading.Thread]]:
    deadline = time.monotonic() + LEAK_DEADLINE
    pause = threading.Event()  # never set: each wait lasts its timeout
    next_gc = 0.0
    while True:
        now = time.monotonic()
        if now >= next_gc:
            gc.collect()
            next_gc = now + GC_INTERVAL
        problems, singletons = find_leaks(before)
        remaining = deadline - time.monotonic()
        if not problems or remaining <= 0:
            return problems, singletons
        pause.wait(min(POLL_INTERVAL, remaining))
