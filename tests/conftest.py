"""Fixtures shared by the whole suite, and the two guards that the test layout promises.

- ``tests/unit/``: no sockets and no subprocesses. ``_unit_isolation`` (autouse there) makes
  ``socket.socket.connect``/``connect_ex``, ``socket.create_connection``, ``subprocess.Popen``,
  ``os.fork``, ``os.posix_spawn[p]`` and ``os.system`` raise ``UnitIsolationError``, and fails the
  test even if the code under test swallowed that error. ``responses`` mocks requests at the
  adapter, before any socket, so it keeps working.
- ``tests/integration/``: ``no_leaks`` (autouse there; any test may also request it). It
  snapshots the live threads, the open file descriptors and the child processes before the
  test and, after the test and its function-scoped fixtures are torn down, polls (up to
  ``LEAK_DEADLINE`` seconds, ``POLL_INTERVAL`` between polls) until they are back to the
  baseline; otherwise it fails the test with the list of what leaked and kills leaked children.

  Fixtures of a wider scope (module, session) are set up before it, so what they own is part
  of the baseline and is not reported. Unreachable objects are garbage-collected while
  polling: sark_sync promises to release resources on garbage collection too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import importlib.util
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import pytest

pytest_plugins = ["realcomp.fixtures"]  # tools_python, mcp_sdk_server_command

TESTS_DIR = Path(__file__).resolve().parent
UNIT_DIR = TESTS_DIR / "unit"
INTEGRATION_DIR = TESTS_DIR / "integration"

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
_accepted_singletons: dict[str, threading.Thread] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before any conftest or test imports sark_sync: a package installed from a wheel must
    ship every module of the checkout. Otherwise the whole run would end in confusing
    ModuleNotFoundErrors (a folder without ``__init__.py`` is left out by ``packages =
    find:``), so stop at once and say why."""
    spec = importlib.util.find_spec("sark_sync")
    if spec is None or spec.origin is None:
        pytest.exit("sark_sync is not installed: run the tests through tox", returncode=1)
    source, installed = TESTS_DIR.parent / "sark_sync", Path(spec.origin).resolve().parent
    if not source.is_dir() or installed == source.resolve():
        return  # an editable install, or tests run outside the checkout
    missing = sorted(
        p.relative_to(source).as_posix()
        for p in source.rglob("*.py")
        if not (installed / p.relative_to(source)).exists()
    )
    if missing:
        no_init = sorted(
            {
                str(Path(m).parent)
                for m in missing
                if not (source / m).parent.joinpath("__init__.py").exists()
            }
        )
        hint = f"; these folders lack an __init__.py: {no_init}" if no_init else ""
        pytest.exit(
            f"the installed sark_sync ({installed}) lacks modules of the checkout: {missing}{hint}",
            returncode=1,
        )


def _under(path: Path, directory: Path) -> bool:
    return directory == path or directory in path.parents


# ---------------------------------------------------------------------------------------------
# Leak detection (integration tests)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
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


def _children() -> dict[tuple[int, str], str]:
    """Child processes of this process: (pid, start time) -> description."""
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
        if len(fields) < 20 or int(fields[1]) != me:
            continue
        state, starttime = fields[0], fields[19]
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            raw = b""
        cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or f"[{comm}]"
        zombie = " (zombie: never waited for)" if state == "Z" else ""
        found[(int(entry), starttime)] = f"pid {entry} state {state}{zombie}: {cmdline}"
    return found


def _snapshot() -> _Snapshot:
    return _Snapshot(threads=_live_threads(), fds=_open_fds(), children=_children())


def _singleton_pattern(thread: threading.Thread) -> str | None:
    for pattern in ALLOWED_SINGLETON_THREADS:
        if fnmatch.fnmatchcase(thread.name, pattern):
            return pattern
    return None


def _find_leaks(before: _Snapshot) -> tuple[list[str], dict[str, threading.Thread]]:
    """What is live now and was not before; and the singletons this test may introduce."""
    problems: list[str] = []
    new_singletons: dict[str, threading.Thread] = {}

    for thread in sorted(_live_threads() - before.threads, key=lambda t: t.name):
        pattern = _singleton_pattern(thread)
        if pattern is not None and pattern not in new_singletons:
            previous = _accepted_singletons.get(pattern)
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


def _kill_leaked_children(before: _Snapshot) -> None:
    """Do not let a leaked child outlive the test run (or hang CI)."""
    for pid, _ in set(_children()) - set(before.children):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _wait_for_baseline(before: _Snapshot) -> tuple[list[str], dict[str, threading.Thread]]:
    deadline = time.monotonic() + LEAK_DEADLINE
    next_gc = 0.0
    while True:
        now = time.monotonic()
        if now >= next_gc:
            gc.collect()
            next_gc = now + GC_INTERVAL
        problems, singletons = _find_leaks(before)
        if not problems or time.monotonic() >= deadline:
            return problems, singletons
        time.sleep(POLL_INTERVAL)


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves threads, file descriptors or child processes behind."""
    before = _snapshot()
    yield
    problems, singletons = _wait_for_baseline(before)
    _accepted_singletons.update(singletons)
    if problems:
        _kill_leaked_children(before)
        listing = "\n  ".join(problems)
        pytest.fail(
            f"{request.node.nodeid} leaked (still there {LEAK_DEADLINE:g}s after the test):"
            f"\n  {listing}",
            pytrace=False,
        )


# ---------------------------------------------------------------------------------------------
# Isolation (unit tests)
# ---------------------------------------------------------------------------------------------


class UnitIsolationError(Exception):
    """A unit test tried to open a socket or start a process. Not an OSError on purpose, so
    that networking code does not mistake it for a connection failure and retry it."""


@pytest.fixture
def _forbid_sockets_and_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    violations: list[str] = []

    def refuse(what: str, detail: object) -> NoReturn:
        message = (
            f"unit tests must not use {what} ({detail!r}): mock it (e.g. with `responses`) "
            "or move the test to tests/integration/"
        )
        violations.append(message)
        raise UnitIsolationError(message)

    def connect(what: str) -> Callable[..., Any]:
        def refuse_connect(sock: socket.socket, address: object, *args: Any) -> Any:
            sock.close()  # the caller expects an OSError to close it; this is not one
            refuse(what, address)

        return refuse_connect

    def create_connection(address: object, *args: Any, **kwargs: Any) -> Any:
        refuse("socket.create_connection", address)

    def execute_child(popen: subprocess.Popen[Any], args: object, *rest: Any) -> Any:
        refuse("subprocess.Popen", args)

    def process(what: str) -> Callable[..., Any]:
        def refuse_process(*args: Any, **kwargs: Any) -> Any:
            refuse(what, args[:1])

        return refuse_process

    monkeypatch.setattr(socket.socket, "connect", connect("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", connect("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, process(f"os.{name}"))
    yield violations


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item (``item.sark_reports['call']``)."""
    outcome = yield
    report = outcome.get_result()
    item.__dict__.setdefault("sark_reports", {})[report.when] = report


@pytest.fixture(autouse=True)
def _directory_guards(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply the guard of the directory the test lives in."""
    path = Path(str(request.node.fspath)).resolve()
    if _under(path, UNIT_DIR):
        violations: list[str] = request.getfixturevalue("_forbid_sockets_and_processes")
        yield
        call = request.node.__dict__.get("sark_reports", {}).get("call")
        if violations and (call is None or not call.failed):
            # The code under test swallowed the error: fail anyway (once, not twice).
            pytest.fail("\n".join(violations), pytrace=False)
    elif _under(path, INTEGRATION_DIR):
        request.getfixturevalue("no_leaks")
        yield
    else:
        yield
