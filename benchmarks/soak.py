"""Soak: many threads share one GatewayClient against peers that misbehave at random.

Not a benchmark of speed: a hunt for what only shows under load and time. ``--threads``
threads (64) make ``--calls`` calls each (10,000) on ONE client, each call with its own
deadline drawn from 0.5..1.5 s, against:

- a raw-socket HTTP peer (``tests/hostile/http_peer.py``) in a child process, so that its
  threads do not share this process's GIL with the client's. It answers most calls, and at
  random: 503 (with or without ``Retry-After: 0``), 429 with ``Retry-After``, a reset
  connection, a stall past any deadline, headers or a body trickled one byte at a time, a body
  cut short, endless ``100 Continue``, a non-JSON 200;
- a local stdio server (the demo MCP server) that a small share of calls crash at once
  (``crash`` tool), so that it is restarted over and over while other calls are in flight.

It prints the calls by outcome (errors by type), every untyped error (anything not a
``sark_sync.GatewayError``) with one traceback per type, the largest overrun of a call past
its own deadline (elapsed - timeout, per call), and the threads, file descriptors and child
processes before the client was built and after ``client.close()``. Goals: no untyped error,
max overrun <= ``--max-overrun`` (0.1 s), nothing leaked; the exit code is 1 if one is missed.

    python benchmarks/soak.py                    # 64 x 10,000
    python benchmarks/soak.py --quick            # 8 x 200, a minute at most
    python benchmarks/soak.py --threads 16 --calls 1000 --seed 7 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile.http_peer import CLOSE, RESET, HostilePeer, Pause, Request, answer  # noqa: E402

import sark_sync  # noqa: E402
from sark_sync import (  # noqa: E402
    BreakerPolicy,
    GatewayClient,
    GatewayError,
    RestartPolicy,
    RetryPolicy,
)

API_KEY = "soak-api-key-0123456789"
#: What the peer does with a request, and how often (weights out of 1000).
PEER_FAULTS = {
    "ok": 870, "503": 25, "503_retry_after": 10, "429_retry_after": 5, "reset": 20,
    "stall": 10, "trickle_headers": 10, "trickle_body": 10, "truncated_body": 20,
    "endless_continue": 5, "not_json": 15,
}
#: Share of calls made to the local stdio server, and share of those that crash it.
LOCAL_SHARE = 0.1
CRASH_SHARE = 0.005
#: Each call's deadline is drawn from this range (seconds).
TIMEOUTS = (0.5, 1.5)
#: Longer than any deadline: a stalled peer connection closes after this, not before.
STALL = 2.0
#: Between two trickled bytes.
TRICKLE = 0.05
#: How long the leak check waits for threads, fds and children to come back to the baseline.
SETTLE = 10.0


# -- the peer (runs in a child process) -------------------------------------------------------


def _invoke_body(request: Request) -> bytes:
    try:
        payload = json.loads(request.body)
    except ValueError:
        payload = {}
    result = {"content": [{"type": "text", "text": "ok"}], "isError": False}
    return json.dumps({"request_id": "soak", "server": payload.get("server", "remote"),
                       "tool": payload.get("tool", "echo"), "result": result}).encode()


def _script(kind: str, request: Request) -> Iterator[Any]:
    """The answer to one request, as a HostilePeer script."""
    if kind == "ok":
        yield answer(200, _invoke_body(request))
    elif kind in ("503", "503_retry_after", "429_retry_after"):
        status = int(kind[:3])
        headers = {"Retry-After": "0"} if kind.endswith("retry_after") else {}
        yield answer(status, b'{"error":{"code":"unavailable","message":"soak"}}',
                     headers=headers, reason="Busy")
    elif kind == "reset":
        yield RESET
    elif kind == "stall":
        yield Pause(STALL)
        yield CLOSE
    elif kind == "trickle_headers":
        yield b"HTTP/1.1 200 OK\r\n"
        for _ in range(int(STALL / TRICKLE)):
            yield b"X"
            yield Pause(TRICKLE)
        yield CLOSE
    elif kind == "trickle_body":
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        for _ in range(int(STALL / TRICKLE)):
            yield b" "
            yield Pause(TRICKLE)
        yield CLOSE
    elif kind == "truncated_body":
        body = _invoke_body(request)
        yield answer(200, body)[:-len(body) // 2]
        yield CLOSE
    elif kind == "endless_continue":
        for _ in range(int(STALL / TRICKLE)):
            yield b"HTTP/1.1 100 Continue\r\n\r\n"
            yield Pause(TRICKLE)
        yield CLOSE
    else:  # not_json
        yield answer(200, b"<html>maintenance</html>", content_type="text/html")


def serve_peer(seed: int) -> int:
    """Serve until stdin closes; print the URL first."""
    rng = random.Random(seed)
    lock = threading.Lock()
    kinds, weights = list(PEER_FAULTS), list(PEER_FAULTS.values())

    def handler(request: Request) -> Iterator[Any]:
        with lock:
            kind = rng.choices(kinds, weights)[0]
        return _script(kind, request)

    with HostilePeer(handler) as peer:
        print(peer.url, flush=True)
        sys.stdin.read()
    return 0


# -- resources ----------------------------------------------------------------------------------


def _children() -> set[int]:
    """Live processes whose parent is this one."""
    mine = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == mine and fields[0] != "Z":
            found.add(int(entry))
    return found


def resources() -> dict[str, Any]:
    """Threads (process-wide singletons apart), open fds and child processes."""
    threads = [t.name for t in threading.enumerate()
               if not t.name.startswith("sark_sync-singleton-")]
    return {"threads": sorted(threads), "fds": len(os.listdir("/proc/self/fd")),
            "children": sorted(_children())}


def leaks(before: dict[str, Any]) -> list[str]:
    """What is still there ``SETTLE`` seconds after the client closed, beyond ``before``."""
    deadline = time.monotonic() + SETTLE
    while True:
        now = resources()
        extra_threads = list((Counter(now["threads"]) - Counter(before["threads"])).elements())
        problems = []
        if extra_threads:
            problems.append(f"threads: {extra_threads}")
        if now["fds"] > before["fds"]:
            problems.append(f"fds: {now['fds'] - before['fds']} more")
        if set(now["children"]) - set(before["children"]):
            problems.append(f"children: {sorted(set(now['children']) - set(before['children']))}")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.05)


# -- the load -------------------------------------------------------------------------------------


class Tally:
    """One thread's results, merged at the end (no lock on the hot path)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.late: Counter[str] = Counter()  # calls past the overrun goal, by outcome
        self.overruns: dict[str, float] = {}  # the largest overrun, by outcome
        self.untyped: dict[str, str] = {}
        self.max_overrun = float("-inf")
        self.worst = ""

    def merge(self, other: Tally) -> None:
        self.outcomes.update(other.outcomes)
        self.late.update(other.late)
        for key, overrun in other.overruns.items():
            self.overruns[key] = max(overrun, self.overruns.get(key, overrun))
        for name, trace in other.untyped.items():
            self.untyped.setdefault(name, trace)
        if other.max_overrun > self.max_overrun:
            self.max_overrun, self.worst = other.max_overrun, other.worst


def call_loop(client: GatewayClient, index: int, args: argparse.Namespace,
              start: threading.Barrier, tally: Tally, progress: list[int]) -> None:
    rng = random.Random(args.seed * 100_003 + index)
    start.wait()
    for n in range(args.calls):
        timeout = rng.uniform(*TIMEOUTS)
        local = rng.random() < LOCAL_SHARE
        tool = "crash" if local and rng.random() < CRASH_SHARE else "echo"
        server = "local" if local else "remote"
        arguments = {"code": 3} if tool == "crash" else {"text": f"{index}-{n}"}
        started = time.perf_counter()
        try:
            client.invoke_tool(server, tool, arguments, timeout=timeout)
            outcome = "ok"
        except GatewayError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # the soak exists to find these
            outcome = f"UNTYPED {type(exc).__name__}"
            tally.untyped.setdefault(type(exc).__name__, traceback.format_exc())
        overrun = time.perf_counter() - started - timeout
        key = f"{server}/{tool} {outcome}"
        tally.outcomes[key] += 1
        tally.overruns[key] = max(overrun, tally.overruns.get(key, overrun))
        if overrun > args.max_overrun:
            tally.late[key] += 1
        if overrun > tally.max_overrun:
            tally.max_overrun = overrun
            tally.worst = f"{server}/{tool} -> {outcome}, timeout {timeout:.3f}s"
        progress[index] = n + 1


def soak(args: argparse.Namespace) -> dict[str, Any]:
    env = {"PYTHONPATH": str(ROOT)}
    peer = subprocess.Popen([sys.executable, __file__, "--serve-peer", str(args.seed)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        url = peer.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the peer did not start: {url!r}")
        before = resources()
        client = GatewayClient(
            url, api_key=API_KEY, max_workers=args.threads,
            retry=RetryPolicy(backoff_base=0.02, backoff_max=0.2, retry_after_max=1.0),
            breaker=BreakerPolicy(failure_threshold=20, recovery_timeout=0.5),
            restart=RestartPolicy(max_restarts=1000, window=1.0, backoff=0.0),
            local_servers={"local": {
                "command": [sys.executable, "-m", "sark_sync.testing.demo_server"], "env": env}},
        )
        tally = Tally()
        tallies = [Tally() for _ in range(args.threads)]
        progress = [0] * args.threads
        start = threading.Barrier(args.threads + 1)
        threads = [threading.Thread(target=call_loop, name=f"soak-{i}", args=(
            client, i, args, start, tallies[i], progress))
            for i in range(args.threads)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.monotonic()
        total = args.threads * args.calls
        while True:
            running = next((thread for thread in threads if thread.is_alive()), None)
            if running is None:
                break
            running.join(10.0)
            if not args.json:
                print(f"  ... {sum(progress)}/{total} calls, {time.monotonic() - began:.0f}s",
                      file=sys.stderr, flush=True)
        for thread in threads:
            thread.join()
        wall = time.monotonic() - began
        for one in tallies:
            tally.merge(one)
        client.close()
        leaked = leaks(before)
        after = resources()
    finally:
        peer.stdin.close()  # type: ignore[union-attr]
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
        peer.stdout.close()  # type: ignore[union-attr]
    untyped = sum(n for key, n in tally.outcomes.items() if " UNTYPED " in key)
    goals = {"no_untyped_errors": untyped == 0,
             "max_overrun_ok": tally.max_overrun <= args.max_overrun,
             "nothing_leaked": not leaked}
    return {
        "benchmark": "soak", "sark_sync": sark_sync.__version__, "seed": args.seed,
        "threads": args.threads, "calls_per_thread": args.calls, "calls": total,
        "wall_s": round(wall, 1), "outcomes": dict(sorted(tally.outcomes.items())),
        "max_overrun_ms_by_outcome": {key: round(value * 1000, 1)
                                      for key, value in sorted(tally.overruns.items())},
        "late_calls": dict(sorted(tally.late.items())),
        "untyped_errors": untyped, "untyped_tracebacks": tally.untyped,
        "max_overrun_s": round(tally.max_overrun, 4), "worst_call": tally.worst,
        "before": {key: (len(value) if isinstance(value, list) else value)
                   for key, value in before.items()},
        "after": {key: (len(value) if isinstance(value, list) else value)
                  for key, value in after.items()},
        "leaked": leaked, "goals": goals, "ok": all(goals.values()),
    }


def report(result: dict[str, Any], max_overrun: float) -> None:
    print(f"soak: {result['threads']} threads x {result['calls_per_thread']} calls = "
          f"{result['calls']} calls in {result['wall_s']}s (seed {result['seed']}, "
          f"sark_sync {result['sark_sync']})")
    print("outcomes (server/tool outcome: calls, max overrun, calls past the goal):")
    for key, count in result["outcomes"].items():
        print(f"  {key}: {count}, {result['max_overrun_ms_by_outcome'][key]:.1f} ms, "
              f"{result['late_calls'].get(key, 0)}")
    print(f"untyped errors: {result['untyped_errors']}")
    for name, trace in result["untyped_tracebacks"].items():
        print(f"--- first {name}:\n{trace}")
    print(f"max overrun past a call's deadline: {result['max_overrun_s'] * 1000:.1f} ms "
          f"(goal <= {max_overrun * 1000:.0f} ms; {result['worst_call']})")
    for when in ("before", "after"):
        print(f"{when}: " + ", ".join(f"{k} {v}" for k, v in result[when].items()))
    print("leaked: " + ("; ".join(result["leaked"]) or "none"))
    missed = [goal for goal, met in result["goals"].items() if not met]
    print("goals: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--calls", type=int, default=10_000, help="calls per thread")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 threads x 200 calls")
    parser.add_argument("--max-overrun", type=float, default=0.1, help="goal, in seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve-peer", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_peer is not None:
        return serve_peer(args.serve_peer)
    if args.quick:
        args.threads, args.calls = 8, 200
    if args.threads < 1 or args.calls < 1:
        parser.error("--threads and --calls must be >= 1")
    result = soak(args)
    if args.json:
        print(json.dumps(result))
    else:
        report(result, args.max_overrun)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
