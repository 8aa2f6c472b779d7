"""An OLDER official MCP server (``mcp`` 1.x ``FastMCP``) over Streamable HTTP: 2025-11-25 at most.

Run it with the mcp1 venv's interpreter (it is never imported by the tests)::

    .mcp1-venv/bin/python tests/realcomp/mcp1_http_server.py                 # stateful, SSE
    .mcp1-venv/bin/python tests/realcomp/mcp1_http_server.py --stateless --json-response

The venv is ``<repo>/.mcp1-venv`` (CPython 3.11), built from
``tests/realcomp/requirements-mcp1.txt``. It is the peer that shows the version fallback:
a client that probes ``server/discover`` at 2026-07-28 must get a refusal it can recognise and
then fall back to ``initialize`` at 2025-11-25, because 1.x has no 2026-07-28 path at all.

It binds 127.0.0.1 port 0 (loopback only) and, once uvicorn serves, prints exactly one line
on stdout, ``READY http://127.0.0.1:<port>/mcp``, and flushes it; it logs to stderr only.
SIGTERM or SIGINT stops it within 2 s and it exits 0.

Tools: ``echo(text)`` (the text back, annotated read-only and idempotent) and
``slow(seconds)`` (sleeps, with a progress notification at the start and the end when the
request asks for progress).

Facts verified against mcp 1.30.0 (uvicorn 0.55.0, h11) by
tests/integration/transports/test_remote_server_versions.py:

- A ``server/discover`` POST with ``MCP-Protocol-Version: 2026-07-28`` and no session is
  answered **400** ``{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":
  "Bad Request: Missing session ID"}}`` when stateful; **400** ``Unsupported protocol
  version: 2026-07-28`` (code -32600) when stateless: 1.x checks the version header before
  it reads the body, so it never gets to say ``server/discover`` is unknown.
- ``initialize`` at 2025-11-25 is answered with 2025-11-25 and (stateful) an
  ``mcp-session-id``; the calls then carry it, and DELETE ends the session (200).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from loopback_http import serve_on_loopback
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations

#: The name the server gives in ``initialize`` (``serverInfo.name``).
SERVER_NAME = "sark-test-mcp1"
#: The Streamable HTTP endpoint (the SDK's default).
STREAMABLE_PATH = "/mcp"

log = logging.getLogger("mcp1_http_server")
logging.basicConfig(
    stream=sys.stderr,
    level=os.environ.get("SARK_TEST_MCP_LOG_LEVEL", "INFO").upper(),
    format="mcp1_http_server %(levelname)s %(name)s: %(message)s",
    force=True,
)


def build(stateless: bool, json_response: bool) -> FastMCP:
    server = FastMCP(SERVER_NAME, host="127.0.0.1", streamable_http_path=STREAMABLE_PATH,
                     stateless_http=stateless, json_response=json_response)

    @server.tool(description="Return the text unchanged.",
                 annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True),
                 structured_output=False)
    def echo(text: str) -> str:
        return text

    @server.tool(description="Sleep for the given number of seconds, then say so.",
                 structured_output=False)
    async def slow(seconds: float, ctx: Context) -> str:  # type: ignore[type-arg]
        await ctx.report_progress(0, seconds)
        await asyncio.sleep(seconds)
        await ctx.report_progress(seconds, seconds)
        return f"slept {seconds:g}"

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id")
    parser.add_argument("--json-response", action="store_true",
                        help="answer POSTs with application/json, not SSE")
    args = parser.parse_args(argv)
    app = build(args.stateless, args.json_response).streamable_http_app()
    serve_on_loopback(app, STREAMABLE_PATH, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
