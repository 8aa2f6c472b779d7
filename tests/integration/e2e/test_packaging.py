"""The installed distribution: version, typing marker, package data, entry point, and the
promise that ``import sark_sync`` pulls in nothing but the stdlib and the runtime deps.

These live under integration/ because the import check runs a fresh interpreter.
"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

# sark_sync is imported inside the tests, not here: a broken wheel (a module missing from it)
# must fail test_wheel_ships_every_module with a precise message, not the whole collection.

REPO = Path(__file__).resolve().parents[3]
DIST = "sark-sync"

#: Top-level modules that ``import sark_sync`` may bring in besides the stdlib: the four
#: runtime dependencies and what they import themselves.
ALLOWED_THIRD_PARTY = frozenset(
    {
        "sark_sync",
        "requests",
        "urllib3",
        "sseclient",
        "circuitbreaker",
        # requests' own dependencies
        "charset_normalizer",
        "chardet",
        "idna",
        "certifi",
    }
)
#: Runtime support modules that compiled dependencies (charset_normalizer is built with
#: Cython or mypyc) register in sys.modules under generated names.
COMPILED_RUNTIME_PATTERNS = ("_cython_*", "cython_runtime", "*__mypyc")

# Run in a fresh interpreter, from an empty directory (so the installed package is imported,
# never a checkout): the modules loaded by startup (site, .pth hooks) are the baseline.
_PROBE = textwrap.dedent(
    """
    import json, sys
    before = set(sys.modules)
    import sark_sync
    new = sorted(set(sys.modules) - before)
    files = {}
    for name in new:
        top = name.partition(".")[0]
        module = sys.modules.get(top)
        files[top] = getattr(module, "__file__", None)
    print(json.dumps({"new": new, "files": files, "sark_sync": sark_sync.__file__}))
    """
)


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    assert parser.read(REPO / "setup.cfg"), "setup.cfg not found next to tests/"
    return parser


def _is_stdlib_by_path(file: str | None) -> bool:
    """The 3.9 fallback: a module is stdlib if it lives in the stdlib folders, outside
    site-packages."""
    if file is None:
        return False
    paths = sysconfig.get_paths()
    stdlib_dirs = {os.path.realpath(paths["stdlib"]), os.path.realpath(paths["platstdlib"])}
    real = os.path.realpath(file)
    parts = Path(real).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return any(real.startswith(d + os.sep) for d in stdlib_dirs)


def _is_stdlib(name: str, file: str | None) -> bool:
    if name in sys.builtin_module_names:
        return True
    names = getattr(sys, "stdlib_module_names", None)  # 3.10+
    if names is not None:
        return name in names
    return _is_stdlib_by_path(file)


def _installed_dir() -> Path:
    """The installed package's folder, found without executing sark_sync/__init__.py."""
    spec = importlib.util.find_spec("sark_sync")
    assert spec is not None and spec.origin is not None, "sark_sync is not installed"
    return Path(spec.origin).resolve().parent


def test_wheel_ships_every_module() -> None:
    source = REPO / "sark_sync"
    installed = _installed_dir()
    # Against an editable install both sides are the checkout; under tox, the built wheel.
    wanted = {p.relative_to(source).as_posix() for p in source.rglob("*.py")}
    shipped = {p.relative_to(installed).as_posix() for p in installed.rglob("*.py")}
    missing = sorted(wanted - shipped)
    no_init = sorted(
        {
            str(Path(m).parent)
            for m in missing
            if not (source / Path(m).parent / "__init__.py").exists()
        }
    )
    assert not missing, f"modules of the checkout missing from the installed package: {missing}" + (
        f"; these folders have no __init__.py: {no_init}" if no_init else ""
    )


def test_version_is_single_sourced() -> None:
    import sark_sync
    from sark_sync.__version__ import __version__

    # The leaf module, read statically by setuptools: nothing else need import to learn it.
    version_spec = _setup_cfg()["metadata"]["version"].strip()
    assert version_spec == "attr: sark_sync.__version__.__version__"
    assert isinstance(sark_sync.__version__, str) and sark_sync.__version__ == __version__
    leaf = ast.parse((REPO / "sark_sync" / "__version__.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(leaf) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert metadata.version(DIST) == sark_sync.__version__


def test_tests_run_against_the_installed_package() -> None:
    package_dir = _installed_dir()
    if os.environ.get("TOX_ENV_DIR"):
        # tox builds a wheel and installs it (package = wheel): the checkout must not shadow it.
        assert package_dir != REPO / "sark_sync", "sark_sync was imported from the checkout"
        assert "site-packages" in package_dir.parts, package_dir


def test_py_typed_and_policies_are_installed() -> None:
    package_dir = _installed_dir()
    assert (package_dir / "py.typed").is_file()
    shipped = sorted(p.name for p in (REPO / "sark_sync" / "policies").glob("*.rego"))
    installed = sorted(p.name for p in (package_dir / "policies").glob("*.rego"))
    assert installed == shipped


def test_distribution_metadata() -> None:
    meta = metadata.metadata(DIST)
    assert meta["Name"] == DIST
    requires = [r.split(";")[0].replace(" ", "") for r in metadata.requires(DIST) or []]
    for requirement in (
        "requests>=2.31",
        "urllib3>=2.3",
        "sseclient-py>=1.8",
        "circuitbreaker>=2.0",
    ):
        assert requirement in requires
    assert {"server", "test", "dev"} <= set(meta.get_all("Provides-Extra") or [])
    scripts = {
        ep.name: ep.value
        for ep in metadata.distribution(DIST).entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {"sark-sync": "sark_sync.cli:main"}


def test_import_pulls_in_only_stdlib_and_runtime_deps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert Path(report["sark_sync"]).resolve().parent == _installed_dir()
    tops = sorted({name.partition(".")[0] for name in report["new"]})
    foreign = [
        name
        for name in tops
        if name not in ALLOWED_THIRD_PARTY
        and not any(fnmatch.fnmatchcase(name, p) for p in COMPILED_RUNTIME_PATTERNS)
        and not _is_stdlib(name, report["files"].get(name))
    ]
    assert not foreign, f"import sark_sync imported non-stdlib, non-dependency modules: {foreign}"


#: Pure-Python stdlib modules that exist on every supported version (3.9's fallback check).
KNOWN_STDLIB = ("json", "logging", "email", "http", "urllib", "concurrent", "contextvars",
                "dataclasses", "threading", "weakref", "uuid", "platform", "random")


def test_stdlib_fallback_agrees_with_stdlib_module_names() -> None:
    # The path-based fallback (needed on 3.9) against known modules on every version, and
    # against the authoritative sys.stdlib_module_names where it exists (3.10+).
    import importlib

    import requests
    import urllib3

    for name in KNOWN_STDLIB:
        module = importlib.import_module(name)
        assert _is_stdlib_by_path(module.__file__), name
    authoritative = getattr(sys, "stdlib_module_names", frozenset())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or file is None or name in sys.builtin_module_names:
            continue
        if name in authoritative:
            assert _is_stdlib_by_path(file), (name, file)
    assert not _is_stdlib_by_path(requests.__file__)
    assert not _is_stdlib_by_path(urllib3.__file__)
