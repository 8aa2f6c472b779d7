"""Run ``sark-sync serve`` as a child process for benchmarks.

The gateway runs in its own interpreter so that its threads do not compete with the measured
client for the GIL; the client's numbers are then the client's. Stopped by PID, always.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

API_KEY = "bench-api-key"
#: Seconds to wait for the child to print its URL, and then to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


@contextmanager
def url_child(argv: list[str], what: str, *, stderr: Any = subprocess.DEVNULL,
              env: dict[str, str] | None = None,
              diagnose: Callable[[], str] = lambda: "") -> Iterator[str]:
    """Start ``argv``, a server that prints its ``http://127.0.0.1:<port>`` URL on its first
    line of stdout once it listens; yield the URL; stop it by PID (SIGTERM, then SIGKILL).
    ``RuntimeError`` naming ``what``, plus what ``diagnose()`` says (e.g. its log), if it does
    not print a loopback URL in time."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=stderr, env=env, text=True)
    try:
        assert child.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            if not selector.select(START_TIMEOUT):
                raise RuntimeError(f"{what} did not start in {START_TIMEOUT:g}s{diagnose()}")
        url = child.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"unexpected output of {what}: {url!r}{diagnose()}")
        yield url
    finally:
        child.terminate()
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(STOP_TIMEOUT)
        if child.stdout is not None:
            child.stdout.close()


@contextmanager
def gateway_process() -> Iterator[str]:
    """Start a LocalGateway in a child process; yield its URL; stop it."""
    with url_child([sys.executable, "-m", "sark_sync.cli", "serve", "--api-key", API_KEY],
                   "the gateway") as url:
        yield url
