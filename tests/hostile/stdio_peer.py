"""An MCP stdio server program that speaks the protocol correctly by default and misbehaves on
command, for the tests of sark_sync's stdio transport.

Run it as ``[sys.executable, path, "--mode", MODE, ...]``; :func:`peer_command` builds that
list. It answers ``initialize`` (echoing the client's version), ``ping``, ``tools/list`` (one
tool, ``echo``, read-only) and ``tools/call`` (``content`` echoes the arguments as JSON),
flushing each line, and exits 0 at EOF on stdin, unless MODE says otherwise. Stdlib only: it
must behave the same whatever sark_sync does.

Modes (the fault strikes on the first ``tools/call`` unless said otherwise):

- ``normal``: no fault.
- ``never_initialize``: reads stdin, answers nothing.
- ``die_in_handshake``: writes "dying in handshake" to stderr and exits 3 on ``initialize``;
  with ``--record FILE``, appends a line to FILE first (a test counts the spawns).
- ``grandchild_holds_pipes``: starts a grandchild in a new session (setsid) that inherits
  stdout and stderr, writes ``--noise`` to both every 20 ms for ``--hold`` seconds (default
  30); writes its pid to ``--record``; then exits 5 without answering.
- ``stdout_closed_ignore_term``: ignores SIGTERM, closes stdout at once (before the
  handshake; ``--after-init``: after answering initialize; ``--on-call``: at the first
  ``tools/call``, unanswered) and keeps running, even at EOF.
- ``close_stdin``: once the handshake is complete (``notifications/initialized``), closes its
  stdin and keeps running, answering nothing (until killed, or ``--hold`` seconds).
- ``deep_response``: answers a call with a result nested ``--depth`` arrays deep (default
  100,000), the next calls normally.
- ``deep_notification``: before answering each call, sends a notification whose params are
  nested ``--depth`` deep.
- ``deep_request``: before answering each call, sends the client a request nested that deep.
- ``trickle``: writes each answer one byte at a time, ``--delay`` seconds apart (default 0.01).
- ``stderr_flood``: from the start, a thread writes 6 KB lines to stderr without pause, while
  the peer serves normally.
- ``invalid_utf8``: answers the first call with a line holding invalid UTF-8.
- ``partial_then_exit``: answers the first call with half a line, no newline, and exits 4.
- ``wrong_id``: answers the first call with id+1000, then never again.
- ``string_id``: answers the first call with its id as a string ("1" for 1).
- ``bool_id``: answers the first call with ``"id": true``.
- ``duplicate_id``: answers every call twice (the second with other content).
- ``huge_id``: answers the first call with a 5,000-digit id, then normally.
- ``huge_int_result``: answers the first call with a result holding a 5,000-digit integer.
- ``no_read``: after the handshake and its first ``tools/list`` (which a client sends before its
  first call), never reads its stdin again (sleeps ``--hold`` seconds).
- ``sigstop``: after the handshake, stops itself with SIGSTOP.
- ``exit_after_init``: exits 6 as soon as the handshake is complete
  (``notifications/initialized``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["MODES", "PEER", "peer_command"]

PEER = Path(__file__).resolve()
MODES = (
    "normal", "never_initialize", "die_in_handshake", "grandchild_holds_pipes",
    "stdout_closed_ignore_term", "close_stdin", "deep_response", "deep_notification",
    "deep_request", "trickle", "stderr_flood", "invalid_utf8", "partial_then_exit", "wrong_id",
    "string_id", "bool_id", "duplicate_id", "huge_id", "huge_int_result", "no_read",
    "sigstop", "exit_after_init",
)
ECHO_TOOL = {"name": "echo", "description": "Echo the arguments.",
             "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}


def peer_command(mode: str, *args: str) -> list[str]:
    """The command line of the peer in ``mode`` (``args``: its other options)."""
    if mode not in MODES:
        raise ValueError(f"unknown stdio peer mode {mode!r}")
    return [sys.executable, str(PEER), "--mode", mode, *args]


# -- the program ---------------------------------------------------------------------------


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _flood_stderr() -> None:
    while True:
        os.write(2, b"flood " * 1000 + b"\n")


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class Peer:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.mode = options.mode
        self.out = os.fdopen(1, "wb", buffering=0, closefd=False)
        self.calls = 0

    def write(self, data: bytes) -> None:
        try:
            if self.mode == "trickle":
                for i in range(len(data)):
                    self.out.write(data[i:i + 1])
                    time.sleep(self.options.delay)
            else:
                self.out.write(data)
        except OSError:  # stdout closed (by us, or by the client): nothing to tell
            pass

    def answer(self, request_id: Any, result: Any) -> None:
        self.write(_line({"jsonrpc": "2.0", "id": request_id, "result": result}))

    def run(self) -> int:
        mode = self.mode
        if mode == "stdout_closed_ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        closes_later = self.options.after_init or self.options.on_call
        if mode == "stdout_closed_ignore_term" and not closes_later:
            os.close(1)
        if mode == "stderr_flood":
            threading.Thread(target=_flood_stderr, daemon=True).start()
        stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
        for raw in iter(stdin.readline, b""):
            if not raw.strip() or mode == "never_initialize":
                continue
            message = json.loads(raw)
            if message.get("method") == "notifications/initialized":
                if mode == "exit_after_init":
                    os._exit(6)
                if mode == "close_stdin":
                    os.close(0)
                    time.sleep(self.options.hold)
                    return 0
            if "method" not in message or "id" not in message:
                continue
            code = self.handle(message["id"], message["method"], message.get("params") or {})
            if code is not None:
                return code
        if mode == "stdout_closed_ignore_term":
            while True:
                time.sleep(1)
        return 0

    def handle(self, request_id: Any, method: str, params: dict[str, Any]) -> int | None:
        mode = self.mode
        if method == "initialize":
            if mode == "die_in_handshake":
                if self.options.record:
                    with open(self.options.record, "a") as record:
                        record.write(f"{os.getpid()}\n")
                os.write(2, b"dying in handshake\n")
                return 3
            self.answer(request_id, {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}}, "serverInfo": {"name": "stdio-peer"}})
            if mode == "stdout_closed_ignore_term" and self.options.after_init:
                os.close(1)
            if mode == "sigstop":
                os.kill(os.getpid(), signal.SIGSTOP)
            return None
        if method == "ping":
            self.answer(request_id, {})
        elif method == "tools/list":
            self.answer(request_id, {"tools": [ECHO_TOOL]})
            if mode == "no_read":
                time.sleep(self.options.hold)
                return 0
        elif method == "tools/call":
            return self.call(request_id, params)
        else:
            self.write(_line({"jsonrpc": "2.0", "id": request_id,
                              "error": {"code": -32601, "message": "method not found"}}))
        return None

    def call(self, request_id: Any, params: dict[str, Any]) -> int | None:
        mode, first = self.mode, self.calls == 0
        self.calls += 1
        text = json.dumps(params.get("arguments", {}), sort_keys=True)
        result = {"content": [{"type": "text", "text": text}], "isError": False}
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode()
        if mode == "grandchild_holds_pipes":
            self.spawn_grandchild()
            return 5
        if first and mode == "stdout_closed_ignore_term" and self.options.on_call:
            os.close(1)
            return None
        if mode == "deep_notification":
            self.write(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":'
                       + _nested(self.options.depth) + b"}}\n")
        if mode == "deep_request":
            self.write(b'{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage",'
                       b'"params":{"x":' + _nested(self.options.depth) + b"}}\n")
        if first and mode == "deep_response":
            self.write(head + b',"result":' + _nested(self.options.depth) + b"}\n")
        elif first and mode == "invalid_utf8":
            self.write(head + b',"result":{"content":[{"type":"text","text":"\xff\xfe"}]}}\n')
        elif first and mode == "partial_then_exit":
            self.write(head + b',"result":{"content":')
            return 4
        elif first and mode == "wrong_id":
            self.answer(request_id + 1000, result)
        elif mode == "wrong_id":
            pass
        elif first and mode == "string_id":
            self.answer(str(request_id), result)
        elif first and mode == "bool_id":
            self.write(b'{"jsonrpc":"2.0","id":true,"result":' + json.dumps(result).encode()
                       + b"}\n")
        elif first and mode == "huge_id":
            self.write(b'{"jsonrpc":"2.0","id":' + b"7" * 5000 + b',"result":{}}\n')
            self.answer(request_id, result)
        elif first and mode == "huge_int_result":
            self.write(head + b',"result":{"n":' + b"9" * 5000 + b"}}\n")
        else:
            self.answer(request_id, result)
            if mode == "duplicate_id":
                self.answer(request_id, {"content": [{"type": "text", "text": "duplicate"}]})
        return None

    def spawn_grandchild(self) -> None:
        noise = self.options.noise
        code = (
            "import os, sys, time\n"
            f"end = time.monotonic() + {self.options.hold!r}\n"
            "while time.monotonic() < end:\n"
            "    for fd in (1, 2):\n"
            "        try:\n"
            f"            os.write(fd, {noise.encode()!r} + b'\\n')\n"
            "        except OSError:\n"
            "            pass\n"
            "    time.sleep(0.02)\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                 stdout=1, stderr=2, start_new_session=True, close_fds=True)
        if self.options.record:
            Path(self.options.record).write_text(f"{child.pid}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--record", default=None)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--on-call", action="store_true")
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--noise", default="grandchild-noise")
    parser.add_argument("--after-init", action="store_true")
    return Peer(parser.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
