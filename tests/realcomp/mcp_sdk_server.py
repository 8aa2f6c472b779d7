"""A real MCP server on the official SDK (``mcp`` 2.x ``MCPServer``), served over stdio.

Run it with the tools venv's interpreter (it is never imported by the tests)::

    .tools-venv/bin/python tests/realcomp/mcp_sdk_server.py

Tools:

- ``echo(text: str) -> str``: the text back, as one text block; no outputSchema.
  Annotations: readOnlyHint, idempotentHint.
- ``add(a: float, b: float)``: ``structuredContent`` ``{"sum": a + b}`` (and the same JSON as a
  text block); its outputSchema requires ``sum`` (a number). Annotations as ``echo``.
- ``fail(message: str)``: raises the SDK's ``ToolError``: the call result has ``isError: true``
  and one text block ``"Error executing tool fail: <message>"``.
- ``slow(seconds: float)``: sleeps asynchronously, then returns ``"slept <seconds>"``; sends
  ``notifications/progress`` at the start and the end when the request carries
  ``_meta.progressToken``.
- ``whoami()``: the value of ``$SARK_TEST_MARKER`` in the server's environment, or ``"unset"``.

Logging goes to stderr only (level ``$SARK_TEST_MCP_LOG_LEVEL``, default INFO); the SDK
itself points fd 1 at stderr while it serves, so a stray print cannot corrupt the wire.

Facts verified against mcp 2.3.0 (mcp-types 2.3.0, Python 3.11) over stdio, by
tests/integration/e2e/test_realcomp_mcp_sdk.py and by hand:

- Framing: one compact JSON object per line, UTF-8, each message flushed at once (the test
  runs it without ``PYTHONUNBUFFERED``). Unset fields are omitted; ``isError: false`` is sent
  on success. A line that is not valid JSON-RPC is dropped silently: no -32700 response.
- ``initialize``: a handshake version (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25) is
  answered with that same version; any other string, the stateless 2026-07-28 included, is
  answered with "2025-11-25" (never an error). ``capabilities`` is ``{"prompts":
  {"listChanged": false}, "resources": {"listChanged": false, "subscribe": false}, "tools":
  {"listChanged": false}}`` (no logging, no completions); ``serverInfo`` is ``{"name":
  "sark-test-sdk", "version": "1.0.0"}``.
- Before ``initialize`` has been answered, every served method but ``ping`` gets error
  -32602 "Invalid request parameters" (``data: ""``). ``notifications/initialized`` is not
  required: ``tools/*`` are served as soon as ``initialize`` was answered.
- Unknown method: error -32601 "Method not found", ``data`` = the method name, at any time.
- ``ping``: answered ``{}``, before ``initialize`` too.
- Tool errors are results, never JSON-RPC errors: ``isError: true`` and one text block, no
  ``structuredContent``. ``ToolError(msg)`` gives "Error executing tool <name>: <msg>"; any
  other exception only "Error executing tool <name>" (logged at ERROR with its traceback on
  the server); an unknown tool "Unknown tool: <name>"; arguments that fail the input schema
  "Error executing tool <name>: <pydantic's message>".
- A structured tool sends ``structuredContent`` plus a text block with the same JSON
  (indented). A ``-> str`` tool has an outputSchema ``{"result": ...}`` unless registered with
  ``structured_output=False`` (as here: only ``add`` has an outputSchema).
- Requests are served concurrently: a fast call overtakes a slow one.
- ``notifications/cancelled`` with the ``requestId`` of a running ``tools/call``: the call is
  cancelled and NO response is ever sent for that id; other requests go on being served. A
  cancel for an unknown id is ignored.
- Server-to-client requests: none (no ``ping``, ``roots/list``, ``sampling/*``). Unsolicited
  messages are notifications only: ``notifications/progress`` for a request whose
  ``params._meta.progressToken`` is set (``{"progressToken", "progress", "total"}``), and
  ``notifications/message`` if a tool logs through its context.
- Closing the server's stdin: a request whose handler has started (a ``slow`` call) is
  answered with error -32000 "Connection closed", then the server exits with status 0
  within about 0.2s. Requests written just before the EOF may get no answer at all (three
  requests written together with the EOF: sometimes all, sometimes only the first
  answered), so a client must fail its pending requests itself when stdout ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

#: The name the server gives in ``initialize`` (``serverInfo.name``).
SERVER_NAME = "sark-test-sdk"
#: Hints of the two pure tools.
PURE = ToolAnnotations(readOnlyHint=True, idempotentHint=True)

logging.basicConfig(
    stream=sys.stderr,
    level=os.environ.get("SARK_TEST_MCP_LOG_LEVEL", "INFO").upper(),
    format="mcp_sdk_server %(levelname)s %(name)s: %(message)s",
)

server = MCPServer(SERVER_NAME, version="1.0.0")


class Sum(BaseModel):
    """The structured result of ``add``."""

    sum: float


@server.tool(description="Return the text unchanged.", annotations=PURE, structured_output=False)
def echo(text: str) -> str:
    return text


@server.tool(description="Add two numbers.", annotations=PURE)
def add(a: float, b: float) -> Sum:
    return Sum(sum=a + b)


@server.tool(
    description="Fail with the given message (a tool-level error).", structured_output=False
)
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(
    description="Sleep for the given number of seconds, then say so.", structured_output=False
)
async def slow(seconds: float, ctx: Context) -> str:
    await ctx.report_progress(0, seconds)
    await asyncio.sleep(seconds)
    await ctx.report_progress(seconds, seconds)
    return f"slept {seconds:g}"


@server.tool(
    description="The value of SARK_TEST_MARKER in the server's environment.",
    structured_output=False,
)
def whoami() -> str:
    return os.environ.get("SARK_TEST_MARKER", "unset")


if __name__ == "__main__":
    server.run("stdio")
