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

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import django_project
import pytest
from servers_support import answers, clean_env, listening_socket, load, serve
from support import API_KEY, child_env, token_of

from sark_sync.testing import LocalGateway

TESTS_DIR = Path(django_project.__file__).resolve().parents[1]


@contextmanager
def gunicorn(gateway: LocalGateway, token: str, log: Path, *options: str
             ) -> Iterator[tuple[str, Any]]:
    """(base URL, master process) of gunicorn ``--preload`` serving the test project for
    ``gateway`` (configured through the SARK_* environment), on a socket bound here to
    127.0.0.1 port 0; stopped with SIGTERM (graceful) afterwards."""
    listener = listening_socket()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = clean_env(**child_env(SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY,
                                DJANGO_PROJECT_WARM_CLIENT="1"))
    argv = [sys.executable, "-m", "gunicorn", "--preload", *options, "--graceful-timeout", "10",
            "--bind", f"fd://{listener.fileno()}", "--pythonpath", str(TESTS_DIR),
            "django_project.wsgi:application"]
    try:
        with serve(argv, env=env, log=log, pass_fds=(listener.fileno(),),
                   ready=lambda: answers(f"{base}/ready/", token)) as server:
            listener.close()
            yield base, server
    finally:
        listener.close()


def _load(base: str, token: str, requests: int, concurrency: int) -> list[dict[str, Any]]:
    """Send ``requests`` echo requests, ``concurrency`` at a time; every answer must be 200
    and echo its own text. Returns the bodies."""
    return load(base, requests, concurrency, token=token)


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
