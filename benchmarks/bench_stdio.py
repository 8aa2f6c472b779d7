"""LocalServer.call_tool over stdio versus a raw Popen write/readline loop, same run.

Both sides talk to the demo MCP server (``python -m sark_sync.testing.demo_server``), each to
its own process, in alternating batches. The raw side is the least a client can do: write a
``tools/call`` line, flush, read one line, ``json.loads`` it. The SDK side is
``LocalServer.call_tool`` (id correlation through the reader thread, argument checks, the
ToolResult). Also printed: calls/s with 8 threads sharing one LocalServer.

    python benchmarks/bench_stdio.py [--calls 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sark_sync

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import interleaved, print_table, summary

SERVER = [sys.executable, "-m", "sark_sync.testing.demo_server"]
ARGS = {"text": "hello"}


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

            assert sdk().text == "hello" and baseline()["content"][0]["text"] == "hello"
            samples = interleaved([("raw", baseline), ("sdk", sdk)], calls)
            threaded = throughput(server, threads=8, calls=calls)
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
        "threads8_calls_per_s": threaded,
    }


def throughput(server: sark_sync.LocalServer, *, threads: int, calls: int) -> float:
    per_thread = max(1, calls // threads)
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            server.call_tool("echo", ARGS)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - began)


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
    print(f"throughput: sequential {result['sequential_calls_per_s']:.0f} calls/s, "
          f"8 threads {result['threads8_calls_per_s']:.0f} calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
