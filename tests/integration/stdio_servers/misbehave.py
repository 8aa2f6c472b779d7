"""MCP stdio servers that misbehave on purpose: one real fault per mode, for the client's tests.

``python misbehave.py MODE [--record FILE] [--delay SECONDS]``. Every mode but
``never_initialize`` and ``exit_at_start`` first behaves: it answers ``initialize`` (with the
client's version), ``ping`` ({}), ``tools/list`` (one tool, ``echo``), and a ``tools/call``
with ``content`` echoing the arguments; then the fault strikes. Each write is flushed, so the
faults are the same with or without ``PYTHONUNBUFFERED``. Stdlib only, plus sark_sync's own
framing. At EOF on stdin a mode exits 0 unless it says otherwise.

Modes:

- ``crash_mid_call``: on the first tools/call, writes "boom" to stderr and exits 7 at once.
- ``hang``: never answers tools/call, but keeps reading; with ``--record`` every line received
  is appended to FILE (so a test can see the client's ``notifications/cancelled``).
- ``non_json``: after the handshake, a garbage non-JSON line precedes every response.
- ``huge_line``: answers the first tools/call with a single line of more than 20 MiB, the next
  ones normally.
- ``stderr_flood``: writes more than 1 MiB to stderr before answering each tools/call (a client
  that does not drain stderr deadlocks on the ~64 KiB pipe buffer).
- ``ignore_sigterm``: ignores SIGTERM, and at EOF loops forever: only SIGKILL ends it.
- ``never_initialize``: reads stdin and never answers anything (exits 0 at EOF).
- ``wrong_version``: answers initialize with protocolVersion "1999-01-01".
- ``exit_at_start``: writes "fatal: config missing" to stderr and exits 2 before reading.
- ``slow_start``: sleeps ``--delay`` seconds (default 3) before answering initialize.
- ``spawn_grandchild``: at start, spawns ``sys.executable -c "import time; time.sleep(60)"``
  in the server's process group, stdio on /dev/null, and writes its pid to FILE (``--record``),
  then serves normally and exits 0 at EOF *without* killing it: only a client that kills the
  whole process group leaves no orphan behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from typing import Any, BinaryIO

from sark_sync.wire import _jsonrpc as rpc

MODES = (
    "crash_mid_call", "hang", "non_json", "huge_line", "stderr_flood", "ignore_sigterm",
    "never_initialize", "wrong_version", "exit_at_start", "slow_start", "spawn_grandchild",
)
HUGE_LINE_BYTES = 20 * 1024 * 1024 + 1024
FLOOD_BYTES = 1024 * 1024 + 64 * 1024
GARBAGE = b"garbage: this line is not JSON-RPC {{{\n"
ECHO_TOOL = {"name": "echo", "description": "Echo the arguments.",
             "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}


def write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def serve(mode: str, options: argparse.Namespace) -> int:
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    calls = 0
    for line in iter(stdin.readline, b""):
        if options.record and mode == "hang":
            with open(options.record, "ab") as record:  # closed at once: a reader sees it all
                record.write(line)
        if mode == "never_initialize" or not line.strip():
            continue
        try:
            message = rpc.parse_line(line)
        except rpc.FramingError as exc:
            write(out, rpc.encode_error(exc.id, rpc.PARSE_ERROR, str(exc)))
            continue
        if not isinstance(message, rpc.Request):
            continue
        params: dict[str, Any] = dict(message.params or {})
        if message.method == "initialize":
            version = params.get("protocolVersion", "2025-11-25")
            if mode == "wrong_version":
                version = "1999-01-01"
            if mode == "slow_start":
                threading.Event().wait(options.delay)
            write(out, rpc.encode_response(message.id, {
                "protocolVersion": version, "capabilities": {"tools": {}},
                "serverInfo": {"name": f"misbehave-{mode}", "version": "0"}}))
            continue
        if mode == "non_json":
            write(out, GARBAGE)
        if message.method == "ping":
            write(out, rpc.encode_response(message.id, {}))
        elif message.method == "tools/list":
            write(out, rpc.encode_response(message.id, {"tools": [ECHO_TOOL]}))
        elif message.method == "tools/call":
            calls += 1
            if mode == "crash_mid_call":
                log("boom")
                os._exit(7)
            if mode == "hang":
                continue
            if mode == "stderr_flood":
                for n in range(FLOOD_BYTES // 64 + 1):
                    sys.stderr.write(f"flood {n:08d} ".ljust(63, ".") + "\n")
                sys.stderr.flush()
            text = repr(params.get("arguments"))
            if mode == "huge_line" and calls == 1:
                text = "x" * HUGE_LINE_BYTES
            write(out, rpc.encode_response(message.id, {
                "content": [{"type": "text", "text": text}], "isError": False}))
        else:
            write(out, rpc.encode_error(message.id, rpc.METHOD_NOT_FOUND, message.method))
    if mode == "ignore_sigterm":
        forever = threading.Event()
        while True:  # only SIGKILL ends this
            forever.wait(3600)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="An MCP stdio server that misbehaves.")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--record", help="hang: append received lines; spawn_grandchild: pid")
    parser.add_argument("--delay", type=float, default=3.0, help="slow_start: seconds")
    options = parser.parse_args()
    if options.mode == "exit_at_start":
        log("fatal: config missing")
        return 2
    if options.mode == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if options.mode == "spawn_grandchild":
        grandchild = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if options.record:  # written whole, then renamed: a reader never sees half of it
            with open(options.record + ".tmp", "w") as f:
                f.write(f"{grandchild.pid}\n")
            os.replace(options.record + ".tmp", options.record)
        log(f"spawned grandchild {grandchild.pid}")
    return serve(options.mode, options)


if __name__ == "__main__":
    sys.exit(main())
