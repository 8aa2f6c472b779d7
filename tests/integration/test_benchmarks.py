"""The benchmark scripts run and report what their docstrings promise.

A smoke test only, with a handful of calls: the figures are meaningless at this size and are
not checked against any goal (performance is measured by running the scripts, never by timed
tests). What is checked is that each script starts its peers, measures every side, prints one
JSON object with positive figures and ratios, and leaves no process behind. bench_http's
governed rows run the real OPA engine with the tools venv's python (the ``tools_python``
fixture), and the bench's own checks of the audit lines and the engine's decisions are
asserted here too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.realcomp
def test_bench_http_measures_sdk_and_governed_sides_against_raw_and_lean(
        tools_python: Path) -> None:
    result = run("bench_http.py", "--calls", "100", "--tools-python", str(tools_python))
    assert result["benchmark"] == "http_invoke" and result["calls"] == 100
    sdk_sides = ["sdk", "audit_only", "governed_cache_on", "governed_cache_off"]
    for side in ("raw", "raw_lean", *sdk_sides):
        assert_side(result[side])
    assert all(result[key] > 0 for key in ("ratio_p50", "ratio_lean_p50", "ratio_p95"))
    assert list(result["ratios"]) == sdk_sides
    assert all(ratio > 0 for side in sdk_sides for ratio in result["ratios"][side].values())
    # Each governed side called once to check, 200 warm-up calls, 100 measured.
    made = {side: 301 for side in sdk_sides[1:]}
    assert result["governed"] == {
        "calls_made": made, "audit_lines": made,
        "opa_decisions": {"governed_cache_on": 1, "governed_cache_off": 301}}


def test_bench_http_without_governed_rows_needs_no_tools_venv() -> None:
    result = run("bench_http.py", "--calls", "100", "--no-governed",
                 "--tools-python", "/nonexistent/python")
    assert result["calls"] == 100 and result["governed"] is None
    assert list(result["ratios"]) == ["sdk"]
    for side in ("raw", "raw_lean", "sdk"):
        assert_side(result[side])


def test_bench_http_names_no_governed_when_the_tools_venv_is_not_usable() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_http.py"), "--calls", "100",
         "--tools-python", "/nonexistent/python"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert completed.returncode == 2 and completed.stdout == ""
    assert "--no-governed" in completed.stderr
    assert "/nonexistent/python is not an executable interpreter" in completed.stderr


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
