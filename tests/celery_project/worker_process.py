"""A real ``celery worker`` as a child process of a test: started with the test's Python,
its output in a log file, ready when it logs `` ready.``, stopped by PID (SIGTERM: a warm
shutdown that lets running tasks finish; SIGKILL after a bound)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

#: Bounds: a worker is ready in a second or two; a warm shutdown finishes its tasks first.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class CeleryWorker:
    """``celery -A <app> worker <args>`` run in ``cwd`` with exactly ``environ``."""

    def __init__(self, app: str, args: list[str], *, cwd: Path, environ: dict[str, str],
                 log_path: Path) -> None:
        self.environ, self.log_path = environ, log_path
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", *args]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=environ, cwd=cwd)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> CeleryWorker:
        deadline = time.monotonic() + READY_TIMEOUT
        pause = threading.Event()  # never set: each wait lasts its timeout
        while " ready." not in self.log():
            if self.proc.poll() is not None:
                pytest.fail(f"the worker exited ({self.proc.returncode}):\n{self.log()}")
            remaining = deadline - time.monotonic()
            if remaining < 0:
                self.stop()
                pytest.fail(f"the worker was not ready in {READY_TIMEOUT:g}s:\n{self.log()}")
            pause.wait(min(0.05, remaining))  # polling a starting child's log, bounded above
        return self

    def stop(self) -> int:
        """Warm shutdown, SIGKILL after STOP_TIMEOUT; the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def closed_in(self, app_name: str) -> list[int]:
        """The processes whose client of ``app_name`` the worker closed (sark_sync's log)."""
        return [int(pid) for pid in re.findall(
            rf"closed the client of Celery app '{re.escape(app_name)}' in process (\d+)",
            self.log())]
