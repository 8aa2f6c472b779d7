"""The project of docs/integrations/django.md, run as written: its ``# myproject/...`` blocks
are written to disk as a Django project, ``manage.py check`` answers what the page shows (in a
child process, with and without a gateway URL), and the page's test module passes in a pytest
session of its own (pytest-django, the sark_sync plugin, real LocalGateways).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import child_env, doc_blocks, write_doc_package

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "integrations" / "django.md"


def blocks(lang: str) -> list[str]:
    return doc_blocks(PAGE, lang)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path holding the page's files (``# myproject/views.py`` ... blocks)."""
    written = write_doc_package(PAGE, tmp_path, "myproject")
    assert written == ["myproject/auth.py", "myproject/settings.py",
                               "myproject/test_views.py", "myproject/urls.py",
                               "myproject/views.py"]
    return tmp_path


def _run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SARK_", "PYTEST_"))}
    extra = child_env(DJANGO_SETTINGS_MODULE="myproject.settings", **env)
    extra["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), extra.get("PYTHONPATH")]))
    environ.update(extra)
    return subprocess.run([sys.executable, *args], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def test_manage_py_check_shows_what_the_page_shows(project: Path) -> None:
    done = _run(project, "-m", "django", "check")
    shown = next(b for b in blocks("text") if "manage.py check" in b)
    expected = [line for line in shown.splitlines()[1:] if line.strip()]
    assert done.returncode == 1 and done.stdout == ""
    assert [line for line in done.stderr.splitlines() if line.strip()] == expected


def test_manage_py_check_passes_with_a_gateway_url(project: Path) -> None:
    done = _run(project, "-m", "django", "check", SARK_GATEWAY_URL="http://127.0.0.1:9")
    assert (done.returncode, done.stderr) == (0, "")


def test_the_pages_token_getter_passes_the_checks(project: Path) -> None:
    settings = project / "myproject" / "settings.py"
    settings.write_text(settings.read_text(encoding="utf-8")
                        + 'SARK_SYNC["TOKEN_GETTER"] = "myproject.auth.user_token"\n')
    done = _run(project, "-m", "django", "check", SARK_GATEWAY_URL="http://127.0.0.1:9")
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.slow
def test_the_pages_tests_pass(project: Path) -> None:
    done = _run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                "myproject/test_views.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^3 passed", done.stdout, re.M), done.stdout
