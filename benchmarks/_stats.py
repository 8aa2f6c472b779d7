"""Sampling and summaries shared by the benchmarks.

Sides are measured in alternating batches (A B, then B A, ...) so that drift on a shared
machine (another process waking up, CPU frequency changes) lands on every side alike, and the
ratio between sides stays meaningful even when the absolute figures move.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

#: Calls per side before the next side takes its turn.
BATCH = 50
#: Calls per side before measuring: connections, caches and code paths warmed.
WARMUP = 200

Runner = tuple[str, Callable[[], Any]]
T = TypeVar("T")


def taking_turns(sides: Sequence[T], round_: int) -> Sequence[T]:
    """``sides`` in the order of round ``round_``: as given, reversed every other round."""
    return sides if round_ % 2 == 0 else sides[::-1]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of samples in seconds, in microseconds."""
    return {
        "p50_us": percentile(samples, 0.50) * 1e6,
        "p95_us": percentile(samples, 0.95) * 1e6,
        "mean_us": statistics.fmean(samples) * 1e6,
    }


def interleaved(runners: Sequence[Runner], calls: int, *, batch: int = BATCH,
                warmup: int = WARMUP) -> dict[str, list[float]]:
    """Round-trip times in seconds of ``calls`` calls of each runner, after ``warmup`` calls
    of each, measured in alternating batches (the order reversed every other round)."""
    for _, func in runners:
        for _ in range(warmup):
            func()
    samples: dict[str, list[float]] = {name: [] for name, _ in runners}
    clock = time.perf_counter
    for round_ in range(max(1, calls // batch)):
        for name, func in taking_turns(runners, round_):
            bucket = samples[name]
            for _ in range(batch):
                started = clock()
                func()
                bucket.append(clock() - started)
    return samples


def run_threads(call: Callable[[], Any], threads: int, calls: int) -> tuple[float, list[float]]:
    """``calls`` calls spread over ``threads`` threads started together; return the wall
    time in seconds and every call's latency in seconds."""
    per_thread = max(1, calls // threads)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    clock = time.perf_counter

    def work(bucket: list[float]) -> None:
        start.wait()
        try:
            for _ in range(per_thread):
                began = clock()
                call()
                bucket.append(clock() - began)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(bucket,)) for bucket in latencies]
    for worker in workers:
        worker.start()
    start.wait()
    began = clock()
    for worker in workers:
        worker.join()
    elapsed = clock() - began
    if errors:
        raise errors[0]
    return elapsed, [value for bucket in latencies for value in bucket]


def print_table(sides: dict[str, dict[str, float]]) -> None:
    """One row per side: p50, p95 and mean in microseconds."""
    width = max(6, *(len(name) + 2 for name in sides))
    print(f"{'':{width}}{'p50 us':>10}{'p95 us':>10}{'mean us':>10}")
    for name, stats in sides.items():
        print(f"{name:{width}}{stats['p50_us']:10.1f}{stats['p95_us']:10.1f}"
              f"{stats['mean_us']:10.1f}")
