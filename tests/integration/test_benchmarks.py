"""The benchmark scripts run and report what their docstrings promise.

A smoke test only, with a handful of calls: the figures are meaningless at this size and are
not checked against any goal (performance is measured by running the scripts, never by timed
tests). What is checked is that each script starts its peers, measures every side, prints one
JSON object with positive figures and ratios, and leaves no process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
#: Generous for a loaded CI machine: each script takes about 2 s with --calls 100.
RUN_TIMEOUT = 120.0


def run(script: str, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--json", *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def assert_side(stats: dict[str, float]) -> None:
    assert set(stats) == {"p50_us", "p95_us", "mean_us"}
    assert 0 < stats["p50_us"] <= stats["p95_us"]


def test_bench_http_measures_sdk_raw_and_lean_sides() -> None:
    result = run("bench_http.py", "--calls", "100")
    assert result["benchmark"] == "http_invoke" and result["calls"] == 100
    for side in ("raw", "raw_lean", "sdk"):
        assert_side(result[side])
    assert all(result[key] > 0 for key in ("ratio_p50", "ratio_lean_p50", "ratio_p95"))


def test_bench_stdio_measures_call_tool_against_raw_pipes_and_threads() -> None:
    result = run("bench_stdio.py", "--calls", "100")
    assert result["benchmark"] == "stdio_call_tool" and result["calls"] == 100
    for side in ("raw", "sdk"):
        assert_side(result[side])
    assert result["ratio_p50"] > 0 and result["threads8_calls_per_s"] > 0


def test_bench_sse_measures_throughput_and_latency_for_both_framings() -> None:
    result = run("bench_sse.py", "--events", "500", "--latency-events", "30", "--pace", "0.001")
    assert result["benchmark"] == "sse_stream_events"
    assert [r["framing"] for r in result["framings"]] == ["chunked", "close"]
    for framing in result["framings"]:
        for source in ("gateway", "firehose"):
            assert set(framing[f"{source}_events_per_s"]) == {"raw", "sdk"}
            assert framing[f"{source}_ratio"] > 0
        for side in ("raw", "sdk"):
            stats = framing["latency_ms"][side]
            assert 0 < stats["p50"] <= stats["p95"]
