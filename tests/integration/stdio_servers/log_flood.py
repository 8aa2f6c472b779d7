"""An MCP stdio server whose log messages attack the client: ``python log_flood.py``.

It declares ``logging`` and ``resources.subscribe`` and answers ``initialize``,
``logging/setLevel`` and ``resources/subscribe`` ({}), ``tools/list`` (one tool, ``flood``).
A ``tools/call`` of ``flood`` (arguments ``{"count": N}``, default 2000) first sends, in order:

- a log message whose data is a 4 MiB string with newlines and escape sequences;
- one whose data is nested 500 arrays deep (the wire decodes it; a renderer must cut it);
- one with an unknown level (``"chatty"``), one whose level is a number, one with no params;
- ``N`` small messages ``{"n": i}`` at level ``info`` and one resources update per 100;
- a final message ``"last"`` at level ``emergency``;

then answers ``"flooded"``. Stdlib only, plus sark_sync's framing; exits 0 at EOF.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sark_sync.wire import _jsonrpc as rpc

HUGE_CHARS = 4 * 1024 * 1024
DEEP = 500
TOOL = {"name": "flood", "description": "Send hostile log messages.",
        "inputSchema": {"type": "object"}}


def write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def log(level: Any, data: Any, logger: str | None = "flood") -> None:
    params: dict[str, Any] = {"level": level, "data": data}
    if logger is not None:
        params["logger"] = logger
    write(rpc.encode_notification("notifications/message", params))


def deep() -> bytes:
    """A notification nested ``DEEP`` arrays deep, built as text (json.dumps would recurse)."""
    data = "[" * DEEP + '"bottom"' + "]" * DEEP
    return (f'{{"jsonrpc":"2.0","method":"notifications/message","params":'
            f'{{"level":"warning","data":{data}}}}}\n').encode()


def flood(count: int) -> None:
    log("error", ("line\n\x1b[31mforged\r\n" * (HUGE_CHARS // 20))[:HUGE_CHARS])
    write(deep())
    log("chatty", "unknown level")
    log(7, "a number for a level")
    write(b'{"jsonrpc":"2.0","method":"notifications/message"}\n')
    for i in range(count):
        log("info", {"n": i})
        if i % 100 == 0:
            write(rpc.encode_notification("notifications/resources/updated",
                                          {"uri": "flood://counter"}))
    log("emergency", "last", logger=None)


def main() -> int:
    for line in iter(sys.stdin.buffer.readline, b""):
        if not line.strip():
            continue
        message = rpc.parse_line(line)
        if not isinstance(message, rpc.Request):
            continue
        params = dict(message.params or {})
        if message.method == "initialize":
            write(rpc.encode_response(message.id, {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}, "logging": {}, "resources": {"subscribe": True}},
                "serverInfo": {"name": "log-flood", "version": "0"}}))
        elif message.method in ("logging/setLevel", "resources/subscribe", "ping"):
            write(rpc.encode_response(message.id, {}))
        elif message.method == "tools/list":
            write(rpc.encode_response(message.id, {"tools": [TOOL]}))
        elif message.method == "tools/call":
            arguments = params.get("arguments") or {}
            flood(int(arguments.get("count", 2000)))
            write(rpc.encode_response(message.id, {
                "content": [{"type": "text", "text": "flooded"}], "isError": False}))
        else:
            write(rpc.encode_error(message.id, rpc.METHOD_NOT_FOUND, json.dumps(message.method)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
