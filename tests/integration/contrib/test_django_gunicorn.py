"""The Django test project served by a real gunicorn, as in production: ``--preload`` (the
application, and with it a client that has already talked to the gateway, loaded in the master
before it forks), each request calling a tool with its user's token (the gateway requires one
on every call), the answers checked one by one.

- 4 workers of 4 threads: 2,000 requests, 32 at a time, no error, every worker used.
- Workers re-forked by ``--max-requests``, each new one building its own client from the
  master's. This uses sync workers: gunicorn's threaded worker resets connections it accepted
  while retiring (benoitc/gunicorn#3038, still in gunicorn 23, the last for Python 3.9),
  which says nothing about the integration.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import django_project
import pytest
from support import API_KEY, child_env, token_of, wait_for

from sark_sync.testing import LocalGateway

TESTS_DIR = Path(django_project.__file__).resolve().parents[1]


def _get(url: str, token: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one GET on a new connection."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read().decode(errors="replace")}


@contextmanager
def gunicorn(gateway: LocalGateway, token: str, log: Path, *options: str
             ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(base URL, master process) of gunicorn ``--preload`` serving the test project for
    ``gateway`` (configured through the SARK_* environment), on a socket bound here to
    127.0.0.1 port 0; stopped with SIGTERM (graceful) afterwards."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SARK_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(child_env(SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY,
                         DJANGO_PROJECT_WARM_CLIENT="1"))
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", *options, "--graceful-timeout", "10",
             "--bind", f"fd://{listener.fileno()}", "--pythonpath", str(TESTS_DIR),
             "django_project.wsgi:application"],
            env=env, stdout=output, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
            start_new_session=True)
    listener.close()
    try:
        wait_for(lambda: server.poll() is not None or _get(f"{base}/ready/", token)[0] == 200,
                 30, what="gunicorn to serve /ready/")
        assert server.poll() is None, log.read_text()
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode == 0, log.read_text()[-2000:]


def _load(base: str, token: str, requests: int, concurrency: int) -> list[dict[str, Any]]:
    """Send ``requests`` echo requests, ``concurrency`` at a time; every answer must be 200
    and echo its own text. Returns the bodies."""
    with ThreadPoolExecutor(concurrency, thread_name_prefix="django-load") as pool:
        answers = list(pool.map(lambda i: _get(f"{base}/echo/?text=r{i}", token),
                                range(requests)))
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: requests}, (statuses, [a for a in answers if a[0] != 200][:3])
    assert [body["echo"] for _, body in answers] == [{"text": f"r{i}"} for i in range(requests)]
    return [body for _, body in answers]


def _invokes_with(gateway: LocalGateway, token: str) -> int:
    invokes = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert all(r.headers["Authorization"] == f"Bearer {token}" for r in invokes)
    return len(invokes)


@pytest.mark.slow
@pytest.mark.stress
@pytest.mark.fork
def test_gunicorn_preload_4_workers_4_threads_serve_2000_requests_without_error(
        make_gateway: Any, tmp_path: Path) -> None:
    gateway: LocalGateway = make_gateway(require_user_token=True)
    token = token_of(gateway, "alice")
    with gunicorn(gateway, token, tmp_path / "gunicorn.log",
                  "--workers", "4", "--threads", "4") as (base, server):
        bodies = _load(base, token, 2_000, 32)
    pids = Counter(body["pid"] for body in bodies)
    assert len(pids) == 4 and server.pid not in pids
    assert _invokes_with(gateway, token) == 2_000


@pytest.mark.slow
@pytest.mark.fork
def test_workers_reforked_by_max_requests_build_their_own_client(
        make_gateway: Any, tmp_path: Path) -> None:
    gateway: LocalGateway = make_gateway(require_user_token=True)
    token = token_of(gateway, "alice")
    with gunicorn(gateway, token, tmp_path / "gunicorn.log", "--workers", "2",
                  "--max-requests", "25") as (base, server):
        bodies = _load(base, token, 200, 8)
    pids = Counter(body["pid"] for body in bodies)
    assert len(pids) >= 6 and server.pid not in pids  # 200 requests, 25 a worker at most
    assert max(pids.values()) <= 25
    assert _invokes_with(gateway, token) == 200
