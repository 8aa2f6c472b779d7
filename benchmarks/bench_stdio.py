"""LocalServer.call_tool over stdio versus a raw Popen write/readline loop, same run.

Both sides talk to the demo MCP server (``python -m sark_sync.testing.demo_server``), each to
its own process, in alternating batches. The raw side is the least a client can do: write a
``tools/call`` line, flush, read one line, ``json.loads`` it. The SDK side is
``LocalServer.call_tool`` (id correlation through the reader thread, argument checks, the
ToolResult). Also printed: calls/s with 8 threads sharing one LocalServer, against 8 threads
sharing the raw client behind a lock (one pipe: the least a threaded raw client can do), the
sides taking turns over ``THREAD_ROUNDS`` rounds, the median of each.

    python benchmarks/bench_stdio.py [--calls 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import sark_sync

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import interleaved, print_table, run_threads, summary, taking_turns

SERVER = [sys.executable, "-m", "sark_sync.testing.demo_server"]
ARGS = {"text": "hello"}
#: Rounds of the 8-thread throughput per side, the sides taking turns.
THREAD_ROUNDS = 3


def child_env() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


class RawClient:
    """The baseline: blocking write + readline on the child's pipes, nothing else."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update(child_env())
        self.process = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env)
        self.next_id = 0
        self.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                 "clientInfo": {"name": "raw", "version": "0"}})
        self.write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.write({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.process.stdout is not None
        return json.loads(self.process.stdout.readline())["result"]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process.stdout.close()


def measure(calls: int) -> dict[str, Any]:
    raw = RawClient()
    try:
        with sark_sync.LocalServer(SERVER, env=child_env()) as server:

            def sdk() -> Any:
                return server.call_tool("echo", ARGS)

            def baseline() -> Any:
                return raw.call("tools/call", {"name": "echo", "arguments": ARGS})

            lock = threading.Lock()

            def locked_baseline() -> Any:
                with lock:
                    return baseline()

            assert sdk().text == "hello" and baseline()["content"][0]["text"] == "hello"
            samples = interleaved([("raw", baseline), ("sdk", sdk)], calls)
            rates: dict[str, list[float]] = {"raw": [], "sdk": []}
            sides = [("raw", locked_baseline), ("sdk", sdk)]
            for round_ in range(THREAD_ROUNDS):
                for name, func in taking_turns(sides, round_):
                    rates[name].append(throughput(func, threads=8, calls=calls))
    finally:
        raw.close()
    raw_stats, sdk_stats = summary(samples["raw"]), summary(samples["sdk"])
    return {
        "benchmark": "stdio_call_tool",
        "calls": len(samples["sdk"]),
        "raw": raw_stats,
        "sdk": sdk_stats,
        "ratio_p50": sdk_stats["p50_us"] / raw_stats["p50_us"],
        "ratio_p95": sdk_stats["p95_us"] / raw_stats["p95_us"],
        "sequential_calls_per_s": 1e6 / sdk_stats["mean_us"],
        "raw_sequential_calls_per_s": 1e6 / raw_stats["mean_us"],
        "threads8_calls_per_s": statistics.median(rates["sdk"]),
        "raw_threads8_calls_per_s": statistics.median(rates["raw"]),
        "threads8_ratio": statistics.median(rates["sdk"]) / statistics.median(rates["raw"]),
    }


def throughput(call: Callable[[], Any], *, threads: int, calls: int) -> float:
    elapsed, latencies = run_threads(call, threads, calls)
    return len(latencies) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(args.calls)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"call_tool over stdio vs raw write/readline, {result['calls']} calls each")
    print_table({name: result[name] for name in ("raw", "sdk")})
    print(f"ratio sdk/raw: p50 {result['ratio_p50']:.3f}  p95 {result['ratio_p95']:.3f}"
          "  (goal: p50 <= 1.3)")
    print(f"throughput, calls/s: sequential sdk {result['sequential_calls_per_s']:.0f}, raw "
          f"{result['raw_sequential_calls_per_s']:.0f}; 8 threads sdk "
          f"{result['threads8_calls_per_s']:.0f}, raw behind a lock "
          f"{result['raw_threads8_calls_per_s']:.0f} (ratio {result['threads8_ratio']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
