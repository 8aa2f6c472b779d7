"""Session fixtures for the real components; a pytest plugin loaded by tests/conftest.py.

- ``tools_python`` (``Path``): the tools venv's interpreter, ``<repo>/.tools-venv/bin/python``
  (CPython 3.11). It ensures the venv first, under its lock: built once, up front, by
  ``.ci/run``; built here for local runs when missing or stale. A venv that cannot be built
  fails every test that needs it, with the reason and the command that builds it by hand;
  it is never a skip.
- ``mcp_sdk_server_command`` (``list[str]``): ``[tools_python, <path of mcp_sdk_server.py>]``,
  the command line of the official MCP SDK server over stdio. Shared by the whole session:
  copy it before changing it.
- ``sse_peer`` (``Callable[..., SsePeer]``): starts ``sse_server.py`` (sse-starlette on
  uvicorn, 127.0.0.1 port 0) with the tools venv's interpreter and the given command-line
  arguments, and returns it once it has printed its URL. Function-scoped: every peer started
  is stopped (SIGTERM, then SIGKILL), waited for and its pipe closed after the test.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from realcomp import tools_venv

#: The MCP SDK server script, run with the tools venv's interpreter.
MCP_SDK_SERVER = Path(__file__).resolve().with_name("mcp_sdk_server.py")
#: The SSE server script (sse-starlette on uvicorn), run with the tools venv's interpreter.
SSE_SERVER = Path(__file__).resolve().with_name("sse_server.py")
#: Bound for the SSE server to print its URL (it takes about 0.5s to import and bind).
SSE_START_TIMEOUT = 15.0
#: Grace period for the SSE server to exit after SIGTERM (it takes about 0.1-0.6s).
SSE_EXIT_TIMEOUT = 5.0
#: Bound for one request to the SSE server's /stats.
SSE_STATS_TIMEOUT = 5.0
#: Dropped from the children's environment: the tools interpreter must not see the test env's
#: paths, and the servers must flush what they print themselves.
SCRUBBED_ENV = ("PYTHONUNBUFFERED", "PYTHONPATH", "PYTHONHOME")


@pytest.fixture(scope="session")
def tools_python() -> Path:
    """The tools venv's python, the venv created or reused first."""
    try:
        return tools_venv.tools_python()
    except tools_venv.ToolsVenvError as exc:
        problem = str(exc)
    # Outside the except block: the message says it all, the chained traceback would not.
    pytest.fail(f"the tools venv is not usable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def mcp_sdk_server_command(tools_python: Path) -> list[str]:
    """The command that serves tests/realcomp/mcp_sdk_server.py over stdio."""
    return [str(tools_python), str(MCP_SDK_SERVER)]


class SsePeer:
    """One running ``sse_server.py``: its base ``url``, its ``stats()``, its log."""

    def __init__(self, args: list[str], python: Path, log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), str(SSE_SERVER), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        self.url = ""

    def wait_for_url(self, timeout: float = SSE_START_TIMEOUT) -> str:
        """Read the URL line the server prints once it serves; fail after ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"the SSE server printed no URL within {timeout:g}s; "
                                f"its log:\n{self.log()}", pytrace=False)
                if selector.select(remaining):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        self.proc.wait(SSE_EXIT_TIMEOUT)
                        pytest.fail(f"the SSE server exited ({self.proc.returncode}) before "
                                    f"printing its URL; its log:\n{self.log()}", pytrace=False)
                    buffer += chunk
        self.url = buffer.split(b"\n", 1)[0].decode().strip()
        return self.url

    def stats(self) -> dict[str, Any]:
        """What the server did so far (``GET /stats``; see sse_server.py)."""
        with urllib.request.urlopen(self.url + "/stats", timeout=SSE_STATS_TIMEOUT) as answer:
            stats: dict[str, Any] = json.loads(answer.read())
        return stats

    def log(self) -> str:
        """The server's stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after ``SSE_EXIT_TIMEOUT``; return the exit code.
        Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(SSE_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def sse_peer(tools_python: Path, tmp_path: Path) -> Iterator[Callable[..., SsePeer]]:
    """Start tests/realcomp/sse_server.py with the given arguments: ``sse_peer("--events",
    "10").url``. Every peer started is stopped after the test."""
    started: list[SsePeer] = []

    def start(*args: str) -> SsePeer:
        peer = SsePeer(list(args), tools_python, tmp_path / f"sse_server_{len(started)}.log")
        started.append(peer)
        peer.wait_for_url()
        return peer

    yield start
    for peer in started:
        peer.stop()
