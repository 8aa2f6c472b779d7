"""A scripted MCP stdio server that asks its client things: sampling, elicitation, roots.

``python asking.py``: answers ``initialize`` with the client's version and notes the client's
``capabilities``. Tools:

- ``ask`` ``{"method": M, "params": P}``: sends the request ``M`` (``P``) to the client and
  answers, once the client answered, with the JSON of that answer: ``{"result": ...}`` or
  ``{"error": {"code": ..., "message": ...}}``. The server goes on reading meanwhile, so the
  client may call other tools before it answers (a handler calling back);
- ``echo`` ``{"text": T}``: ``T``;
- ``capabilities``: the JSON of the capabilities the client declared;
- ``notifications``: the methods of the notifications received so far, one per line.

Anything else: -32601. Stdlib only, single-threaded; exits 0 at EOF.
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(dict(message, jsonrpc="2.0")) + "\n")
    sys.stdout.flush()


def text(call_id: Any, value: str) -> None:
    send({"id": call_id, "result": {"content": [{"type": "text", "text": value}]}})


def main() -> None:
    capabilities: Any = None
    notifications: list[str] = []
    waiting: dict[str, Any] = {}  # our request id -> the tools/call it answers
    ids = itertools.count(1)
    for line in sys.stdin:
        message = json.loads(line)
        method, params = message.get("method"), message.get("params") or {}
        if method is None:  # the client's answer to one of our requests
            call_id = waiting.pop(str(message.get("id")), None)
            if call_id is not None:
                answer = {k: message[k] for k in ("result", "error") if k in message}
                text(call_id, json.dumps(answer, sort_keys=True))
            continue
        if "id" not in message:
            notifications.append(method)
            continue
        if method == "initialize":
            capabilities = params.get("capabilities")
            send({"id": message["id"], "result": {
                "protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                "serverInfo": {"name": "asking", "version": "1"}}})
        elif method == "tools/list":
            send({"id": message["id"], "result": {"tools": [
                {"name": name, "inputSchema": {"type": "object"}}
                for name in ("ask", "echo", "capabilities", "notifications")]}})
        elif method == "tools/call":
            name, arguments = params.get("name"), params.get("arguments") or {}
            if name == "ask":
                request_id = f"s{next(ids)}"
                waiting[request_id] = message["id"]
                request = {"id": request_id, "method": arguments["method"]}
                if arguments.get("params") is not None:
                    request["params"] = arguments["params"]
                send(request)
            elif name == "echo":
                text(message["id"], str(arguments.get("text")))
            elif name == "capabilities":
                text(message["id"], json.dumps(capabilities, sort_keys=True))
            elif name == "notifications":
                text(message["id"], "\n".join(notifications))
            else:
                send({"id": message["id"], "error": {"code": -32602, "message": "no such tool"}})
        elif method == "ping":
            send({"id": message["id"], "result": {}})
        else:
            send({"id": message["id"], "error": {"code": -32601, "message": "not found"}})


if __name__ == "__main__":
    main()
