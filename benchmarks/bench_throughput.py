"""invoke_tool under concurrency versus raw ``requests``, same run: calls/s and fan-out latency.

Both sides call the same tool on the same LocalGateway (a child process on 127.0.0.1). The SDK
side is one ``GatewayClient`` shared by every thread, made with ``max_workers=32`` so that its
pool slots never make a thread wait (with the default 8, the 32-thread row would measure the
slots); governance is off, as in bench_http's ``sdk`` row. The raw side is one
``requests.Session`` shared by every thread, with an ``HTTPAdapter`` pool sized like the
SDK's (``pool_maxsize=32``) and the very request the SDK sends: one shared session is what
the SDK itself holds, so the ratio isolates the SDK's per-call work from the choice of
connection strategy. As in bench_http, two raw sides: ``raw`` is the default session, which
re-reads proxy settings from the environment on every call, and ``raw_lean`` the same with
``trust_env = False`` (which the SDK sets too), to show the SDK's own overhead.

- **throughput**: 1, 8 and 32 threads share the client (or the session), ``--calls`` calls
  in all per side and round, started together at a barrier; calls/s is the median over
  ``--rounds`` rounds, the sides taking turns (the order reversed every other round) so that
  drift in the machine's load lands on both;
- **32 threads against a session per thread**: in the same 32-thread rounds, two more raw
  sides, ``raw_per_thread`` (each thread its own default ``requests.Session``, so its own
  connection: what a threaded program without a shared client often does) and
  ``raw_lean_per_thread`` (the same with ``trust_env = False``), and one more SDK side,
  ``sdk_default``: a ``GatewayClient`` with the default ``max_workers=8``, whose 8 slots the
  32 threads outnumber (a thread waits for a free slot; the wait is in its latency). The
  per-thread sessions are made and warmed once, each thread of a round taking one of its own,
  as a long-lived thread would keep it. Every call's latency at 32 threads, p50/p95/p99 over
  all rounds, and calls/s, for every side;
- **fan-out**: 16 threads each calling in a loop, like a Celery worker with 16 threads or a
  web server's thread pool; the latency of every single full call (validation, deadline,
  breaker, retries, the round trip, the result) under that load, p50/p95/p99 over all rounds.
  The original target was a p95 under 100 ms.

    python benchmarks/bench_throughput.py [--calls 2000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway_process import API_KEY, gateway_process
from _stats import WARMUP, percentile, run_threads, taking_turns

import sark_sync

PARAMETERS = {"text": "hello"}
THREAD_COUNTS = (1, 8, 32)
#: The thread count that also runs against a session per thread and the default client.
PER_THREAD = 32
FANOUT_THREADS = 16
#: Both sides' pool: the most threads that ever call at once.
POOL_SIZE = max(*THREAD_COUNTS, FANOUT_THREADS)
#: The original target for a gateway call's p95 from the fan-out, in milliseconds.
FANOUT_P95_GOAL_MS = 100.0

Call = Callable[[], Any]
Runs = list[tuple[float, list[float]]]


def alternating(sides: dict[str, Call], threads: int, calls: int, rounds: int
                ) -> dict[str, Runs]:
    """Every side warmed, then ``rounds`` rounds of :func:`run_threads`, the sides taking
    turns (the order reversed every other round)."""
    for call in sides.values():
        run_threads(call, threads, max(WARMUP, threads))
    runs: dict[str, Runs] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(rounds):
        for name in taking_turns(order, round_):
            runs[name].append(run_threads(sides[name], threads, calls))
    return runs


def calls_per_s(runs: Runs) -> float:
    return statistics.median(len(latencies) / elapsed for elapsed, latencies in runs)


def latency_ms(runs: Runs) -> dict[str, float]:
    samples = [value for _, latencies in runs for value in latencies]
    return {f"p{int(q * 100)}": percentile(samples, q) * 1e3 for q in (0.50, 0.95, 0.99)}


def raw_caller(url: str, *, trust_env: bool) -> tuple[requests.Session, Call]:
    """A session shared by the threads, its pool sized like the SDK's, and a call on it."""
    session = requests.Session()
    session.trust_env = trust_env
    session.mount("http://", HTTPAdapter(pool_maxsize=POOL_SIZE))
    body = {"server": "demo", "tool": "echo", "parameters": PARAMETERS}

    def raw() -> Any:
        # The very request the SDK sends, so the gateway does the same work for every side.
        headers = {"X-API-Key": API_KEY, "X-Request-ID": str(uuid.uuid4()),
                   "Idempotency-Key": str(uuid.uuid4())}
        response = session.post(url + "/api/v1/invoke", json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    return session, raw


def per_thread_caller(url: str, threads: int, *, trust_env: bool
                      ) -> tuple[list[requests.Session], Call]:
    """``threads`` default sessions (each its own connection) and a call that uses the
    calling thread's own: the n-th thread to call takes session n mod ``threads``, so each of
    the ``threads`` threads of a round (:func:`run_threads` starts new ones) has its own, kept
    warm from round to round as a long-lived thread's would be."""
    sessions = []
    for _ in range(threads):
        session = requests.Session()
        session.trust_env = trust_env
        sessions.append(session)
    taken = itertools.count()  # next() of a count is atomic under the GIL
    mine = threading.local()
    body = {"server": "demo", "tool": "echo", "parameters": PARAMETERS}

    def raw() -> Any:
        session = getattr(mine, "session", None)
        if session is None:
            session = mine.session = sessions[next(taken) % threads]
        headers = {"X-API-Key": API_KEY, "X-Request-ID": str(uuid.uuid4()),
                   "Idempotency-Key": str(uuid.uuid4())}
        response = session.post(url + "/api/v1/invoke", json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    return sessions, raw


def per_call_figures(runs: dict[str, Runs]) -> dict[str, Any]:
    return {"calls_per_s": {name: calls_per_s(side_runs) for name, side_runs in runs.items()},
            "latency_ms": {name: latency_ms(side_runs) for name, side_runs in runs.items()},
            "calls": {name: sum(len(latencies) for _, latencies in side_runs)
                      for name, side_runs in runs.items()}}


def measure(calls: int, rounds: int, url: str) -> dict[str, Any]:
    session, raw = raw_caller(url, trust_env=True)
    lean_session, raw_lean = raw_caller(url, trust_env=False)
    per_thread, raw_per_thread = per_thread_caller(url, PER_THREAD, trust_env=True)
    lean_per_thread, raw_lean_per_thread = per_thread_caller(url, PER_THREAD, trust_env=False)
    with session, lean_session, sark_sync.GatewayClient(
            url, api_key=API_KEY, max_workers=POOL_SIZE) as client, \
            sark_sync.GatewayClient(url, api_key=API_KEY) as default_client:

        def sdk() -> Any:
            return client.invoke_tool("demo", "echo", PARAMETERS)

        def sdk_default() -> Any:
            return default_client.invoke_tool("demo", "echo", PARAMETERS)

        for call in (raw, raw_lean, raw_per_thread, raw_lean_per_thread):
            assert call()["result"]["content"][0]["text"] == "hello"
        assert sdk().text == "hello" and sdk_default().text == "hello"
        sides = {"raw": raw, "raw_lean": raw_lean, "sdk": sdk}
        more_sides = {"raw_per_thread": raw_per_thread,
                      "raw_lean_per_thread": raw_lean_per_thread, "sdk_default": sdk_default}
        throughput = {}
        threads32: dict[str, Any] = {}
        for threads in THREAD_COUNTS:
            runs = alternating({**sides, **more_sides} if threads == PER_THREAD else sides,
                               threads, calls, rounds)
            rates = {name: calls_per_s(runs[name]) for name in sides}
            throughput[str(threads)] = {"calls_per_s": rates,
                                        "ratio": rates["sdk"] / rates["raw"],
                                        "ratio_lean": rates["sdk"] / rates["raw_lean"]}
            if threads == PER_THREAD:
                threads32 = per_call_figures(runs)
        runs = alternating(sides, FANOUT_THREADS, calls, rounds)
    for each in per_thread + lean_per_thread:
        each.close()
    latency = {name: latency_ms(side_runs) for name, side_runs in runs.items()}
    per_thread_latency = threads32["latency_ms"]
    per_thread_rates = threads32["calls_per_s"]
    return {
        "benchmark": "http_throughput",
        "calls": calls,
        "rounds": rounds,
        "pool_size": POOL_SIZE,
        "throughput": throughput,
        "threads32": {
            "threads": PER_THREAD,
            "default_max_workers": default_client.max_workers,
            **threads32,
            "ratios": {sdk_side: {
                **{q: per_thread_latency[sdk_side][q] / per_thread_latency["raw_per_thread"][q]
                   for q in ("p50", "p95", "p99")},
                "calls_per_s": (per_thread_rates[sdk_side]
                                / per_thread_rates["raw_per_thread"])}
                for sdk_side in ("sdk", "sdk_default")},
        },
        "fanout": {
            "threads": FANOUT_THREADS,
            "calls": sum(len(latencies) for _, latencies in runs["sdk"]),
            "latency_ms": latency,
            "calls_per_s": {name: calls_per_s(side_runs) for name, side_runs in runs.items()},
            "ratio_p95": latency["sdk"]["p95"] / latency["raw"]["p95"],
            "ratio_lean_p95": latency["sdk"]["p95"] / latency["raw_lean"]["p95"],
            "goal_p95_ms": FANOUT_P95_GOAL_MS,
        },
    }


def report(result: dict[str, Any]) -> None:
    print(f"invoke_tool vs requests.Session.post().json() under threads, {result['calls']} "
          f"calls per side and round, median of {result['rounds']} rounds")
    print(f"{'threads':>8}{'raw calls/s':>13}{'lean calls/s':>13}{'sdk calls/s':>13}"
          f"{'sdk/raw':>9}{'sdk/lean':>9}")
    for threads, row in result["throughput"].items():
        rates = row["calls_per_s"]
        print(f"{threads:>8}{rates['raw']:13.0f}{rates['raw_lean']:13.0f}{rates['sdk']:13.0f}"
              f"{row['ratio']:9.3f}{row['ratio_lean']:9.3f}")
    per_thread = result["threads32"]
    print(f"\n{per_thread['threads']} threads: latency of each full call in ms; sdk has "
          f"max_workers={result['pool_size']}, sdk_default max_workers="
          f"{per_thread['default_max_workers']}; raw_per_thread: a session per thread")
    print(f"{'':20}{'p50':>9}{'p95':>9}{'p99':>9}{'calls/s':>10}")
    for name, stats in per_thread["latency_ms"].items():
        print(f"{name:20}{stats['p50']:9.2f}{stats['p95']:9.2f}{stats['p99']:9.2f}"
              f"{per_thread['calls_per_s'][name]:10.0f}")
    for name, ratios in per_thread["ratios"].items():
        print(f"{name}/raw_per_thread: p50 {ratios['p50']:.3f}, p95 {ratios['p95']:.3f}, "
              f"p99 {ratios['p99']:.3f}, calls/s {ratios['calls_per_s']:.3f} (goals: p95 and "
              "p99 <= 1.0, calls/s >= 1.0)")
    fanout = result["fanout"]
    print(f"\nfan-out: {fanout['threads']} threads each calling, {fanout['calls']} calls per "
          "side, latency of each full call in ms")
    print(f"{'':10}{'p50':>9}{'p95':>9}{'p99':>9}{'calls/s':>10}")
    for name, stats in fanout["latency_ms"].items():
        print(f"{name:10}{stats['p50']:9.2f}{stats['p95']:9.2f}{stats['p99']:9.2f}"
              f"{fanout['calls_per_s'][name]:10.0f}")
    p95 = fanout["latency_ms"]["sdk"]["p95"]
    print(f"sdk p95 {p95:.2f} ms: {fanout['goal_p95_ms'] / p95:.0f}x below the "
          f"{fanout['goal_p95_ms']:g} ms target; p95 sdk/raw {fanout['ratio_p95']:.3f}, "
          f"sdk/lean {fanout['ratio_lean_p95']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000,
                        help="calls per side and round, spread over the threads")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with gateway_process() as url:
        result = measure(args.calls, args.rounds, url)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
