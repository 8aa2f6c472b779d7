"""A real MCP server on the official SDK (``mcp`` 2.x ``MCPServer``), served over HTTP.

Run it with the tools venv's interpreter (it is never imported by the tests)::

    .tools-venv/bin/python tests/realcomp/mcp_http_server.py                     # stateful, SSE
    .tools-venv/bin/python tests/realcomp/mcp_http_server.py --stateless --json-response
    .tools-venv/bin/python tests/realcomp/mcp_http_server.py --transport sse     # HTTP+SSE

It binds 127.0.0.1 port 0 (loopback only) and, once uvicorn serves, prints exactly one line
on stdout, ``READY http://127.0.0.1:<port><path>``, and flushes it; it logs to stderr only.
``<path>`` is the Streamable HTTP endpoint (``/mcp``) or, with ``--transport sse``, the legacy
GET stream (``/sse``; its messages go to ``/messages/?session_id=...``, as its ``endpoint``
event says). SIGTERM or SIGINT stops it within 2 s, open streams included, and it exits 0.

Tools: those of mcp_sdk_server.py (``echo``, ``add``, ``fail``, ``slow`` with progress,
``whoami``; imported from it, so both servers offer the same ones), plus:

- ``crash()``: ends the process with ``os._exit(1)`` while serving the call: no answer, the
  connection closed mid-call (in an SSE mode the ``200`` head has usually been sent and the
  chunked body ends without its last chunk; in a JSON mode the connection closes before any
  response head). It sends nothing first: a progress notification queued just before the
  exit might or might not reach the socket, and a test peer must behave the same every run.
- ``counter()``: how many times ``counter`` has run in this process, this call included, as
  text (``"1"``, ``"2"``, ...): a client that repeats a call shows up as a jump.
- ``steps(count, interval)``: ``count`` progress notifications (progress ``1`` .. ``count``,
  total ``count``), each ``interval`` seconds after the previous (the first at once), then
  ``"steps <count>"``: a response stream of several events.
- ``announce()``: sends ``notifications/tools/list_changed`` on the session's own channel
  (tied to no request: the SDK routes it to the listening GET stream, and drops it when none
  is open), then returns ``"announced"``.
- ``hangup(rounds, interval)``: ``rounds`` times, waits ``interval`` seconds then closes the
  call's response stream (``close_sse_stream``: with ``--event-store``, the client is to
  resume it, a poll), then waits ``interval`` again and returns ``"hung up <rounds> times"``.
- ``ping_client()``: sends a ``ping`` request on the session's own channel (the listening GET
  stream) and returns ``"pinged"`` once the client answered it (POSTed the response), or
  ``"no answer"`` after 5 s.
- ``late_count(seconds)``: sleeps, then counts like ``counter`` (the same count) and returns
  it: a call cancelled while it sleeps never counts, so a later ``counter()`` shows whether
  the server went on with it.
- ``regional(region, text)``: ``"<region>:<text>"``; ``region`` is annotated
  ``x-mcp-header: Region``, so at 2026-07-28 the SDK answers a call without a matching
  ``Mcp-Param-Region`` header 400 with -32020 (HeaderMismatch) before running the tool.

Options:

- ``--transport streamable-http`` (default) or ``sse`` (the legacy HTTP+SSE of 2024-11-05).
- ``--stateless``: no ``Mcp-Session-Id``; every POST is served on its own.
- ``--json-response``: a POST is answered with ``application/json`` instead of an SSE stream.
- ``--event-store``: resumable streams: an in-memory ``EventStore`` gives every event an id
  (``e<n>``, in the order stored) and replays a stream's events after an id to a ``GET`` with
  ``Last-Event-ID``. With a client at ``2025-11-25`` each response stream then opens with a
  priming event (an id and empty data).
- ``--retry-ms N``: the ``retry:`` the priming events carry (with ``--event-store``).

The 2026-07-28 revision has no switch: the SDK serves it on the same endpoint, per request,
to any POST whose ``MCP-Protocol-Version`` header names it (no ``initialize``, no session,
``params._meta`` carrying the protocol version and client capabilities), whatever the options.

Facts verified against mcp 2.3.0 (uvicorn 0.54.0, h11), by
tests/integration/e2e/test_realcomp_mcp_http.py:

- ``initialize`` POST: ``200``; ``content-type`` ``text/event-stream`` (or
  ``application/json`` with ``--json-response``); an ``mcp-session-id`` header when stateful,
  none when stateless. The SDK answers ``406`` unless ``Accept`` lists both
  ``application/json`` and ``text/event-stream`` (only the first with ``--json-response``).
- A 2026-07-28 ``tools/call`` (headers ``MCP-Protocol-Version``, ``Mcp-Method``,
  ``Mcp-Name``; ``params._meta`` with ``io.modelcontextprotocol/protocolVersion`` and
  ``.../clientCapabilities``) is answered ``200`` ``application/json`` without a session id
  in every mode when the tool ends within the SDK's SSE deferral window.
- ``notifications/initialized`` POST: ``202`` with an empty body.
- ``DELETE`` with the session id ends the session: ``200``; that id then gets ``404``.
- Legacy SSE: the GET stream's first event is ``event: endpoint`` with a relative URL
  ``/messages/?session_id=<hex>``; a POST there is answered ``202 Accepted`` and its response
  arrives on the GET stream as ``event: message``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Annotated, Any

from loopback_http import serve_on_loopback
from mcp.server.mcpserver import Context
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp_sdk_server import server
from pydantic import Field

#: Paths of the Streamable HTTP endpoint and of the legacy GET stream (the SDK's defaults).
STREAMABLE_PATH = "/mcp"
SSE_PATH = "/sse"

log = logging.getLogger("mcp_http_server")
logging.basicConfig(
    stream=sys.stderr,
    level=os.environ.get("SARK_TEST_MCP_LOG_LEVEL", "INFO").upper(),
    format="mcp_http_server %(levelname)s %(name)s: %(message)s",
    force=True,
)

_runs = 0


@server.tool(description="End the server process in the middle of the call.",
             structured_output=False)
def crash() -> str:
    log.warning("crash: exiting with status 1")
    logging.shutdown()
    os._exit(1)


@server.tool(description="How many times this tool has run in this process.",
             structured_output=False)
def counter() -> str:
    global _runs
    _runs += 1
    return str(_runs)


@server.tool(description="Report progress count times, interval seconds apart, then return.",
             structured_output=False)
async def steps(count: int, interval: float, ctx: Context) -> str:
    for step in range(1, count + 1):
        if step > 1:
            await asyncio.sleep(interval)
        await ctx.report_progress(step, count)
    return f"steps {count}"


@server.tool(description="Tell the client the tool list changed, outside any request.",
             structured_output=False)
async def announce(ctx: Context) -> str:
    await ctx.session.send_tool_list_changed()
    return "announced"


@server.tool(description="Sleep, then count like counter().", structured_output=False)
async def late_count(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return counter()


@server.tool(description="Say where, from an argument that travels in a header too.",
             structured_output=False)
def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
             text: str) -> str:
    return f"{region}:{text}"


@server.tool(description="Close the call's response stream rounds times, interval apart.",
             structured_output=False)
async def hangup(rounds: int, interval: float, ctx: Context) -> str:
    for _ in range(rounds):
        await asyncio.sleep(interval)
        await ctx.close_sse_stream()
    await asyncio.sleep(interval)
    return f"hung up {rounds} times"


@server.tool(description="Ping the client outside any request; say whether it answered.",
             structured_output=False)
async def ping_client(ctx: Context) -> str:
    try:
        await asyncio.wait_for(ctx.session.send_ping(), 5)
    except asyncio.TimeoutError:
        return "no answer"
    return "pinged"


class MemoryEventStore(EventStore):
    """Every event of the process, in order: ``(id, stream, message or None for priming)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = f"e{len(self.events) + 1}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str,
                                  send_callback: EventCallback) -> str | None:
        ids = [event[0] for event in self.events]
        if last_event_id not in ids:
            return None
        at = ids.index(last_event_id)
        stream = self.events[at][1]
        while at + 1 < len(self.events):  # events stored while replaying are replayed too
            at += 1
            event_id, stream_id, message = self.events[at]
            if stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("streamable-http", "sse"),
                        default="streamable-http")
    parser.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id")
    parser.add_argument("--json-response", action="store_true",
                        help="answer POSTs with application/json, not SSE")
    parser.add_argument("--event-store", action="store_true",
                        help="resumable streams (an in-memory event store)")
    parser.add_argument("--retry-ms", type=int, default=None,
                        help="the retry: of priming events, in ms")
    args = parser.parse_args(argv)
    if args.transport == "sse" and (args.stateless or args.json_response):
        parser.error("--stateless and --json-response are Streamable HTTP options")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.transport == "sse":
        app, path = server.sse_app(host="127.0.0.1"), SSE_PATH
    else:
        app = server.streamable_http_app(
            streamable_http_path=STREAMABLE_PATH, json_response=args.json_response,
            stateless_http=args.stateless, host="127.0.0.1",
            event_store=MemoryEventStore() if args.event_store else None,
            retry_interval=args.retry_ms)
        path = STREAMABLE_PATH
    serve_on_loopback(app, path, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
