"""Fixtures shared by the whole suite, and the two guards that the test layout promises.

- ``tests/unit/``: no sockets and no subprocesses. ``_unit_isolation`` (autouse there) makes
  ``socket.socket.connect``/``connect_ex``, ``socket.create_connection``, ``subprocess.Popen``,
  ``os.fork``, ``os.posix_spawn[p]`` and ``os.system`` raise ``UnitIsolationError``, and fails the
  test even if the code under test swallowed that error. ``responses`` mocks requests at the
  adapter, before any socket, so it keeps working.
- ``tests/integration/``: ``no_leaks`` (autouse there; any test may also request it). It
  snapshots the live threads, the open file descriptors and the child processes (with every
  member of a process group or session led by a process the tests spawned) before the test
  and, after the test and its function-scoped fixtures are torn down, polls (up to
  ``LEAK_DEADLINE`` seconds, ``POLL_INTERVAL`` between polls) until they are back to the
  baseline; otherwise it fails the test with the list of what leaked and kills leaked children.

  Fixtures of a wider scope (module, session) are set up before it, so what they own is part
  of the baseline and is not reported. Unreachable objects are garbage-collected while
  polling: sark_sync promises to release resources on garbage collection too.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, NoReturn

import hypothesis
import leak_guard
import pytest

# tools_python, mcp_sdk_server_command ...; mcp_client_peer and the fixtures of its server;
# pytester runs inner pytest sessions (the tests of sark_sync's own pytest plugin).
pytest_plugins = ["realcomp.fixtures", "realcomp.client_fixtures", "realcomp.redis_server",
                  "pytester"]

TESTS_DIR = Path(__file__).resolve().parent
UNIT_DIR = TESTS_DIR / "unit"
INTEGRATION_DIR = TESTS_DIR / "integration"



def pytest_configure(config: pytest.Config) -> None:
    leak_guard.record_spawns()
    # The fuzz tests explore new inputs on a developer's machine; CI replays the same ones
    # every run (derandomized), so a red CI is a regression, never a coin toss. A bug a
    # developer's run finds is kept in .hypothesis/ and replayed there.
    hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
    hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "default")


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
@pytest.fixture
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves threads, file descriptors or child processes behind."""
    before = leak_guard.snapshot()
    yield
    problems, singletons = leak_guard.wait_for_baseline(before)
    leak_guard.accepted_singletons.update(singletons)
    if problems:
        leak_guard.kill_leaked_children(before)
        listing = "\n  ".join(problems)
        pytest.fail(
            f"{request.node.nodeid} leaked (still there {leak_guard.LEAK_DEADLINE:g}s after the "
            f"test):\n  {listing}",
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
