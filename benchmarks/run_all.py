"""Run every benchmark and write one table of SDK-versus-raw figures measured in the same run.

Each benchmark runs as a child process with ``--json`` (so one benchmark's threads, sockets
and garbage never disturb the next), one after the other. Every figure in the table compares
the SDK with a raw baseline that the same benchmark measured in the same run, the sides
taking turns, so machine noise lands on both and the comparison holds even when the absolute
figures move. The table goes to ``<out>/latest.md`` and ``<out>/latest.json`` (``--out``,
default ``benchmarks/results``) with the machine's facts, and to stdout.

Where a row has a goal, the table says whether it was met; a missed goal is printed clearly
but is not a failure: the exit status is 0 unless a benchmark crashed (1; the other
benchmarks still run and the files are still written, the crashed rows marked) or the
governed rows' tools venv is not usable (2, before anything runs; ``--no-governed`` skips
those rows, and every row against the official MCP SDK, whose server and client live in that
venv: bench_mcp_http's, bench_memory's and bench_stdio's official-client row).

Some rows compare with a peer rather than a raw baseline: the official async MCP client
(rows "vs the official client", its figure in the Raw column) and, at 32 threads, raw
requests with a session per thread (rows "vs a session per thread").

``--quick`` runs every benchmark with a handful of calls, for smoke tests: its figures are
noise. The default sizes are the benchmarks' own (5-6 minutes on 2 cores).

    python benchmarks/run_all.py [--quick] [--out DIR] [--no-governed] [--tools-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _opa_process import ToolsUnavailable, tools_python

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Extra arguments per benchmark and mode; the full run uses each benchmark's defaults.
SIZES: dict[str, dict[str, list[str]]] = {
    "full": {"bench_http.py": [], "bench_throughput.py": [], "bench_stdio.py": [],
             "bench_sse.py": [], "bench_mcp_http.py": [], "bench_memory.py": []},
    "quick": {
        "bench_http.py": ["--calls", "100"],
        "bench_throughput.py": ["--calls", "160", "--rounds", "1"],
        "bench_stdio.py": ["--calls", "100", "--warmup", "20"],
        "bench_sse.py": ["--events", "500", "--latency-events", "30", "--pace", "0.001"],
        "bench_mcp_http.py": ["--calls", "100", "--warmup", "20"],
        "bench_memory.py": ["--servers", "2"],
    },
}
#: Seconds one benchmark may take before it is killed (with its process group) as crashed.
TIMEOUT = {"full": 1800.0, "quick": 300.0}
FANOUT_P95_GOAL_MS = 100.0


@dataclass(frozen=True)
class Goal:
    """What a row promises: ``text`` for the table, ``met`` tested on the row's figures."""

    text: str
    met: Callable[[float, float, float], bool]  # (sdk, raw, comparison) -> met


@dataclass
class Row:
    """One line of the table. ``comparison`` is ``sdk / raw`` (kind ``ratio``) or
    ``sdk - raw`` (kind ``diff``); HTTP rows also compare with ``raw_lean``, a session with
    ``trust_env = False``; ``status`` is ``measured``, ``skipped`` or ``crashed``."""

    key: str
    measure: str
    unit: str
    sdk: float | None = None
    raw: float | None = None
    comparison: float | None = None
    comparison_kind: str = "ratio"
    raw_lean: float | None = None
    lean_comparison: float | None = None
    goal: str | None = None
    goal_met: bool | None = None
    status: str = "measured"


def row(key: str, measure: str, unit: str, sdk: float, raw: float, *, lean: float | None = None,
        kind: str = "ratio", goal: Goal | None = None) -> Row:
    comparison = sdk / raw if kind == "ratio" else sdk - raw
    return Row(key, measure, unit, sdk=sdk, raw=raw, comparison=comparison,
               comparison_kind=kind, raw_lean=lean,
               lean_comparison=None if lean is None else sdk / lean,
               goal=goal.text if goal else None,
               goal_met=goal.met(sdk, raw, comparison) if goal else None)


def at_most(bound: float) -> Goal:
    return Goal(f"≤ {bound:.2f}", lambda sdk, raw, ratio: ratio <= bound)


def at_least(bound: float) -> Goal:
    return Goal(f"≥ {bound:.2f}", lambda sdk, raw, ratio: ratio >= bound)


#: The goals of issue 16, each a ratio to a side measured in the same run.
HTTP_P50 = at_most(1.0)            # invoke_tool p50 vs the default requests session
LIST_SERVERS_P50 = at_most(1.10)   # list_servers p50 vs a GET of the same endpoint
STDIO_P50 = at_most(1.2)           # stdio round trip p50 vs the raw pipe
SSE_RATE = at_least(0.6)           # SSE events/s vs the raw parser
SSE_P95 = Goal("≤ +2 ms", lambda sdk, raw, diff: diff <= 2.0)
MCP_RAW_P50 = at_most(1.15)
OFFICIAL_P50 = at_most(1.0)        # MCP Streamable HTTP and stdio vs the official client
THREADS_TAIL = at_most(1.0)        # 32 threads: p95 and p99 vs a session per thread
THREADS_RATE = at_least(1.0)       # 32 threads: calls/s vs a session per thread
FANOUT_P95 = Goal(f"SDK < {FANOUT_P95_GOAL_MS:g} ms",
                  lambda sdk, raw, ratio: sdk < FANOUT_P95_GOAL_MS)

GOVERNED = {
    "audit_only": "audit to a file",
    "governed_cache_on": "OPA pre-check, cache on, + audit",
    "governed_cache_off": "OPA pre-check, cache off, + audit",
}


def http_rows(result: dict[str, Any]) -> Iterator[Row]:
    """bench_http: the SDK and each governed side against the same two raw sessions."""
    raw, lean = result["raw"]["p50_us"], result["raw_lean"]["p50_us"]
    yield row("http_p50", "HTTP invoke_tool, p50", "µs", result["sdk"]["p50_us"], raw,
              lean=lean, goal=HTTP_P50)
    for side, label in GOVERNED.items():
        if result["governed"] is None:
            yield Row(f"{side}_p50", f"HTTP governed invoke ({label}), p50", "µs",
                      status="skipped")
        else:
            yield row(f"{side}_p50", f"HTTP governed invoke ({label}), p50", "µs",
                      result[side]["p50_us"], raw, lean=lean)
    listing = result["list_servers"]
    yield row("list_servers_p50", "HTTP list_servers, p50", "µs", listing["sdk"]["p50_us"],
              listing["raw"]["p50_us"], lean=listing["raw_lean"]["p50_us"],
              goal=LIST_SERVERS_P50)


#: bench_throughput's 32-thread SDK sides against a session per thread.
PER_THREAD_SIDES = {"sdk": "max_workers=32", "sdk_default": "default max_workers=8"}


def throughput_rows(result: dict[str, Any]) -> Iterator[Row]:
    for threads, figures in result["throughput"].items():
        rates = figures["calls_per_s"]
        yield row(f"http_threads{threads}", f"HTTP throughput, {threads} thread"
                  f"{'s' if threads != '1' else ''} sharing a client", "calls/s",
                  rates["sdk"], rates["raw"], lean=rates["raw_lean"])
    per_thread = result["threads32"]
    threads = per_thread["threads"]
    rates, latency = per_thread["calls_per_s"], per_thread["latency_ms"]
    for side, label in PER_THREAD_SIDES.items():
        key = "threads32" if side == "sdk" else "threads32_default"
        measure = f"HTTP, {threads} threads sharing a client ({label}) vs a session per thread"
        yield row(f"{key}_calls", f"{measure}, throughput", "calls/s", rates[side],
                  rates["raw_per_thread"], lean=rates["raw_lean_per_thread"],
                  goal=THREADS_RATE)
        for quantile in ("p50", "p95", "p99"):
            yield row(f"{key}_{quantile}", f"{measure}, {quantile}", "ms",
                      latency[side][quantile], latency["raw_per_thread"][quantile],
                      lean=latency["raw_lean_per_thread"][quantile],
                      goal=None if quantile == "p50" else THREADS_TAIL)
    fanout = result["fanout"]
    latency = fanout["latency_ms"]
    for quantile in ("p50", "p95", "p99"):
        yield row(f"fanout_{quantile}", f"Gateway call from a {fanout['threads']}-thread "
                  f"fan-out, {quantile}", "ms", latency["sdk"][quantile],
                  latency["raw"][quantile], lean=latency["raw_lean"][quantile],
                  goal=FANOUT_P95 if quantile == "p95" else None)


STDIO_OFFICIAL = "stdio call_tool vs the official client (same server), p50"


def stdio_rows(result: dict[str, Any]) -> Iterator[Row]:
    yield row("stdio_p50", "stdio round trip, p50", "µs", result["sdk"]["p50_us"],
              result["raw"]["p50_us"], goal=STDIO_P50)
    yield row("stdio_sequential", "stdio throughput, sequential", "calls/s",
              result["sequential_calls_per_s"], result["raw_sequential_calls_per_s"])
    yield row("stdio_threads8", "stdio throughput, 8 threads (raw: one pipe behind a lock)",
              "calls/s", result["threads8_calls_per_s"], result["raw_threads8_calls_per_s"])
    official = result["official"]
    if official is None:
        yield Row("stdio_official_p50", STDIO_OFFICIAL, "µs", status="skipped")
    else:
        yield row("stdio_official_p50", STDIO_OFFICIAL, "µs", official["sdk"]["p50_us"],
                  official["official"]["p50_us"], goal=OFFICIAL_P50)


def sse_rows(result: dict[str, Any]) -> Iterator[Row]:
    for framing in result["framings"]:
        name = framing["framing"]
        for source, label in (("gateway", "from the gateway"),
                              ("firehose", "parsing only (firehose)")):
            rates = framing[f"{source}_events_per_s"]
            yield row(f"sse_{source}_{name}", f"SSE throughput {label}, {name} framing",
                      "events/s", rates["sdk"], rates["raw"], goal=SSE_RATE)
        latency = framing["latency_ms"]
        yield row(f"sse_latency_{name}", f"SSE delivery latency, {name} framing, p95", "ms",
                  latency["sdk"]["p95"], latency["raw"]["p95"], kind="diff", goal=SSE_P95)


#: bench_mcp_http's scenarios, as the table names them.
MCP_SCENARIOS = {
    "stateless_json": "stateless JSON, 2026-07-28 negotiated",
    "stateless_json_2025": "stateless JSON, 2025-11-25",
    "stateful_sse_2025": "stateful SSE, 2025-11-25",
}


def mcp_http_rows(result: dict[str, Any]) -> Iterator[Row]:
    """bench_mcp_http: RemoteServer.call_tool against a raw requests.post of the same message,
    and against the official async client (in the Raw column of the "vs the official client"
    rows); the goals are on the first scenario."""
    for scenario in result["scenarios"]:
        name = scenario["scenario"]
        label = MCP_SCENARIOS.get(name, name)
        main = name == "stateless_json"
        sdk = scenario["sdk"]["p50_us"]
        yield row(f"mcp_http_{name}_p50", f"MCP Streamable HTTP call_tool ({label}), p50", "µs",
                  sdk, scenario["raw"]["p50_us"], lean=scenario["raw_lean"]["p50_us"],
                  goal=MCP_RAW_P50 if main else None)
        yield row(f"mcp_http_{name}_official_p50", f"MCP Streamable HTTP call_tool ({label}) "
                  "vs the official client, p50", "µs", sdk,
                  scenario["official"]["p50_us"], goal=OFFICIAL_P50 if main else None)


#: bench_memory's rows: key -> (measure, the figure of each side).
MEMORY_ROWS = {
    "memory_client": ("the client's own RSS increase", "client_increase_mb"),
    "memory_process": ("the whole process's RSS", "with_servers_mb"),
    "memory_servers": ("the servers' RSS, summed", "children_mb"),
}


def memory_measure(label: str, servers: int | str) -> str:
    return (f"Memory, one client with {servers} local stdio servers vs the official client "
            f"with {servers} stdio sessions: {label}")


def memory_rows(result: dict[str, Any]) -> Iterator[Row]:
    for key, (label, figure) in MEMORY_ROWS.items():
        yield row(key, memory_measure(label, result["servers"]), "MB",
                  result["sdk"][figure], result["official"][figure])


def skipped_rows(script: str) -> list[Row]:
    """The rows of a benchmark that needs the tools venv, when ``--no-governed`` skips it."""
    if script == "bench_mcp_http.py":
        return [Row(f"mcp_http_{name}{kind}_p50", f"MCP Streamable HTTP call_tool ({label})"
                    f"{' vs the official client' * bool(kind)}, p50", "µs", status="skipped")
                for name, label in MCP_SCENARIOS.items() for kind in ("", "_official")]
    return [Row(key, memory_measure(label, 8), "MB", status="skipped")
            for key, (label, _) in MEMORY_ROWS.items()]


#: The benchmarks in the order they run, each with the rows it makes.
BENCHMARKS: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "bench_http.py": http_rows,
    "bench_throughput.py": throughput_rows,
    "bench_stdio.py": stdio_rows,
    "bench_sse.py": sse_rows,
    "bench_mcp_http.py": mcp_http_rows,
    "bench_memory.py": memory_rows,
}
#: The benchmarks that need the tools venv (the official MCP SDK) for all their rows.
NEED_TOOLS = ("bench_mcp_http.py", "bench_memory.py")


def run_benchmark(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one benchmark in its own process group; return its JSON. Raises RuntimeError
    with its stderr's tail if it fails, or after killing the group if it overruns."""
    child = subprocess.Popen([sys.executable, str(HERE / script), "--json", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except BaseException:  # a timeout, or Ctrl-C: the group (its gateway, engines) goes too
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"{script} exited with {child.returncode}: {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(stdout)
    return result


def machine_facts(mode: str) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                            capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "commit": commit or None,
        "load_average_before": round(os.getloadavg()[0], 2),
    }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f} {unit}"


def lean_text(r: Row) -> str:
    return "" if r.lean_comparison is None else f"{r.lean_comparison:.2f}"


def comparison_text(r: Row) -> str:
    if r.comparison is None:
        return r.status
    if r.comparison_kind == "diff":
        return f"{r.comparison:+.2f} {r.unit}"
    return f"{r.comparison:.2f}"


def met_text(r: Row) -> str:
    if r.goal is None:
        return ""
    return {True: "pass", False: "**MISSED**", None: r.status}[r.goal_met]


def misses(rows: list[Row]) -> list[str]:
    return [f"{r.measure}: SDK {fmt(r.sdk, r.unit)}, raw {fmt(r.raw, r.unit)}, SDK vs raw "
            f"{comparison_text(r)} (goal {r.goal})" for r in rows if r.goal_met is False]


def markdown(facts: dict[str, Any], rows: list[Row]) -> str:
    lines = [
        f"Measured with `python benchmarks/run_all.py{' --quick' * (facts['mode'] == 'quick')}`"
        f" on {facts['date']}: {facts['cpu_count']} CPUs, {facts['python']}, "
        f"{facts['platform']}, commit {facts['commit']}, load average "
        f"{facts['load_average_before']} before the run and {facts['load_average_after']} "
        "after. SDK vs raw is SDK / raw (for a latency, below 1 is faster than raw; for a "
        "throughput, above 1), or SDK - raw where it has a unit. Raw is what people write; "
        "for HTTP, lean raw is the same session with trust_env = False, as the SDK's. In the "
        "rows \"vs the official client\", Raw is the official async MCP client; in the rows "
        "\"vs a session per thread\", Raw is a default requests session per thread.",
        "",
        "| Measure | SDK | Raw | SDK vs raw | SDK vs lean raw | Goal | Met |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.measure} | {fmt(r.sdk, r.unit)} | {fmt(r.raw, r.unit)} | "
                     f"{comparison_text(r)} | {lean_text(r)} | {r.goal or ''} | "
                     f"{met_text(r)} |")
    missed = misses(rows)
    lines += ["", "Goals missed: " + ("; ".join(missed) if missed else "none.")]
    fanout = next((r for r in rows if r.key == "fanout_p95" and r.sdk), None)
    if fanout is not None and fanout.sdk is not None:
        lines.append(f"The p95 of a gateway call from the 16-thread fan-out is "
                     f"{fanout.sdk:.1f} ms, {FANOUT_P95_GOAL_MS / fanout.sdk:.0f}x below the "
                     f"original {FANOUT_P95_GOAL_MS:g} ms target.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a handful of calls per benchmark (smoke test; figures are noise)")
    parser.add_argument("--out", type=Path, default=RESULTS, metavar="DIR",
                        help=f"folder for latest.md and latest.json (default {RESULTS})")
    parser.add_argument("--no-governed", action="store_true",
                        help="skip the governed HTTP rows (they need the tools venv)")
    parser.add_argument("--tools-python", metavar="PATH",
                        help="the tools venv's python (default: make or reuse .tools-venv)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    http_args = ["--no-governed"]
    if not args.no_governed:
        try:
            http_args = ["--tools-python", str(tools_python(args.tools_python))]
        except ToolsUnavailable as exc:
            print(f"run_all.py: the governed rows need the real OPA engine of the tools venv, "
                  f"which is not usable; run with --no-governed to skip them. Cause: {exc}",
                  file=sys.stderr)
            return 2
    facts = machine_facts(mode)
    rows: list[Row] = []
    results: dict[str, Any] = {}
    crashed = []
    for script, make_rows in BENCHMARKS.items():
        extra = SIZES[mode][script] + (http_args if script == "bench_http.py" else [])
        if script == "bench_stdio.py":  # its official client's side needs the tools venv
            extra += http_args if "--tools-python" in http_args else ["--no-official"]
        if script in NEED_TOOLS:  # the official server and client: the tools venv
            if "--tools-python" not in http_args:
                rows += skipped_rows(script)
                continue
            extra += http_args
        print(f"run_all.py: {script} {' '.join(extra)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            results[script] = run_benchmark(script, extra, TIMEOUT[mode])
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            print(f"run_all.py: {script} CRASHED: {exc}", file=sys.stderr, flush=True)
            crashed.append(script)
            rows.append(Row(f"{Path(script).stem}_crashed", f"{script} crashed (its rows are "
                            "missing; see stderr)", "", status="crashed"))
            continue
        print(f"run_all.py: {script} took {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
        rows += make_rows(results[script])
    facts["load_average_after"] = round(os.getloadavg()[0], 2)
    table = markdown(facts, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text("# sark_sync benchmarks: the SDK against raw "
                                        "baselines, same run\n\n" + table, encoding="utf-8")
    report = {"machine": facts, "rows": [asdict(r) for r in rows], "crashed": crashed,
              "benchmarks": results}
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n",
                                          encoding="utf-8")
    print(table)
    for miss in misses(rows):
        print(f"GOAL MISSED: {miss}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
