"""The tools venv: real third-party components that the tests run as child processes.

The official MCP SDK server and the OPA engine do not run on every Python that sark_sync
supports, and must never be installed into the tox envs next to the package under test. So
they live in one venv of their own, ``<repo>/.tools-venv``, made with pyenv's CPython 3.11 and
filled from two pinned files beside this file, in two pip steps:

1. ``requirements-tools.txt``: a plain ``pip install -r`` (dependencies resolved as usual);
2. ``requirements-tools-nodeps.txt``: ``pip install --no-deps --ignore-requires-python -r``,
   for packages whose metadata excludes Python 3.11 although they run on it (the OPA engine,
   ``opa-golib-python-bindings``); ``--no-deps`` keeps the flag to the packages named there.

A last step imports every component (and loads the OPA engine's Go library), so a venv that
cannot run them fails its build, not a test later. Every tox env (py39 ... py313) spawns the
components with that venv's own interpreter.

Contract:

- ``ensure()`` creates the venv, or reuses it when its stamp file records the SHA-256 of both
  requirements files, the build's format and the interpreter version that this checkout and
  this machine would use now; otherwise it deletes the venv and builds it again. Quiet when
  up to date, it prints its progress (and pip's) on stderr when building.
- Concurrency: every check and every build happens under an exclusive ``fcntl.flock`` on
  ``<repo>/.tools-venv.lock``, and the stamp is written last (atomically): parallel tox envs
  never build it twice, and nobody uses a half-built venv (a build that died leaves no stamp,
  so the next ``ensure()`` starts over).
- The interpreter is found like ``.ci/run`` finds it: ``$SARK_PYENV_ROOT``, else ``pyenv
  root``, else ``$PYENV_ROOT`` or ``~/.pyenv``; the highest plain ``3.11.N`` in its
  ``versions/`` folder. None there is an error, never a skip.
- Failures raise ``ToolsVenvError`` with a message that says how to fix them.

Run as a script to build it up front (``.ci/run`` does, before tox)::

    python3.11 tests/realcomp/tools_venv.py ensure   # build or reuse; one line of summary
    python3.11 tests/realcomp/tools_venv.py path     # print the venv's python
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: Where the venv lives (listed in .gitignore).
VENV_DIR = REPO / ".tools-venv"
#: Held with flock during every check and build; outside the venv so that deleting the venv
#: never deletes the lock (listed in .gitignore).
LOCK_FILE = REPO / ".tools-venv.lock"
#: The pinned requirements; their hash is part of the stamp.
REQUIREMENTS = HERE / "requirements-tools.txt"
#: Pinned packages installed with ``--no-deps --ignore-requires-python`` after REQUIREMENTS;
#: their hash is part of the stamp too.
REQUIREMENTS_NODEPS = HERE / "requirements-tools-nodeps.txt"
#: Written last by a successful build: what the venv was built from.
STAMP_FILE = VENV_DIR / "sark-tools-venv.json"
#: Bump to rebuild every existing venv when the build itself changes.
STAMP_FORMAT = 2
#: The Python minor version of the tools venv.
TOOLS_MINOR = "3.11"
#: A backstop for one build step (pip over a slow network), so that a hang fails loudly.
STEP_TIMEOUT = 900.0
#: Lines of a failed step's output quoted in the error.
ERROR_TAIL_LINES = 40
#: The build's last step: every component imports, and the OPA engine's Go library loads.
SMOKE_CHECK = (
    "import mcp.server.mcpserver, sse_starlette, uvicorn; "
    "from opa_bindings import OpaEngine; OpaEngine().close()"
)
#: How to build it by hand, quoted in every error.
ENSURE_HINT = f"python{TOOLS_MINOR} tests/realcomp/tools_venv.py ensure"

#: Variables of the caller (a tox env, a venv) that must not leak into the venv's build.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


class ToolsVenvError(RuntimeError):
    """The tools venv cannot be found, built or used; the message says what to do."""


@dataclass(frozen=True)
class EnsureResult:
    """What ``ensure()`` did: the venv's python, whether it was (re)built and why, and how
    long it took."""

    python: Path
    built: bool
    reason: str
    seconds: float
    stamp: Mapping[str, Any]


def pyenv_root() -> Path:
    """The pyenv root, looked up in the order ``.ci/run`` uses."""
    explicit = os.environ.get("SARK_PYENV_ROOT")
    if explicit:
        return Path(explicit)
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        try:
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return Path(out)
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def find_interpreter() -> tuple[Path, str]:
    """The highest plain CPython ``3.11.N`` of pyenv: (path of ``python3.11``, ``"3.11.N"``).

    Raises ``ToolsVenvError`` if there is none.
    """
    versions = pyenv_root() / "versions"
    pattern = re.compile(rf"^{re.escape(TOOLS_MINOR)}\.(\d+)$")
    found: list[tuple[int, str, Path]] = []
    if versions.is_dir():
        for entry in versions.iterdir():
            match = pattern.match(entry.name)
            python = entry / "bin" / f"python{TOOLS_MINOR}"
            if match and os.access(python, os.X_OK):
                found.append((int(match.group(1)), entry.name, python))
    if not found:
        raise ToolsVenvError(
            f"no CPython {TOOLS_MINOR} for the tools venv: looked for "
            f"{versions}/{TOOLS_MINOR}.<N>/bin/python{TOOLS_MINOR}. Install it "
            f"(`pyenv install {TOOLS_MINOR}`), then build the venv: {ENSURE_HINT}"
        )
    _, version, python = max(found)
    return python, version


def venv_python() -> Path:
    """The venv's interpreter (not resolved: the symlink is what makes it the venv's)."""
    return VENV_DIR / "bin" / "python"


def _wanted_stamp(interpreter: Path, version: str) -> dict[str, Any]:
    return {
        "format": STAMP_FORMAT,
        "python_version": version,
        "python": str(interpreter),
        "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
        "requirements_nodeps_sha256": hashlib.sha256(REQUIREMENTS_NODEPS.read_bytes()).hexdigest(),
    }


def _read_stamp() -> dict[str, Any] | None:
    try:
        stamp = json.loads(STAMP_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _stale_reason(wanted: Mapping[str, Any]) -> str | None:
    """Why the venv must be (re)built, or None if it is up to date."""
    stamp = _read_stamp()
    if stamp is None:
        return "no venv" if not VENV_DIR.exists() else "no stamp (never finished building)"
    for key, value in wanted.items():
        if stamp.get(key) != value:
            return f"{key} changed: {stamp.get(key)!r} -> {value!r}"
    if not os.access(venv_python(), os.X_OK):
        return f"{venv_python()} is missing"
    return None


@contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(f"tools-venv: {message}", file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(command: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Run one build step, echoing its output to stderr; raise with its tail if it fails."""
    argv = [os.fspath(c) for c in command]
    _say("$ " + " ".join(argv))
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            cwd=REPO,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ToolsVenvError(f"could not run {argv[0]}: {exc}. Then: {ENSURE_HINT}") from exc
    # A step that hangs without output would block the read below: a timer kills it.
    watchdog = threading.Timer(STEP_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        with proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write("    " + line)
                tail.append(line.rstrip("\n"))
                lines.append(line.rstrip("\n"))
            rc = proc.wait()
    finally:
        watchdog.cancel()
    sys.stderr.flush()
    if rc != 0:
        quoted = "\n    ".join(tail)
        raise ToolsVenvError(
            f"building the tools venv {VENV_DIR} failed: `{' '.join(argv)}` exited {rc} "
            f"(step limit {STEP_TIMEOUT:g}s). Last lines:\n    {quoted}\n"
            f"Fix the cause, then build it again: {ENSURE_HINT}"
        )
    return lines


def _build(interpreter: Path, wanted: Mapping[str, Any]) -> dict[str, Any]:
    STAMP_FILE.unlink(missing_ok=True)
    shutil.rmtree(VENV_DIR, ignore_errors=True)
    if VENV_DIR.exists():
        raise ToolsVenvError(f"could not delete the old tools venv {VENV_DIR}: delete it by hand")
    _run([interpreter, "-m", "venv", VENV_DIR])
    python = venv_python()
    _run([python, "-m", "pip", "install", "--progress-bar", "off", "-r", REQUIREMENTS])
    _run([python, "-m", "pip", "install", "--progress-bar", "off", "--no-deps",
          "--ignore-requires-python", "-r", REQUIREMENTS_NODEPS])
    _run([python, "-c", SMOKE_CHECK])
    frozen = _run([python, "-m", "pip", "freeze", "--all"])
    stamp = dict(wanted, installed=sorted(line for line in frozen if "==" in line))
    partial = STAMP_FILE.with_suffix(".tmp")
    partial.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, STAMP_FILE)
    return stamp


def ensure() -> EnsureResult:
    """Create or reuse the tools venv (see the module docstring); return what was done.

    Blocks while another process holds the lock (it is building the venv).
    Raises ``ToolsVenvError`` if no CPython 3.11 is found or the build fails.
    """
    start = time.monotonic()
    interpreter, version = find_interpreter()
    wanted = _wanted_stamp(interpreter, version)
    with _locked():
        reason = _stale_reason(wanted)
        if reason is None:
            stamp = _read_stamp() or {}
        else:
            _say(f"building {VENV_DIR} with Python {version} ({reason})")
            stamp = _build(interpreter, wanted)
            _say(f"built {VENV_DIR} in {time.monotonic() - start:.1f}s")
    return EnsureResult(
        python=venv_python(),
        built=reason is not None,
        reason=reason or "up to date",
        seconds=time.monotonic() - start,
        stamp=stamp,
    )


def tools_python() -> Path:
    """Ensure the tools venv, then return its python (``<repo>/.tools-venv/bin/python``)."""
    return ensure().python


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("ensure", "path"))
    args = parser.parse_args(argv)
    try:
        result = ensure()
    except ToolsVenvError as exc:
        print(f"tools-venv: ERROR: {exc}", file=sys.stderr)
        return 1
    if args.command == "path":
        print(result.python)
        return 0
    what = "built" if result.built else "reused (up to date)"
    direct = _direct()
    installed = result.stamp.get("installed", ())
    pins = ", ".join(line for line in installed if _normalize(line.split("==")[0]) in direct)
    print(
        f"tools-venv: {what}: {result.python} (Python {result.stamp.get('python_version')}; "
        f"{pins or 'no requirements'}) in {result.seconds:.1f}s"
    )
    return 0


def _direct() -> set[str]:
    """The names of the requirements listed in both requirements files (for the summary)."""
    names = set()
    for path in (REQUIREMENTS, REQUIREMENTS_NODEPS):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if match and not line.startswith("-"):
                names.add(_normalize(match.group(1)))
    return names


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


if __name__ == "__main__":
    sys.exit(main())
