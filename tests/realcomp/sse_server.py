"""A real SSE peer: sse-starlette's ``EventSourceResponse`` served by uvicorn, a stand-in for
the gateway's ``GET /api/v1/events`` that drops connections and replays after
``Last-Event-ID``.

Run it with the tools venv's interpreter (the tests never import it)::

    .tools-venv/bin/python tests/realcomp/sse_server.py --events 2000 --drop-every 100 \\
        --retry-ms 10 --ping 0.2 --api-key K

It binds 127.0.0.1 port 0 (loopback only), prints its base URL (``http://127.0.0.1:<port>``)
on stdout once uvicorn serves, and logs to stderr only. SIGTERM or SIGINT ends the open
streams (sse-starlette's shutdown watcher, within 0.5s) and the process exits 0.

Endpoints:

- ``GET /api/v1/events``: events with ids 1..``--events``, ``event: tick`` (or the types of
  ``--types``, in turn), data ``{"n": <id>}``, starting after the ``Last-Event-ID`` header
  (``400`` if it is not a number). The first event of each connection carries ``retry:
  --retry-ms``. When every event is sent the connection stays open (pings go on), as a
  gateway with nothing new does. Without the right ``X-API-Key`` (when ``--api-key`` is
  given): ``401`` ``{"error": {"code": "unauthenticated", "message": ...}}``. The first
  ``--status-count`` requests get ``--status-first`` (e.g. 503) with ``Retry-After:
  --retry-after`` when given. ``?types=a,b`` filters only with ``--filter-types``; otherwise
  every event is sent whatever the client asked for.
- ``GET /stats``: what the peer did, as JSON: ``requests`` (one entry per events request:
  ``t`` on the server's monotonic clock, ``last_event_id``, ``types``, ``status``),
  ``pings``, ``events``, ``drops``, ``stalls``, ``disconnects``. Not authenticated.

Misbehaviour:

- ``--drop-every N``: after the N-th event of a connection, the connection is cut, as
  ``--drop-mode`` says: ``crash`` (default) raises in the event generator: uvicorn logs it and
  closes the TCP connection (FIN) in the middle of the chunked body, without the final
  ``0\\r\\n\\r\\n`` chunk, as when a server dies mid-response; ``reset`` sets ``SO_LINGER`` 0 and
  aborts uvicorn's transport: a TCP RST; ``end`` ends the generator: a clean end of the HTTP
  response (final chunk sent; the connection itself stays open for keep-alive).
- ``--stall-after N``: once, right after event N, the connection goes silent (no event and no
  ping: a wrapper around the ASGI ``send`` swallows its body messages) until the client
  leaves; a later connection carries on normally.
- ``--interval S``: seconds between two events (``0``: as fast as possible).

Facts verified against sse-starlette 3.7.0 (starlette 1.10.0, uvicorn 0.54.0 with its h11
protocol, h11 0.16.0; httptools is not installed), Python 3.11, by reading the raw bytes off a
socket (the wire tests of tests/integration/transports/test_client_sse_peer.py) and sse-starlette's
source:

- Response head: ``HTTP/1.1 200 OK``, ``content-type: text/event-stream; charset=utf-8``,
  ``cache-control: no-store``, ``connection: keep-alive``, ``x-accel-buffering: no``,
  ``Transfer-Encoding: chunked`` (no Content-Length); uvicorn adds ``date`` and ``server``.
- Line ends are CRLF (``EventSourceResponse.DEFAULT_SEPARATOR = "\\r\\n"``; ``sep=`` may make
  them ``\\n`` or ``\\r``), and an event ends with an empty CRLF line.
- Field order within an event: comment lines, ``id``, ``event``, ``data`` (one line per line
  of data), ``retry``. So ``retry:`` comes *after* ``data:``, in the same block, when set on
  a ``ServerSentEvent``; a ``ServerSentEvent(retry=N)`` alone would be a dataless block.
  ``ServerSentEvent(data)`` writes ``str(data)``: JSON must be encoded by the caller.
- Each event and each ping is written as its own HTTP chunk, at once (no batching).
- Pings are comments, ``: ping - <datetime.now(timezone.utc)>\\r\\n\\r\\n``, e.g. ``: ping -
  2025-01-01 12:00:00.123456+00:00``, sent by a task of their own every ``ping`` seconds (the
  first one ``ping`` seconds after the response starts) whatever the events do; ``ping=0``
  disables them (default 15).
- A generator that returns ends the chunked body cleanly (``0\\r\\n\\r\\n``) and the
  connection stays open for keep-alive (requests/urllib3 then reuse it for the reconnect);
  one that raises after the response started makes uvicorn close the connection (FIN)
  without that chunk. A RST (``reset``) makes Linux discard what the client had received
  but not yet read, so the client resumes from an earlier id than the server's last.
- Shutdown: sse-starlette patches ``uvicorn.Server.handle_exit``; its watcher (polling every
  0.5s) cancels the open streams, which end without the final chunk (uvicorn logs "ASGI
  callable returned without completing response" and closes). uvicorn raises the signal it
  caught again once it has shut down; the handlers installed here make the process exit 0
  instead of dying by that signal.
- ``uvicorn.Server.serve(sockets=[sock])`` serves a socket bound here (port 0); it must be
  made with ``IPPROTO_TCP`` (see ``main``) or asyncio leaves Nagle on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("sse_peer")

EVENTS_PATH = "/api/v1/events"
#: The scope key under which the wire tap hands its per-connection state to the endpoint.
CONNECTION_KEY = "sse_peer.connection"
#: uvicorn's limit for open connections on shutdown (the streams end within 0.5s).
GRACEFUL_SHUTDOWN = 3
DROP_MODES = ("crash", "reset", "end")
STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 429: "rate_limited",
                500: "internal", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}


class Drop(Exception):
    """Raised in an event generator: uvicorn then cuts the connection mid-response."""


@dataclass
class Connection:
    """One ``GET /api/v1/events``, as the wire tap and the endpoint share it."""

    number: int
    transport: Any  # uvicorn's asyncio transport (``reset`` needs it), None if not found
    status: int = 0
    stalled: bool = False


@dataclass
class Stats:
    requests: list[dict[str, Any]] = field(default_factory=list)
    pings: int = 0
    events: int = 0
    drops: int = 0
    stalls: int = 0
    disconnects: int = 0


class Peer:
    """The options and the state of the server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.types: list[str] = args.types.split(",")
        self.stats = Stats()
        self.connections = 0
        self.stalled_once = False

    # -- the ASGI wrapper ------------------------------------------------------------------

    def tap(self, app: Any) -> Any:
        """Wrap ``app``: count pings and events on the wire, silence stalled connections,
        and find uvicorn's transport (``send`` is a bound method of its request cycle)."""

        async def tapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != EVENTS_PATH:
                await app(scope, receive, send)
                return
            self.connections += 1
            cycle = getattr(send, "__self__", None)
            conn = Connection(self.connections, getattr(cycle, "transport", None))
            scope[CONNECTION_KEY] = conn

            async def send_tapped(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    conn.status = message["status"]
                elif message["type"] == "http.response.body" and conn.status == 200:
                    if conn.stalled:
                        return
                    body = message.get("body", b"")
                    if body.startswith(b":"):
                        self.stats.pings += 1
                    elif body:
                        self.stats.events += 1
                await send(message)

            await app(scope, receive, send_tapped)

        return tapped

    # -- endpoints -------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        args = self.args
        conn: Connection = request.scope[CONNECTION_KEY]
        last = request.headers.get("last-event-id")
        types = request.query_params.get("types")
        entry = {"t": time.monotonic(), "connection": conn.number, "last_event_id": last,
                 "types": types, "status": 200}
        self.stats.requests.append(entry)

        def refuse(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> Response:
            entry["status"] = status
            log.info("#%d GET %s Last-Event-ID=%s types=%s -> %d", conn.number, EVENTS_PATH,
                     last, types, status)
            body = {"error": {"code": STATUS_CODES.get(status, "error"), "message": message}}
            return JSONResponse(body, status_code=status, headers=headers)

        if args.api_key is not None and request.headers.get("x-api-key") != args.api_key:
            return refuse(401, "a valid X-API-Key is required")
        if args.status_first and len(self.stats.requests) <= args.status_count:
            headers = {}
            if args.retry_after is not None:
                headers["Retry-After"] = str(args.retry_after)
            return refuse(args.status_first, f"answered {args.status_first} on purpose",
                          headers)
        if last is not None and last != "" and not last.isdigit():
            return refuse(400, f"Last-Event-ID must be a number, got {last!r}")
        start = int(last) if last else 0
        wanted = set(types.split(",")) if types and args.filter_types else None
        log.info("#%d GET %s Last-Event-ID=%s types=%s -> 200", conn.number, EVENTS_PATH,
                 last, types)

        async def closed(message: Any) -> None:
            self.stats.disconnects += 1
            log.info("#%d client disconnected", conn.number)

        return EventSourceResponse(self.stream(conn, start, wanted), ping=args.ping,
                                   client_close_handler_callable=closed)

    async def stream(self, conn: Connection, start: int, wanted: set[str] | None
                     ) -> AsyncIterator[ServerSentEvent]:
        args = self.args
        sent = 0
        n = start
        while n < args.events:
            n += 1
            kind = self.types[(n - 1) % len(self.types)]
            if wanted is not None and kind not in wanted:
                continue
            retry = args.retry_ms if sent == 0 else None
            yield ServerSentEvent(json.dumps({"n": n}), event=kind, id=str(n), retry=retry)
            sent += 1  # resumed: sse-starlette has written the event
            if n == args.stall_after and not self.stalled_once:
                self.stalled_once = conn.stalled = True
                self.stats.stalls += 1
                log.info("#%d stalled after id %d", conn.number, n)
                await anyio.sleep_forever()
            if args.drop_every and sent % args.drop_every == 0:
                self.drop(conn, n)
                return
            await anyio.sleep(args.interval)
        log.info("#%d all %d events sent; staying open", conn.number, args.events)
        await anyio.sleep_forever()

    def drop(self, conn: Connection, n: int) -> None:
        mode = self.args.drop_mode
        self.stats.drops += 1
        log.info("#%d drop (%s) after id %d", conn.number, mode, n)
        if mode == "end":
            return
        if mode == "reset":
            if conn.transport is None:
                raise RuntimeError("reset: uvicorn's transport was not found")
            sock = conn.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.transport.abort()
        raise Drop(f"dropped after id {n}")

    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(asdict(self.stats))

    def app(self) -> Any:
        routes = [Route(EVENTS_PATH, self.events), Route("/stats", self.stats_endpoint)]
        return self.tap(Starlette(routes=routes))


class _HideDrops(logging.Filter):
    """uvicorn logs every exception of the app with its traceback: not the planned drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, Drop)


async def serve(server: uvicorn.Server, sock: socket.socket, url: str) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(url, flush=True)
    await task


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--events", type=int, default=100, help="ids 1..N (default 100)")
    add("--types", default="tick", help="event types, comma-separated, given in turn")
    add("--filter-types", action="store_true", help="honour ?types= (default: ignore it)")
    add("--drop-every", type=int, default=0, help="cut a connection after N events")
    add("--drop-mode", choices=DROP_MODES, default="crash")
    add("--retry-ms", type=int, default=None, help="retry: sent with a connection's 1st event")
    add("--ping", type=float, default=None, help="ping interval (s); 0: none; default 15")
    add("--interval", type=float, default=0.0, help="seconds between two events")
    add("--api-key", default=None, help="required X-API-Key (default: none required)")
    add("--stall-after", type=int, default=None, help="go silent once, after this id")
    add("--status-first", type=int, default=None, help="status of the first requests")
    add("--status-count", type=int, default=1, help="how many get --status-first")
    add("--retry-after", type=int, default=None, help="Retry-After with --status-first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    peer = Peer(args)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
    # Without it, Nagle holds the first event after the response head until the client's
    # delayed ACK (40ms) on a reused keep-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(peer.app(), http="h11", ws="none", loop="asyncio", lifespan="off",
                            log_config=None, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    server = uvicorn.Server(config)

    def stop(signum: int, frame: Any) -> None:
        # Before uvicorn takes the signals over (a stop that arrives early), and after:
        # uvicorn raises the signal it caught again, once it has shut down.
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    asyncio.run(serve(server, sock, url))
    log.info("exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
