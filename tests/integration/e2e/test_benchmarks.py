"""The benchmark scripts run and report what their docstrings promise.

A smoke test only, with a handful of calls: the figures are meaningless at this size and are
not checked against any goal (performance is measured by running the scripts, never by timed
tests). What is checked is that each script starts its peers, measures every side, prints one
JSON object with positive figures and ratios, and leaves no process behind. bench_http's
governed rows run the real OPA engine with the tools venv's python (the ``tools_python``
fixture), and the bench's own checks of the audit lines and the engine's decisions are
asserted here too. ``run_all.py --quick`` runs them all and must write its Markdown and JSON
table with every row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
#: Generous for a loaded CI machine: each script takes about 2 s with --calls 100.
RUN_TIMEOUT = 120.0
#: run_all.py --quick runs them all, with the official MCP servers and clients: about a
#: minute on 2 busy cores.
RUN_ALL_TIMEOUT = 300.0


def assert_list_servers(result: dict[str, Any]) -> None:
    listing = result["list_servers"]
    assert listing["calls"] == 100
    for side in ("raw", "raw_lean", "sdk"):
        assert_side(listing[side])
    assert listing["ratio_p50"] > 0 and listing["ratio_lean_p50"] > 0


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
    assert_list_servers(result)


def test_bench_http_without_governed_rows_needs_no_tools_venv() -> None:
    result = run("bench_http.py", "--calls", "100", "--no-governed",
                 "--tools-python", "/nonexistent/python")
    assert result["calls"] == 100 and result["governed"] is None
    assert list(result["ratios"]) == ["sdk"]
    for side in ("raw", "raw_lean", "sdk"):
        assert_side(result[side])
    assert_list_servers(result)


def test_bench_http_names_no_governed_when_the_tools_venv_is_not_usable() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_http.py"), "--calls", "100",
         "--tools-python", "/nonexistent/python"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert completed.returncode == 2 and completed.stdout == ""
    assert "--no-governed" in completed.stderr
    assert "/nonexistent/python is not an executable interpreter" in completed.stderr


def assert_stdio_raw_sides(result: dict[str, Any]) -> None:
    assert result["benchmark"] == "stdio_call_tool" and result["calls"] == 100
    for side in ("raw", "sdk"):
        assert_side(result[side])
    assert result["ratio_p50"] > 0 and result["threads8_ratio"] > 0
    assert all(result[key] > 0 for key in (
        "sequential_calls_per_s", "raw_sequential_calls_per_s", "threads8_calls_per_s",
        "raw_threads8_calls_per_s"))


def test_bench_stdio_measures_call_tool_against_raw_pipes_and_threads() -> None:
    result = run("bench_stdio.py", "--calls", "100", "--no-official",
                 "--tools-python", "/nonexistent/python")
    assert_stdio_raw_sides(result)
    assert result["official"] is None


def test_bench_stdio_pins_both_sides_where_asked() -> None:
    """--pin measures one placement: client and servers on one CPU, or on two (CI has 2)."""
    for placement, server_cpu in (("same", 0), ("split", 1)):
        result = run("bench_stdio.py", "--calls", "100", "--no-official", "--pin", placement)
        assert_stdio_raw_sides(result)
        assert result["placement"] == placement
        assert result["cpus"] == {"client": [0], "servers": [[server_cpu], [server_cpu]]}
    result = run("bench_stdio.py", "--calls", "100", "--no-official")
    assert result["placement"] == "scheduler" and len(result["cpus"]["servers"]) == 2


@pytest.mark.realcomp
def test_bench_stdio_measures_call_tool_against_the_official_client_on_its_server(
        tools_python: Path) -> None:
    result = run("bench_stdio.py", "--calls", "100", "--warmup", "20",
                 "--tools-python", str(tools_python))
    assert_stdio_raw_sides(result)
    official = result["official"]
    assert official["server"] == "tests/realcomp/mcp_sdk_server.py"
    assert official["calls"] == 100 and official["official_protocol_version"]
    for side in ("sdk", "official"):
        assert_side(official[side])
    assert official["ratio_p50"] > 0


@pytest.mark.realcomp
def test_bench_memory_measures_one_client_with_local_servers_against_the_official_client(
        tools_python: Path) -> None:
    result = run("bench_memory.py", "--servers", "2", "--tools-python", str(tools_python))
    assert result["benchmark"] == "memory_local_servers" and result["servers"] == 2
    for side in ("sdk", "official"):
        figures = result[side]
        assert figures["children"] == 2 and figures["children_mb"] > 0
        assert 0 < figures["baseline_mb"] < figures["with_servers_mb"]
        assert figures["client_increase_mb"] == pytest.approx(
            figures["with_servers_mb"] - figures["baseline_mb"])
    assert all(result[key] > 0 for key in (
        "ratio_client_increase", "ratio_process", "ratio_children"))


def test_bench_throughput_measures_threads_and_a_16_thread_fanout_against_raw() -> None:
    result = run("bench_throughput.py", "--calls", "160", "--rounds", "1")
    assert result["benchmark"] == "http_throughput" and result["pool_size"] == 32
    assert list(result["throughput"]) == ["1", "8", "32"]
    for row in result["throughput"].values():
        assert set(row["calls_per_s"]) == {"raw", "raw_lean", "sdk"}
        assert all(rate > 0 for rate in row["calls_per_s"].values())
        assert row["ratio"] > 0 and row["ratio_lean"] > 0
    per_thread = result["threads32"]
    sides = {"raw", "raw_lean", "sdk", "raw_per_thread", "raw_lean_per_thread", "sdk_default"}
    assert per_thread["threads"] == 32 and per_thread["default_max_workers"] == 8
    assert per_thread["calls"] == {side: 160 for side in sides}
    assert set(per_thread["calls_per_s"]) == sides
    assert all(rate > 0 for rate in per_thread["calls_per_s"].values())
    for side in sides:
        stats = per_thread["latency_ms"][side]
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
    assert set(per_thread["ratios"]) == {"sdk", "sdk_default"}
    assert all(set(ratios) == {"p50", "p95", "p99", "calls_per_s"}
               and all(value > 0 for value in ratios.values())
               for ratios in per_thread["ratios"].values())
    fanout = result["fanout"]
    assert fanout["threads"] == 16 and fanout["calls"] == 160
    assert fanout["goal_p95_ms"] == 100.0 and fanout["ratio_p95"] > 0
    assert fanout["ratio_lean_p95"] > 0
    for side in ("raw", "raw_lean", "sdk"):
        stats = fanout["latency_ms"][side]
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
        assert fanout["calls_per_s"][side] > 0


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


@pytest.mark.realcomp
def test_bench_mcp_http_measures_sdk_raw_and_the_official_client_in_three_scenarios(
        tools_python: Path) -> None:
    result = run("bench_mcp_http.py", "--calls", "100", "--warmup", "20",
                 "--tools-python", str(tools_python))
    assert result["benchmark"] == "mcp_http_call_tool"
    assert [s["scenario"] for s in result["scenarios"]] == [
        "stateless_json", "stateless_json_2025", "stateful_sse_2025"]
    versions = [(s["protocol_version"], s["official_protocol_version"])
                for s in result["scenarios"]]
    assert versions == [("2026-07-28", "2026-07-28"), ("2025-11-25", "2025-11-25"),
                        ("2025-11-25", "2025-11-25")]
    for scenario in result["scenarios"]:
        assert scenario["calls"] == 100
        for side in ("raw", "raw_lean", "sdk", "official"):
            assert_side(scenario[side])
        assert all(scenario[key] > 0 for key in (
            "ratio_raw_p50", "ratio_raw_lean_p50", "ratio_official_p50"))


#: run_all's rows, in its table's order; the ones with a goal say whether it was met.
PER_THREAD_ROWS = [f"{side}_{figure}" for side in ("threads32", "threads32_default")
                   for figure in ("calls", "p50", "p95", "p99")]
MEMORY_ROWS = ["memory_client", "memory_process", "memory_servers"]
RUN_ALL_ROWS = [
    "http_p50", "audit_only_p50", "governed_cache_on_p50",
    "governed_cache_off_p50", "list_servers_p50", "http_threads1", "http_threads8",
    "http_threads32", *PER_THREAD_ROWS,
    "fanout_p50", "fanout_p95", "fanout_p99", "stdio_p50", "stdio_sequential",
    "stdio_threads8", "stdio_official_p50", "sse_gateway_chunked", "sse_firehose_chunked",
    "sse_latency_chunked",
    "sse_gateway_close", "sse_firehose_close", "sse_latency_close",
    *(f"mcp_http_{name}{kind}_p50" for name in ("stateless_json", "stateless_json_2025",
                                                "stateful_sse_2025")
      for kind in ("", "_official")),
    *MEMORY_ROWS,
]
MCP_ROWS = {key for key in RUN_ALL_ROWS if key.startswith("mcp_http_")}
#: The rows against the official MCP SDK, skipped without the tools venv.
OFFICIAL_ROWS = {*MCP_ROWS, *MEMORY_ROWS, "stdio_official_p50"}
GOAL_ROWS = {"http_p50", "list_servers_p50", "fanout_p95", "stdio_p50", "stdio_official_p50",
             "mcp_http_stateless_json_p50", "mcp_http_stateless_json_official_p50",
             *(key for key in PER_THREAD_ROWS if not key.endswith("_p50")), *(
    f"sse_{kind}_{framing}" for kind in ("gateway", "firehose", "latency")
    for framing in ("chunked", "close"))}
GOVERNED_ROWS = {"audit_only_p50", "governed_cache_on_p50", "governed_cache_off_p50"}
#: The HTTP rows, which compare with a trust_env=False session too.
LEAN_ROWS = {"http_p50", *GOVERNED_ROWS, "list_servers_p50", "http_threads1", "http_threads8",
             "http_threads32", *PER_THREAD_ROWS, "fanout_p50", "fanout_p95", "fanout_p99",
             "mcp_http_stateless_json_p50",
             "mcp_http_stateless_json_2025_p50", "mcp_http_stateful_sse_2025_p50"}


def run_all(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--out", str(out), *args],
        capture_output=True, text=True, timeout=RUN_ALL_TIMEOUT, check=False,
    )


def load_table(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    report = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    rows = {row["key"]: row for row in report["rows"]}
    assert list(rows) == RUN_ALL_ROWS
    return report, rows, (out / "latest.md").read_text(encoding="utf-8")


@pytest.mark.realcomp
def test_run_all_quick_writes_one_markdown_and_json_table_with_every_row(
        tmp_path: Path, tools_python: Path) -> None:
    completed = run_all(tmp_path, "--tools-python", str(tools_python))
    assert completed.returncode == 0, completed.stderr[-2000:]
    report, rows, markdown = load_table(tmp_path)
    assert report["crashed"] == [] and report["machine"]["mode"] == "quick"
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]
    assert set(report["benchmarks"]) == {
        "bench_http.py", "bench_throughput.py", "bench_stdio.py", "bench_sse.py",
        "bench_mcp_http.py", "bench_memory.py"}
    for key, row in rows.items():
        assert row["status"] == "measured", key
        assert row["sdk"] > 0 and row["raw"] > 0, key
        expected = row["sdk"] / row["raw"] if row["comparison_kind"] == "ratio" \
            else row["sdk"] - row["raw"]
        assert row["comparison"] == pytest.approx(expected), key
        if key in LEAN_ROWS:
            assert row["lean_comparison"] == pytest.approx(row["sdk"] / row["raw_lean"]), key
        else:
            assert row["raw_lean"] is None and row["lean_comparison"] is None, key
        assert (row["goal"] is not None) == (key in GOAL_ROWS), key
        assert isinstance(row["goal_met"], bool) == (key in GOAL_ROWS), key
        assert f"| {row['measure']} |" in markdown
    assert "| Measure | SDK | Raw | SDK vs raw | SDK vs lean raw | Goal | Met |" in markdown
    # The table went to stdout too, and each missed goal to stderr.
    assert markdown.split("\n\n", 1)[1] in completed.stdout
    missed = [row for row in rows.values() if row["goal_met"] is False]
    assert completed.stderr.count("GOAL MISSED: ") == len(missed)


def test_run_all_without_governed_rows_marks_them_skipped(tmp_path: Path) -> None:
    completed = run_all(tmp_path, "--no-governed", "--tools-python", "/nonexistent/python")
    assert completed.returncode == 0, completed.stderr[-2000:]
    _, rows, markdown = load_table(tmp_path)
    skipped = GOVERNED_ROWS | OFFICIAL_ROWS  # the tools venv's OPA, and the official MCP SDK
    for key, row in rows.items():
        assert row["status"] == ("skipped" if key in skipped else "measured"), key
    assert all(rows[key]["sdk"] is None for key in skipped)
    assert markdown.count("| skipped |") == len(skipped)


def test_run_all_names_no_governed_when_the_tools_venv_is_not_usable(tmp_path: Path) -> None:
    completed = run_all(tmp_path, "--tools-python", "/nonexistent/python")
    assert completed.returncode == 2 and completed.stdout == ""
    assert "--no-governed" in completed.stderr
    assert list(tmp_path.iterdir()) == []
