"""benchmarks/soak.py keeps working: a tiny run (4 threads x 40 calls) meets its goals.

The soak itself is run by hand, at full size (64 x 10,000); here it only has to start its
peer process and its local server, drive the client through the peer's faults, measure every
call against its deadline, and report no untyped error and nothing leaked, in its JSON form.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[3] / "benchmarks" / "soak.py"
#: A tiny run takes about 5 s (stalled calls wait out their 0.5..1.5 s deadlines).
RUN_TIMEOUT = 90.0


@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_a_tiny_soak_run_meets_its_goals_and_reports_every_call() -> None:
    completed = subprocess.run(
        [sys.executable, str(SOAK), "--threads", "4", "--calls", "40", "--seed", "3", "--json",
         # A loaded CI machine may add scheduling delay; the 0.1 s goal is for real runs.
         "--max-overrun", "0.5"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert (result["benchmark"], result["threads"], result["calls"]) == ("soak", 4, 160)
    assert sum(result["outcomes"].values()) == 160
    assert result["outcomes"].get("remote/echo ok", 0) > 0
    assert (result["untyped_errors"], result["untyped_tracebacks"]) == (0, {})
    assert result["leaked"] == [] and result["goals"] == {
        "no_untyped_errors": True, "max_overrun_ok": True, "nothing_leaked": True}
    assert result["max_overrun_s"] <= 0.5
    assert result["before"] == result["after"]
