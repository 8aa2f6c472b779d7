"""The Django test project served by a real gunicorn, as in production: ``--preload`` (the
application, and with it a client that has already talked to the gateway, loaded in the master
before it forks), 4 workers of 4 threads, workers re-forked by ``--max-requests``. 2,000
requests, 32 at a time, each calling a tool with its user's token: no error, several workers,
and no worker using the master's client (the gateway requires a user token on every call).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django_project
import pytest
from support import API_KEY, child_env, token_of, wait_for

from sark_sync.testing import LocalGateway

REQUESTS = 2_000
CONCURRENCY = 32
TESTS_DIR = Path(django_project.__file__).resolve().parents[1]


def _get(url: str, token: str) -> tuple[int, dict[str, Any]]:
    # A new connection per request: a worker that --max-requests retires closes its
    # keep-alive connections, which says nothing about the integration.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read().decode(errors="replace")}


@pytest.mark.slow
@pytest.mark.stress
@pytest.mark.fork
def test_gunicorn_preload_serves_2000_requests_without_error(
        make_gateway: Any, tmp_path: Path) -> None:
    gateway: LocalGateway = make_gateway(require_user_token=True)
    token = token_of(gateway, "alice")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SARK_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(child_env(SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY,
                         DJANGO_PROJECT_WARM_CLIENT="1", no_proxy="127.0.0.1"))
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "--workers", "4", "--threads", "4",
             "--max-requests", "300", "--max-requests-jitter", "50", "--graceful-timeout", "10",
             "--bind", f"fd://{listener.fileno()}", "--pythonpath", str(TESTS_DIR),
             "django_project.wsgi:application"],
            env=env, stdout=output, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
            start_new_session=True)
    listener.close()
    try:
        wait_for(lambda: server.poll() is not None or _get(f"{base}/ready/", token)[0] == 200,
                 30, what="gunicorn to serve /ready/")
        assert server.poll() is None, log.read_text()
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="django-load") as pool:
            answers = list(pool.map(
                lambda i: _get(f"{base}/echo/?text=r{i}", token), range(REQUESTS)))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: REQUESTS}, (statuses, [a for a in answers if a[0] != 200][:3])
    assert [body["echo"] for _, body in answers] == [{"text": f"r{i}"} for i in range(REQUESTS)]
    pids = Counter(body["pid"] for _, body in answers)
    assert len(pids) >= 4 and server.pid not in pids  # re-forked workers count too
    invokes = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert len(invokes) == REQUESTS
    assert all(r.headers["Authorization"] == f"Bearer {token}" for r in invokes)
    assert server.returncode == 0, log.read_text()[-2000:]
