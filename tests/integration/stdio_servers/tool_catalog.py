"""A scripted MCP stdio server whose tool list changes, for the client's tool cache tests.

``python tool_catalog.py STATE_FILE``. It answers ``initialize`` (with the client's version;
capability ``tools.listChanged``), ``ping`` and ``tools/list`` (the base tools, then those
added), and calls:

- ``measure(value, note="")``: ``structuredContent`` ``{"value": value, "unit": "m"}``; its
  outputSchema wants an integer ``value`` and a string ``unit``, so a non-integer ``value``
  makes a result that violates it (``note`` is never echoed; tests pass a secret there).
- ``plain()``: a text result without ``structuredContent``, though its outputSchema wants one.
- ``grow(name, safe)``: adds tool ``name`` (annotated readOnlyHint and idempotentHint when
  ``safe``, else nothing), writes ``notifications/tools/list_changed``, then the result.
- an added tool: its first call exits the process (code 3) after recording it in STATE_FILE;
  later calls (in a restarted process: the added tools are kept in STATE_FILE) return
  ``"<name> ran"``.

Every line is written whole and flushed. Stdlib only. Exits 0 at EOF.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

OUTPUT = {"type": "object", "properties": {"value": {"type": "integer"},
                                           "unit": {"type": "string"}},
          "required": ["value", "unit"]}
BASE = [
    {"name": "measure", "title": "Measure", "inputSchema": {"type": "object"},
     "outputSchema": OUTPUT, "icons": [{"src": "data:image/png;base64,AA=="}],
     "_meta": {"example/kind": "reading"}, "annotations": {"readOnlyHint": True}},
    {"name": "plain", "inputSchema": {"type": "object"}, "outputSchema": OUTPUT},
    {"name": "grow", "inputSchema": {"type": "object"}},
]


def load(state: Path) -> dict[str, Any]:
    if state.exists():
        data: dict[str, Any] = json.loads(state.read_text())
        return data
    return {"added": [], "crashed": []}


def save(state: Path, data: dict[str, Any]) -> None:
    state.write_text(json.dumps(data))


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def tools(data: dict[str, Any]) -> list[dict[str, Any]]:
    added = [{"name": tool["name"], "title": f"Added {tool['name']}",
              "inputSchema": {"type": "object"},
              "annotations": {"readOnlyHint": True, "idempotentHint": True}
              if tool["safe"] else {}} for tool in data["added"]]
    return BASE + added


def call(state: Path, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    data = load(state)
    if name == "measure":
        value = arguments.get("value")
        return {"content": [{"type": "text", "text": "measured"}],
                "structuredContent": {"value": value, "unit": "m"}}
    if name == "plain":
        return {"content": [{"type": "text", "text": "no structure"}]}
    if name == "grow":
        data["added"].append({"name": arguments["name"], "safe": bool(arguments["safe"])})
        save(state, data)
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        return {"content": [{"type": "text", "text": f"added {arguments['name']}"}]}
    if any(tool["name"] == name for tool in data["added"]):
        if name not in data["crashed"]:
            data["crashed"].append(name)
            save(state, data)
            sys.stderr.write(f"{name}: crashing on purpose\n")
            sys.stderr.flush()
            os._exit(3)
        return {"content": [{"type": "text", "text": f"{name} ran"}]}
    return {"content": [{"type": "text", "text": f"unknown tool {name}"}], "isError": True}


def main() -> int:
    state = Path(sys.argv[1])
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification
        params = message.get("params") or {}
        if method == "initialize":
            result: Any = {"protocolVersion": params.get("protocolVersion"),
                           "capabilities": {"tools": {"listChanged": True}},
                           "serverInfo": {"name": "tool-catalog", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": tools(load(state))}
        elif method == "tools/call":
            result = call(state, params.get("name"), params.get("arguments") or {})
        else:
            result = {}
        send({"jsonrpc": "2.0", "id": request_id, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
