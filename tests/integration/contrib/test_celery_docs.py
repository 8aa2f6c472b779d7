"""The project of docs/integrations/celery.md, run as written: its ``# proj/...`` blocks are
written to disk; the page's test module passes in a pytest session of its own (the sark_sync
plugin's gateway, tasks run by Celery's tracer); and the page's worker command, started in a
child process against a real Redis and a LocalGateway serving the page's tools, runs the
page's ``enqueue.py``, which prints what the page says it prints."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_project.worker_process import CeleryWorker
from realcomp.redis_server import RedisServer
from support import doc_blocks, write_doc_package

from sark_sync.testing import LocalGateway

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "integrations" / "celery.md"
API_KEY = "docs-key"


def blocks(lang: str) -> list[str]:
    return doc_blocks(PAGE, lang)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path holding the page's ``# proj/...`` files."""
    written = write_doc_package(PAGE, tmp_path, "proj")
    assert written == ["proj/celery_app.py", "proj/enqueue.py", "proj/test_tasks.py"]
    return tmp_path


def environ(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SARK_", "PYTEST_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def test_the_pages_test_module_passes(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "proj/test_tasks.py"],
        cwd=project, env=environ(project), capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.fixture
def tickets() -> Iterator[tuple[LocalGateway, list[str]]]:
    """A gateway serving the page's ``tickets`` server (``open`` and ``close``)."""
    opened: list[str] = []
    with LocalGateway(api_keys=(API_KEY,)) as gateway:
        gateway.add_server("tickets")

        def open_one(parameters: dict[str, Any]) -> dict[str, Any]:
            opened.append(parameters["title"])
            return {"number": len(opened), "title": parameters["title"]}

        gateway.add_tool("tickets", "open", open_one)
        gateway.add_tool("tickets", "close", lambda p: {"number": p["number"], "closed": True})
        yield gateway, opened


@pytest.mark.realcomp
@pytest.mark.slow
def test_the_pages_worker_command_runs_the_pages_tasks(
        project: Path, redis_server: RedisServer, tickets: tuple[LocalGateway, list[str]],
        tmp_path: Path) -> None:
    gateway, opened = tickets
    env = environ(project, CELERY_BROKER_URL=redis_server.url(0),
                  CELERY_RESULT_BACKEND=redis_server.url(1), SARK_GATEWAY_URL=gateway.url,
                  SARK_API_KEY=API_KEY)
    (command,) = [line for block in blocks("bash") for line in block.splitlines()
                  if line.startswith("celery ")]
    argv = shlex.split(command)
    assert argv[:4] == ["celery", "-A", "proj.celery_app", "worker"]
    worker = CeleryWorker("proj.celery_app", [*argv[4:], "-n", "docs@127.0.0.1", "-l", "INFO"],
                          cwd=project, environ=env, log_path=tmp_path / "worker.log")
    try:
        worker.wait_ready()
        done = subprocess.run([sys.executable, "-m", "proj.enqueue"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr + worker.log()
        enqueue = (project / "proj" / "enqueue.py").read_text(encoding="utf-8")
        shown = [line.split("# -> ", 1)[1] for line in enqueue.splitlines() if "# -> " in line]
        assert done.stdout.splitlines() == shown
        # The task failed once after opening the ticket and ran again: one ticket.
        assert opened == ["disk full on db-1!"]
        assert gateway.tool_runs("tickets", "open") == 1
    finally:
        assert worker.stop() == 0
    # Each prefork child that ran a task closed its client; the main process built none.
    closed = worker.closed_in("proj")
    assert closed and len(set(closed)) == len(closed) and worker.proc.pid not in closed
