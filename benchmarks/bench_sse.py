"""GatewayClient.stream_events versus a raw SSE line parser over the same streams, same run.

The raw side is the least a client can do: ``requests`` with ``stream=True``, ``read1`` short
reads, split lines, collect fields, ``json.loads`` the data. The SDK side is
``stream_events`` (framing, sseclient-py's parser, JSON, the Event, the reconnect machinery).
The event sources run in another process (_event_server.py), one per framing:

- **throughput, gateway**: a LocalGateway replays its buffer (``--events`` events), one write
  per event: end to end, the gateway's writing included;
- **throughput, firehose**: the same events as one body written in 64 KiB pieces: how fast
  each client parses when the server is not the bottleneck;
- **latency**: the gateway publishes events one at a time (every ``--pace`` seconds) carrying
  their publish time (CLOCK_MONOTONIC); the delay to the client's yield is measured. A client
  that waited for a buffer to fill would show it here, with chunked or connection-close
  framing alike.

    python benchmarks/bench_sse.py [--events 20000] [--latency-events 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _event_server import API_KEY
from _stats import percentile, taking_turns

import sark_sync

SERVER = Path(__file__).resolve().with_name("_event_server.py")
ROUNDS = 3
START_TIMEOUT = 30.0

Reader = Callable[[str, "list[str] | None"], Iterator[Any]]


def raw_events(url: str, types: list[str] | None) -> Iterator[Any]:
    """The baseline parser: each event's decoded data, nothing else. Connected on return.
    Without ``types`` it asks for the whole buffer (``Last-Event-ID: 0``), with them for
    new events only."""
    session = requests.Session()
    session.trust_env = False
    headers = {"X-API-Key": API_KEY, "Accept": "text/event-stream"}
    if not types:
        headers["Last-Event-ID"] = "0"
    params = {"types": ",".join(types)} if types else None
    response = session.get(url + "/api/v1/events", headers=headers, params=params,
                           stream=True, timeout=(5, 30))
    return _parse_raw(session, response)


def _parse_raw(session: requests.Session, response: requests.Response) -> Iterator[Any]:
    with session, response:
        raw = response.raw
        rest = b""
        data: list[bytes] = []
        while True:
            chunk = raw.read1(65536)
            if not chunk:
                return
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if not line:
                    if data:
                        yield json.loads(b"\n".join(data))
                        data = []
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))


def sdk_events(url: str, types: list[str] | None) -> Iterator[Any]:
    """stream_events, connected on return (it connects before returning)."""
    client = sark_sync.GatewayClient(url, api_key=API_KEY)
    stream = client.stream_events(types=types, last_event_id=None if types else 0)
    return _data_of(client, stream)


def _data_of(client: sark_sync.GatewayClient, stream: sark_sync.EventStream) -> Iterator[Any]:
    with client, stream:
        for event in stream:
            yield event.data


READERS: dict[str, Reader] = {"raw": raw_events, "sdk": sdk_events}


def throughput(reader: Reader, url: str, events: int) -> float:
    started = time.perf_counter()
    stream = reader(url, None)
    for _ in range(events):
        next(stream)
    elapsed = time.perf_counter() - started
    stream.close()  # type: ignore[attr-defined]
    return events / elapsed


def latency(reader: Reader, url: str, server: subprocess.Popen[str], events: int, pace: float,
            kind: str) -> list[float]:
    stream = reader(url, [kind])
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(f"pace {events} {pace} {kind}\n")
    server.stdin.flush()
    delays = []
    for _ in range(events):
        data = next(stream)
        delays.append((time.monotonic_ns() - data["t"]) / 1e9)
    stream.close()  # type: ignore[attr-defined]
    assert server.stdout.readline().strip() == "done"
    return delays


def run_framing(framing: str, events: int, latency_events: int, pace: float) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--framing", framing, "--prefill", str(events)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        gateway_url, firehose_url = server.stdout.readline().split()
        names = (f"lat_{a}{b}" for a in string.ascii_lowercase for b in string.ascii_lowercase)
        for name in READERS:  # warm-up: connections, imports, code paths
            throughput(READERS[name], firehose_url, min(events, 2000))
            latency(READERS[name], gateway_url, server, 20, pace, next(names))
        rates: dict[str, dict[str, list[float]]] = {"gateway": {}, "firehose": {}}
        delays: dict[str, list[float]] = {name: [] for name in READERS}
        order = list(READERS)
        for round_ in range(ROUNDS):
            for name in taking_turns(order, round_):
                reader = READERS[name]
                rates["gateway"].setdefault(name, []).append(
                    throughput(reader, gateway_url, events))
                rates["firehose"].setdefault(name, []).append(
                    throughput(reader, firehose_url, events))
                delays[name] += latency(reader, gateway_url, server, latency_events // ROUNDS,
                                        pace, next(names))
        assert server.stdin is not None
        server.stdin.write("quit\n")
        server.stdin.flush()
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        for pipe in (server.stdin, server.stdout):
            if pipe is not None:
                pipe.close()
    result: dict[str, Any] = {"framing": framing}
    for source, by_reader in rates.items():
        best = {name: max(values) for name, values in by_reader.items()}
        result[f"{source}_events_per_s"] = best
        result[f"{source}_ratio"] = best["sdk"] / best["raw"]
    result["latency_ms"] = {
        name: {"p50": percentile(values, 0.5) * 1e3, "p95": percentile(values, 0.95) * 1e3}
        for name, values in delays.items()}
    result["latency_p95_diff_ms"] = (result["latency_ms"]["sdk"]["p95"]
                                     - result["latency_ms"]["raw"]["p95"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--latency-events", type=int, default=300,
                        help="paced events per side and framing")
    parser.add_argument("--pace", type=float, default=0.002, help="seconds between paced events")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = [run_framing(framing, args.events, args.latency_events, args.pace)
               for framing in ("chunked", "close")]
    report = {"benchmark": "sse_stream_events", "events": args.events, "framings": results}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"stream_events vs a raw SSE line parser, {args.events} events per throughput run")
    for r in results:
        print(f"\n{r['framing']} framing")
        for source in ("gateway", "firehose"):
            rates = r[f"{source}_events_per_s"]
            print(f"  throughput {source:9} raw {rates['raw']:9.0f} ev/s   sdk "
                  f"{rates['sdk']:9.0f} ev/s   ratio {r[f'{source}_ratio']:.2f}  (goal >= 0.5)")
        for name, stats in r["latency_ms"].items():
            print(f"  latency {name}: p50 {stats['p50']:.3f} ms  p95 {stats['p95']:.3f} ms")
        print(f"  latency p95 sdk - raw: {r['latency_p95_diff_ms']:+.3f} ms  (goal <= 2 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
