"""Run the real OPA engine as a child process for benchmarks.

The engine is ``tests/realcomp/opa_server.py`` (OPA compiled from Go, loaded through
``opa-golib-python-bindings``, behind an OPA Data API on 127.0.0.1), run with the tools venv's
interpreter: it is never installed next to the package measured. :func:`tools_python` finds
that interpreter (an explicit path, or the venv made or reused by ``realcomp.tools_venv``);
:func:`opa_process` starts one engine with the shipped ``gateway.rego`` loaded, yields it once
it listens, and stops it by PID. Its log (one line per request) goes to a file, so that the
decisions it was asked for can be counted after a run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _gateway_process import url_child

TESTS = Path(__file__).resolve().parents[1] / "tests"
OPA_SERVER = TESTS / "realcomp" / "opa_server.py"
#: What the engine's log holds for each decision asked at the shipped policy's default path.
DECISION_REQUEST = '"POST /v1/data/sark/gateway/decision '
#: Dropped from the child's environment: the tools interpreter must not see our paths.
SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")


class ToolsUnavailable(RuntimeError):
    """The tools venv (and so the real OPA engine) cannot be used; the message says why."""


def tools_python(explicit: str | None = None) -> Path:
    """The tools venv's interpreter: ``explicit`` if given, else the venv that
    ``tests/realcomp/tools_venv.py`` makes or reuses. Raises :class:`ToolsUnavailable`."""
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise ToolsUnavailable(f"{explicit} is not an executable interpreter")
        return Path(explicit)
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    try:
        from realcomp import tools_venv
    except ImportError as exc:
        raise ToolsUnavailable(f"cannot import realcomp.tools_venv from {TESTS}: {exc}") from exc
    try:
        python: Path = tools_venv.tools_python()
    except tools_venv.ToolsVenvError as exc:
        raise ToolsUnavailable(str(exc)) from exc
    return python


def add_tools_python_option(parser: argparse.ArgumentParser) -> None:
    """``--tools-python PATH``, the option of every benchmark that uses the tools venv."""
    parser.add_argument("--tools-python", metavar="PATH",
                        help="the tools venv's python (default: make or reuse .tools-venv)")


def tools_python_or_exit(explicit: str | None, unusable: str) -> Path:
    """:func:`tools_python`; if the venv is not usable, ``unusable`` and the cause on stderr,
    and exit status 2: a benchmark that needs the venv stops before it measures anything."""
    try:
        return tools_python(explicit)
    except ToolsUnavailable as exc:
        print(f"{unusable}{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def shipped_policy() -> Path:
    """``gateway.rego`` of the sark_sync that is imported (the wheel's copy under tox)."""
    spec = importlib.util.find_spec("sark_sync")
    if spec is None or spec.origin is None:
        raise RuntimeError("sark_sync is not importable")
    return Path(spec.origin).resolve().parent / "policies" / "gateway.rego"


@dataclass(frozen=True)
class OpaProcess:
    """A running engine: its base URL and the file its request log goes to."""

    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def decisions(self) -> int:
        """Decisions asked so far (the engine's stderr is line-buffered: a line is in the
        file before the answer it logs is sent)."""
        return self.log().count(DECISION_REQUEST)


@contextmanager
def opa_process(python: Path, log_path: Path) -> Iterator[OpaProcess]:
    """Start the engine with the shipped policy, its log to ``log_path``; yield it; stop it."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    argv = [str(python), str(OPA_SERVER), "--policy", str(shipped_policy())]
    with open(log_path, "wb") as log, url_child(
            argv, "the OPA engine", stderr=log, env=env,
            diagnose=lambda: "; its log:\n" + log_path.read_text(
                encoding="utf-8", errors="replace")[-2000:]) as url:
        yield OpaProcess(url, log_path)
