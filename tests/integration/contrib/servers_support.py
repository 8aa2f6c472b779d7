"""Real WSGI servers (gunicorn, uWSGI) in the tests: started on 127.0.0.1, driven with
concurrent requests, stopped by their PID. Shared by test_django_gunicorn.py and
test_servers_docs.py.

- :func:`serve` starts a server's command in a new session, waits until ``ready_url``
  answers 200, and stops it afterwards: SIGTERM, a bounded wait, then SIGKILL of its whole
  process group (no worker outlives the test). It yields the master's :class:`Popen`.
- :func:`listening_socket` binds 127.0.0.1 port 0 here, for gunicorn's ``--bind fd://N``
  (no race for the port); :func:`free_port` is for a server that binds itself (uWSGI).
- :func:`get` is one GET on a new connection; :func:`load` sends many, some at a time, and
  asserts that every one answered 200 with its own text.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from support import wait_for

#: How long a server may take to stop after SIGTERM before its group is killed.
STOP_WAIT = 30.0


def get(url: str, token: str | None = None, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one GET on a new connection; a body that is not JSON comes back
    as ``{"body": text}``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"body": raw.decode(errors="replace")}


def answers(url: str, token: str | None = None) -> bool:
    """True when ``url`` answers 200 (False while the server is not listening yet)."""
    try:
        return get(url, token, timeout=5)[0] == 200
    except OSError:
        return False


def listening_socket() -> socket.socket:
    """A socket listening on 127.0.0.1, port 0 (pass its fd to the server, then close it)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without SARK_* and Django's settings module, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SARK_", "PYTEST_")) and k != "DJANGO_SETTINGS_MODULE"}
    env.update(extra)
    return env


@contextmanager
def serve(argv: Sequence[str], *, env: Mapping[str, str], log: Path, ready: Callable[[], bool],
          cwd: Path | None = None, pass_fds: Sequence[int] = (), start_timeout: float = 30,
          expect_returncode: int | None = 0) -> Iterator[subprocess.Popen[bytes]]:
    """The master process of ``argv``, once ``ready()`` is true; stopped with SIGTERM
    afterwards (then SIGKILL of its group after :data:`STOP_WAIT`). Its return code must be
    ``expect_returncode`` (None: any) and no process of its group may be left."""
    with log.open("wb") as output:
        server = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=output,
                                  stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds),
                                  start_new_session=True)
    killed = False
    try:
        wait_for(lambda: server.poll() is not None or ready(), start_timeout,
                 what=lambda: f"the server to answer; its log:\n{log.read_text()[-2000:]}")
        assert server.poll() is None, log.read_text()[-2000:]
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            killed = True
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        wait_for(lambda: not _group_alive(server.pid), 10,
                 what="the server's workers to exit")
    assert not killed, f"the server ignored SIGTERM; its log:\n{log.read_text()[-2000:]}"
    if expect_returncode is not None:
        assert server.returncode == expect_returncode, log.read_text()[-2000:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(base: str, requests: int, concurrency: int, *, token: str | None = None,
         path: str = "/echo/?text=r{i}", key: str = "echo") -> list[dict[str, Any]]:
    """Send ``requests`` GETs of ``path`` (``{i}`` replaced by their number), ``concurrency``
    at a time; every answer must be 200 with ``body[key] == {"text": "r{i}"}``. Returns the
    bodies."""
    with ThreadPoolExecutor(concurrency, thread_name_prefix="server-load") as pool:
        answered = list(pool.map(lambda i: get(base + path.format(i=i), token),
                                 range(requests)))
    statuses = Counter(status for status, _ in answered)
    assert statuses == {200: requests}, (statuses,
                                         [a for a in answered if a[0] != 200][:3])
    assert [body[key] for _, body in answered] == [{"text": f"r{i}"} for i in range(requests)]
    return [body for _, body in answered]
