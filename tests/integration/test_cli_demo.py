"""``sark-sync demo`` runs end to end, quickly, and tells a newcomer what happened."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from sark_sync._demo import run_demo

STEP_TITLES = (
    "An embedded SARK gateway (LocalGateway) is listening on loopback",
    "Discovery: what can this application call?",
    "Calls: invoke_tool blocks until the result",
    "Retries: only when repeating the call cannot repeat its side effect",
    "A deadline bounds every call",
    "A circuit breaker per server",
    "Parallel calls without asyncio",
)


def test_demo_walks_through_every_step_in_order() -> None:
    out = io.StringIO()
    assert run_demo(out) == 0
    text = out.getvalue()
    positions = [text.index(title) for title in STEP_TITLES]
    assert positions == sorted(positions)
    assert "the tool ran 1 time(s)" in text
    assert "DeadlineExceeded after 0.5" in text
    assert "CircuitOpenError" in text
    assert "40 results in order" in text
    assert text.rstrip().endswith("what each error means.")


def test_demo_command_exits_0_within_15_seconds() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "sark_sync.cli", "demo"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    assert elapsed < 15
    assert "Done in" in completed.stdout
    assert completed.stderr == ""
