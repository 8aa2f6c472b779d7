"""Promises about the test suite itself, checked by reading the files.

- The end-to-end suite (tests/integration/gateway/test_gateway_e2e.py) has at least 50 tests.
- No test is ever skipped: no file under tests/ calls ``pytest.skip``/``importorskip`` or
  uses a ``skip``/``skipif`` mark, so a missing tool fails the run instead of hiding.
- The README's first commands are the demo and ``bash .ci/run``, and ``.ci/run`` runs that
  very demo command in a fresh venv, under a timeout.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
E2E = TESTS / "integration" / "gateway" / "test_gateway_e2e.py"
DEMO_COMMAND = "python -m pip install -e . && sark-sync demo"


def _tests_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def test_the_end_to_end_suite_has_at_least_50_tests() -> None:
    names = _tests_in(E2E)
    assert len(names) >= 50, f"{E2E.name} has {len(names)} tests"
    assert len(set(names)) == len(names), "a test name is defined twice (one hides the other)"


def _skips(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line`` of every skip in a test file: a call of pytest.skip/importorskip, or a
    pytest.mark.skip/skipif."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr in ("skip", "skipif", "importorskip")
                and isinstance(node.value, (ast.Name, ast.Attribute))
                and ast.unparse(node.value) in ("pytest", "pytest.mark")):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: p.name)
def test_no_test_file_skips(path: Path) -> None:
    assert _skips(path) == []


def test_the_skip_finder_finds_skips(tmp_path: Path) -> None:
    sample = tmp_path / "test_x.py"
    sample.write_text("import pytest\n@pytest.mark.skipif(True, reason='x')\ndef test_a():\n"
                      "    pytest.skip('no')\nyaml = pytest.importorskip('yaml')\n")
    assert sorted(_skips(sample, tmp_path)) == ["test_x.py:2", "test_x.py:4", "test_x.py:5"]


def test_the_readme_starts_with_the_demo_and_the_tests() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands == [DEMO_COMMAND, "bash .ci/run"]


def test_ci_runs_the_readme_demo_in_a_fresh_venv_under_a_timeout() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'-m venv "\$DEMO_DIR/venv"', script)
    assert re.search(r"python -m pip install .*-e \.", script)
    assert re.search(r'timeout .*"\$DEMO_TIMEOUT" sark-sync demo', script)
    assert re.search(r"^DEMO_TIMEOUT=\d+$", script, re.M)
