"""LocalServer.call_tool over stdio versus a raw Popen write/readline loop, same run.

Both sides talk to the demo MCP server (``python -m sark_sync.testing.demo_server``), each to
its own process, in alternating batches. The raw side is the least a client can do: write a
``tools/call`` line, flush, read one line, ``json.loads`` it. The SDK side is
``LocalServer.call_tool`` (id correlation through the reader thread, argument checks, the
ToolResult). Also printed: calls/s with 8 threads sharing one LocalServer, against 8 threads
sharing the raw client behind a lock (one pipe: the least a threaded raw client can do), the
sides taking turns over ``THREAD_ROUNDS`` rounds, the median of each.

Then the official async client over stdio, on another server both can run: the official SDK's
(``tests/realcomp/mcp_sdk_server.py``, mcp 2.3.0, run by the tools venv's python). The SDK
side is ``LocalServer`` spawning that command; the official side is the SDK's own
``stdio_client`` + ``ClientSession`` spawning the same command, on one event loop, in a child
process of the tools venv's python (``_mcp_official_stdio.py latency``; ``mcp`` is not
installed beside sark_sync), which prints its timings as JSON. Both make the same sequential
``call_tool("echo", {"text": "hello"})`` calls after the same warm-up; the SDK's calls are
made in two halves, before and after the official client's run, so that drift lands on both.
``--pin same`` or ``--pin split`` pins the first part: this process to CPU 0, both servers to
CPU 0 or to CPU 1, to measure each placement on its own (docs/PERFORMANCE.md says why).
``--no-official`` skips this part (no tools venv needed); ``--tools-python`` names the venv's
interpreter instead of making or reusing ``<repo>/.tools-venv``.

    python benchmarks/bench_stdio.py [--calls 3000] [--json] [--no-official]
                                     [--tools-python PATH] [--pin same|split]
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

from _opa_process import add_tools_python_option, tools_python_or_exit
from _stats import WARMUP, interleaved, print_table, run_threads, summary, taking_turns

HERE = Path(__file__).resolve().parent
SERVER = [sys.executable, "-m", "sark_sync.testing.demo_server"]
#: The server both sides of the official comparison run, with the tools venv's python.
OFFICIAL_SERVER = HERE.parent / "tests" / "realcomp" / "mcp_sdk_server.py"
OFFICIAL_CLIENT = HERE / "_mcp_official_stdio.py"
OFFICIAL_SERVER_ENV = {"SARK_TEST_MCP_LOG_LEVEL": "WARNING"}
#: Bound of the official client's child process, seconds.
OFFICIAL_TIMEOUT = 600.0
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


def pin(placement: str | None, servers: list[int | None]) -> dict[str, Any]:
    """``--pin``: this process on CPU 0, each server on CPU 0 (``same``) or CPU 1 (``split``).
    The round trip depends on where the scheduler puts the two sides (docs/PERFORMANCE.md):
    pinned, each placement can be measured on its own. Returns the CPUs each side may use."""
    pids = [pid for pid in servers if pid is not None]
    if placement is not None:
        os.sched_setaffinity(0, {0})
        for pid in pids:
            os.sched_setaffinity(pid, {0 if placement == "same" else 1})
    return {"client": sorted(os.sched_getaffinity(0)),
            "servers": [sorted(os.sched_getaffinity(pid)) for pid in pids]}


def measure(calls: int, warmup: int = WARMUP, placement: str | None = None) -> dict[str, Any]:
    cpus = os.sched_getaffinity(0)  # given back at the end: the official part is not pinned
    raw = RawClient()
    try:
        with sark_sync.LocalServer(SERVER, env=child_env()) as server:
            cpus_used = pin(placement, [raw.process.pid, server.pid])

            def sdk() -> Any:
                return server.call_tool("echo", ARGS)

            def baseline() -> Any:
                return raw.call("tools/call", {"name": "echo", "arguments": ARGS})

            lock = threading.Lock()

            def locked_baseline() -> Any:
                with lock:
                    return baseline()

            assert sdk().text == "hello" and baseline()["content"][0]["text"] == "hello"
            samples = interleaved([("raw", baseline), ("sdk", sdk)], calls, warmup=warmup)
            rates: dict[str, list[float]] = {"raw": [], "sdk": []}
            sides = [("raw", locked_baseline), ("sdk", sdk)]
            for round_ in range(THREAD_ROUNDS):
                for name, func in taking_turns(sides, round_):
                    rates[name].append(throughput(func, threads=8, calls=calls))
    finally:
        raw.close()
        os.sched_setaffinity(0, cpus)
    raw_stats, sdk_stats = summary(samples["raw"]), summary(samples["sdk"])
    return {
        "benchmark": "stdio_call_tool",
        "placement": placement or "scheduler",
        "cpus": cpus_used,
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


def official_client(python: Path, calls: int, warmup: int) -> dict[str, Any]:
    """The official client's samples, from its child process (which starts its own server)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")}
    done = subprocess.run([str(python), str(OFFICIAL_CLIENT), "latency", "--calls", str(calls),
                           "--warmup", str(warmup), "--", str(python), str(OFFICIAL_SERVER)],
                          capture_output=True, text=True, timeout=OFFICIAL_TIMEOUT, check=False,
                          stdin=subprocess.DEVNULL, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the official stdio client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure_official(python: Path, calls: int, warmup: int) -> dict[str, Any]:
    """LocalServer against the official client over stdio, on the official SDK's server."""
    command = [str(python), str(OFFICIAL_SERVER)]
    with sark_sync.LocalServer(command, env=OFFICIAL_SERVER_ENV) as server:

        def sdk() -> Any:
            return server.call_tool("echo", ARGS)

        assert sdk().text == "hello"
        first = interleaved([("sdk", sdk)], calls // 2, warmup=warmup)
        theirs = official_client(python, calls, warmup)
        second = interleaved([("sdk", sdk)], calls - calls // 2, warmup=0)
    sdk_stats = summary(first["sdk"] + second["sdk"])
    official_stats = summary(theirs["samples"])
    return {
        "server": "tests/realcomp/mcp_sdk_server.py",
        "calls": len(first["sdk"]) + len(second["sdk"]),
        "official_protocol_version": theirs.get("protocol_version"),
        "sdk": sdk_stats,
        "official": official_stats,
        "ratio_p50": sdk_stats["p50_us"] / official_stats["p50_us"],
    }


def throughput(call: Callable[[], Any], *, threads: int, calls: int) -> float:
    elapsed, latencies = run_threads(call, threads, calls)
    return len(latencies) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"calls per side before measuring (default {WARMUP})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-official", action="store_true",
                        help="skip the official client's side (it needs the tools venv)")
    parser.add_argument("--pin", choices=("same", "split"), default=None,
                        help="pin the client to CPU 0 and both servers to CPU 0 (same) or 1 "
                        "(split); default: where the scheduler puts them")
    add_tools_python_option(parser)
    args = parser.parse_args(argv)
    if args.pin == "split" and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin split needs 2 CPUs")
    python = None if args.no_official else tools_python_or_exit(
        args.tools_python, "bench_stdio.py: the official client's side needs the tools venv, "
        "which is not usable; run with --no-official to skip it. Cause: ")
    result = measure(args.calls, args.warmup, args.pin)
    result["official"] = None if python is None else measure_official(
        python, args.calls, args.warmup)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"call_tool over stdio vs raw write/readline, {result['calls']} calls each, "
          f"placement: {result['placement']}")
    print_table({name: result[name] for name in ("raw", "sdk")})
    print(f"ratio sdk/raw: p50 {result['ratio_p50']:.3f}  p95 {result['ratio_p95']:.3f}"
          "  (goal: p50 <= 1.2)")
    print(f"throughput, calls/s: sequential sdk {result['sequential_calls_per_s']:.0f}, raw "
          f"{result['raw_sequential_calls_per_s']:.0f}; 8 threads sdk "
          f"{result['threads8_calls_per_s']:.0f}, raw behind a lock "
          f"{result['raw_threads8_calls_per_s']:.0f} (ratio {result['threads8_ratio']:.2f})")
    official = result["official"]
    if official is not None:
        print(f"\ncall_tool over stdio vs the official async client, same server "
              f"({official['server']}), {official['calls']} calls each")
        print_table({name: official[name] for name in ("official", "sdk")})
        print(f"ratio sdk/official p50 {official['ratio_p50']:.3f}  (goal: <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
