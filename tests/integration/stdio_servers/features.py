"""A scripted MCP stdio server for resources, prompts and completion: it declares only the
capabilities it is told to, pages its listings, and tells the client what it received.

``python features.py [--capabilities LIST] [--version V] [--pages N] [--loop]``

- ``--capabilities``: comma-separated capabilities to declare besides ``tools`` (default
  ``resources,prompts,completions``; ``""`` for none). The methods are answered whatever it
  declared: a client that sends one it should not is seen in ``received``.
- ``--version``: the protocolVersion it answers ``initialize`` with (default: the client's).
- ``--pages N`` (default 3): ``resources/list`` answers page ``i`` (cursor ``c<i>``) with
  ``res://p<i>/a`` and ``res://p<i>/b`` (named ``p<i>a``, ``p<i>b``); page 0 also carries
  a malformed item (a uri that is a number). ``prompts/list``: two pages, ``first`` then
  ``second`` (with a required argument ``who``).
- ``--loop``: ``prompts/list`` answers every page with ``nextCursor`` ``"again"``.

Answers: ``resources/templates/list`` one template ``res://{name}``; ``resources/read`` the
text ``"read <uri>"``, except ``res://bad-blob`` (a blob that is not base64) and
``res://binary`` (the blob ``AAEC``); ``prompts/get`` one user message ``"<name> <arguments as
JSON>"``; ``completion/complete`` the values ``<value>1`` and ``<value>2``, plus ``"context"``
when the request had a ``context``. Tool ``received``: the methods received so far, one per
line. Anything else: -32601. Stdlib only; exits 0 at EOF.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

RECEIVED_TOOL = {"name": "received", "description": "The methods received so far.",
                 "inputSchema": {"type": "object"}}


def answer(method: str, params: dict[str, Any], options: argparse.Namespace,
           received: list[str]) -> Any:
    """The result of a request, or raises KeyError for an unknown method."""
    if method == "initialize":
        declared = [c for c in options.capabilities.split(",") if c]
        return {"protocolVersion": options.version or params.get("protocolVersion"),
                "capabilities": dict({c: {} for c in declared}, tools={}),
                "serverInfo": {"name": "features", "version": "1"}}
    if method == "tools/list":
        return {"tools": [RECEIVED_TOOL]}
    if method == "tools/call":
        return {"content": [{"type": "text", "text": "\n".join(received)}]}
    if method == "resources/list":
        page = int(str(params.get("cursor") or "c0")[1:])
        items: list[Any] = [{"uri": f"res://p{page}/{x}", "name": f"p{page}{x}"} for x in "ab"]
        if page == 0:
            items.insert(1, {"uri": 5, "name": "malformed"})
        result: dict[str, Any] = {"resources": items}
        if page + 1 < options.pages:
            result["nextCursor"] = f"c{page + 1}"
        return result
    if method == "resources/templates/list":
        return {"resourceTemplates": [{"uriTemplate": "res://{name}", "name": "res"}]}
    if method == "resources/read":
        uri = params["uri"]
        if uri == "res://bad-blob":
            return {"contents": [{"uri": uri, "blob": "not base64!"}]}
        if uri == "res://binary":
            return {"contents": [{"uri": uri, "blob": "AAEC"}]}
        return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": f"read {uri}"}]}
    if method == "prompts/list":
        if options.loop:
            return {"prompts": [], "nextCursor": "again"}
        if params.get("cursor") == "second":
            return {"prompts": [{"name": "second", "arguments": [
                {"name": "who", "required": True}]}]}
        return {"prompts": [{"name": "first"}], "nextCursor": "second"}
    if method == "prompts/get":
        text = f"{params['name']} {json.dumps(params.get('arguments'), sort_keys=True)}"
        return {"messages": [{"role": "user", "content": {"type": "text", "text": text}}]}
    if method == "completion/complete":
        value = params["argument"]["value"]
        extra = ["context"] if "context" in params else []
        return {"completion": {"values": [f"{value}1", f"{value}2", *extra]}}
    raise KeyError(method)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capabilities", default="resources,prompts,completions")
    parser.add_argument("--version", default=None)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--loop", action="store_true")
    options = parser.parse_args()
    received: list[str] = []
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        if not isinstance(method, str):
            continue  # a response to us: we never ask
        received.append(method)
        if "id" not in message:
            continue
        try:
            reply = {"jsonrpc": "2.0", "id": message["id"],
                     "result": answer(method, message.get("params") or {}, options, received)}
        except KeyError:
            reply = {"jsonrpc": "2.0", "id": message["id"],
                     "error": {"code": -32601, "message": f"Method not found: {method}"}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
