"""Run ``sark-sync serve`` as a child process for benchmarks.

The gateway runs in its own interpreter so that its threads do not compete with the measured
client for the GIL; the client's numbers are then the client's. Stopped by PID, always.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

API_KEY = "bench-api-key"
#: Seconds to wait for the child to print its URL, and then to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


@contextmanager
def gateway_process() -> Iterator[str]:
    """Start a LocalGateway in a child process; yield its URL; stop it."""
    child = subprocess.Popen(
        [sys.executable, "-m", "sark_sync.cli", "serve", "--api-key", API_KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert child.stdout is not None
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            if not selector.select(START_TIMEOUT):
                raise RuntimeError("the gateway did not start in time")
        url = child.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"unexpected gateway output: {url!r}")
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
