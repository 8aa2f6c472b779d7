"""An MCP stdio server whose progress reports lie: for the client's progress tests.

``python progress_peer.py``: answers ``initialize``, ``ping``, ``tools/list`` (one tool,
``report``) and ``tools/call``. A call with a ``progressToken`` first gets, as raw lines on
stdout, every kind of bad progress report (a progress that is a string, a bool, missing, NaN,
infinite; a token of another type, of another call, inside a list; ``params`` that is not an
object; a ``total`` and ``message`` of the wrong types; a 1 MiB message), with three good ones
among them, then its answer. Stdlib only, plus sark_sync's own framing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sark_sync.wire import _jsonrpc as rpc

REPORT_TOOL = {"name": "report", "description": "Report lying progress.",
               "inputSchema": {"type": "object"}}
#: The size of the message of the last good report (the client cuts it).
BIG_MESSAGE_CHARS = 1024 * 1024


def progress_line(params: Any) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": params}) + "\n").encode()


def reports(token: Any) -> list[bytes]:
    raw = ('{"jsonrpc":"2.0","method":"notifications/progress","params":'
           '{"progressToken":%s,"progress":%s}}\n')
    quoted = json.dumps(token)
    return [
        progress_line({"progressToken": token, "progress": "1"}),
        progress_line({"progressToken": token, "progress": True}),
        progress_line({"progressToken": token}),
        (raw % (quoted, "NaN")).encode(),
        (raw % (quoted, "1e400")).encode(),
        progress_line({"progressToken": 12345, "progress": 1}),
        progress_line({"progressToken": [token], "progress": 1}),
        progress_line({"progressToken": f"{token}-other", "progress": 1}),
        progress_line([token, 1]),
        progress_line({"progressToken": token, "progress": 1, "total": 3, "message": "one"}),
        b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":\n',
        progress_line({"progressToken": token, "progress": 2, "total": "three",
                       "message": {"text": "two"}}),
        progress_line({"progressToken": token, "progress": 3, "total": 3,
                       "message": "m" * BIG_MESSAGE_CHARS}),
    ]


def main() -> int:
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    for line in iter(stdin.readline, b""):
        try:
            message = rpc.parse_line(line)
        except rpc.FramingError:
            continue
        if not isinstance(message, rpc.Request):
            continue
        params: dict[str, Any] = dict(message.params or {})
        if message.method == "initialize":
            answer: Any = {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                           "capabilities": {"tools": {}},
                           "serverInfo": {"name": "progress-peer", "version": "0"}}
        elif message.method == "ping":
            answer = {}
        elif message.method == "tools/list":
            answer = {"tools": [REPORT_TOOL]}
        elif message.method == "tools/call":
            meta = params.get("_meta") or {}
            if "progressToken" in meta:
                for report in reports(meta["progressToken"]):
                    out.write(report)
            answer = {"content": [{"type": "text", "text": "reported"}], "isError": False}
        else:
            out.write(rpc.encode_error(message.id, rpc.METHOD_NOT_FOUND, message.method))
            out.flush()
            continue
        out.write(rpc.encode_response(message.id, answer))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
