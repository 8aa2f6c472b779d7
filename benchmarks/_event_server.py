"""Event sources for bench_sse.py, in their own process (their threads must not compete with
the measured client for the GIL).

Run: ``python _event_server.py --framing chunked --prefill 20000``. It starts:

- a LocalGateway (``--framing``) whose buffer holds ``--prefill`` ``tick`` events, for the
  end-to-end throughput of a replay and for latency;
- a "firehose" on another port: any GET gets the same events as one pre-built body, written
  in 64 KiB pieces and ended by closing the connection, to measure how fast a client can
  parse when the server is not the bottleneck.

It prints ``<gateway url> <firehose url>`` and then obeys lines on stdin:
``pace N SECONDS TYPE`` publishes N events of that type spaced by SECONDS, each carrying
``{"t": time.monotonic_ns()}``
(CLOCK_MONOTONIC is one clock for every process of the machine), then prints ``done``;
``quit`` (or end of input) stops everything.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time

from sark_sync.testing import LocalGateway

API_KEY = "bench-api-key"
#: Bytes per write of the firehose.
PIECE = 64 * 1024


def event_bytes(count: int) -> bytes:
    return b"".join(b'id: %d\nevent: tick\ndata: {"n":%d,"server":"demo","tool":"echo"}\n\n'
                    % (i, i) for i in range(1, count + 1))


def firehose(listener: socket.socket, body: bytes, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
            b"Cache-Control: no-cache\r\n\r\n")
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        with conn:
            conn.settimeout(30)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            try:
                conn.sendall(head)
                view = memoryview(body)
                for start in range(0, len(body), PIECE):
                    conn.sendall(view[start:start + PIECE])
            except OSError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framing", choices=("chunked", "close"), default="chunked")
    parser.add_argument("--prefill", type=int, default=20_000)
    args = parser.parse_args()
    gateway = LocalGateway(api_keys=(API_KEY,), event_framing=args.framing,
                           event_buffer=args.prefill + 20_000, event_retry=0.01)
    for n in range(args.prefill):
        gateway.publish_event("tick", {"n": n, "server": "demo", "tool": "echo"})
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    hose = threading.Thread(target=firehose, args=(listener, event_bytes(args.prefill), stop))
    with gateway:
        hose.start()
        print(gateway.url, f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
        try:
            for line in sys.stdin:
                words = line.split()
                if not words or words[0] == "quit":
                    break
                if words[0] == "pace":
                    count, interval, kind = int(words[1]), float(words[2]), words[3]
                    for _ in range(count):
                        gateway.publish_event(kind, {"t": time.monotonic_ns()})
                        time.sleep(interval)  # pacing is the point: one event at a time
                    print("done", flush=True)
        finally:
            stop.set()
            hose.join(5)
            listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
