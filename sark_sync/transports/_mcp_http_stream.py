"""The response streams of MCP Streamable HTTP: a request's SSE answer, read to its end and
resumed when it breaks (facts: ``docs/dev/MCP_HTTP_FACTS.md`` §2).

A **response stream** carries the server's notifications and requests about one request, then
its answer. Read here as the spec says:

- an event with empty data (the *priming* event a server with an event store sends first:
  an id, perhaps a ``retry:``) delivers nothing; an event of another type than ``message`` is
  ignored; the last ``id:`` and the ``retry:`` are remembered (:class:`StreamState`);
- if the stream breaks or ends before the answer and the server gave event ids, it is resumed
  with ``GET`` + ``Last-Event-ID`` (and the session's headers) after the server's ``retry:``
  delay (none given: at once, then :data:`RESUME_BACKOFF` doubled), as often as resuming brings
  new events, priming ones included (a server may close each stream after its priming event
  while the call runs, and so have the client poll; :data:`MAX_IDLE_RESUMES` resumptions in a
  row that bring nothing new end it), all within the request's deadline: the resumed
  exchanges run in the request's watchdog-guarded block, so a stalled resumption is cut like
  the POST itself, and a ``retry:`` that would pass the deadline is not waited for;
- a replayed event whose id was already seen is dropped, so every event, and every progress
  callback, is delivered once;
- a stream without ids that breaks cannot be resumed: :class:`~sark_sync.ConnectionFailed` at
  once (marked as sent: only a call that is safe to repeat is tried again). So is a resumption
  the server refuses or cannot take (a killed server refuses the connection: no loop).

The listening stream, which reads with the same rules: :mod:`._mcp_http_listen`.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import requests
import urllib3.exceptions

from .._exceptions import ClientClosedError, ConnectionFailed, TransportTimeout
from ..resilience import mark_sent
from ..wire import EventReader, SSEFramer, jsonrpc
from ._common import socket_of
from ._guarded import was_cut

__all__ = ["BREAKS", "Dispatch", "OpenGet", "ResponseStreams", "StreamState", "is_event_stream",
           "open_stream", "read_messages"]

log = logging.getLogger("sark_sync.mcp")

#: Bytes asked for per read of a stream.
READ_CHUNK = 64 * 1024
#: Seconds before the second resumption of a response stream when the server set no
#: ``retry:`` (the first is at once); doubled for each resumption that brought nothing new.
RESUME_BACKOFF = 0.1
#: What is read at most after a stream's answer (bytes, seconds): the server ends the stream
#: right after it, and a body read to its end hands its connection back to the pool, where a
#: body left unread costs a new TCP connection for the next request.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 0.02
#: Resumptions in a row that bring no new event before the call fails: a server that keeps
#: dropping the stream, or replays nothing, is not retried until the deadline.
MAX_IDLE_RESUMES = 3
#: Seconds to connect for a GET (the read of a listening stream is not bounded: it is idle).
CONNECT_TIMEOUT = 10.0
#: Event ids remembered per stream to drop replays.
MAX_SEEN_IDS = 4096
#: What a stream that breaks off raises while it is read (EventTooLarge, a ValueError, is not
#: a break: an oversize event is the server's fault and is not resumed).
BREAKS: tuple[type[Exception], ...] = (
    OSError, http.client.HTTPException, urllib3.exceptions.HTTPError, requests.RequestException)

#: A block that sets an ``id`` itself (field name ``id``, then a colon or the line's end).
_OWN_ID = re.compile(rb"(?:^|\n)id(?::|\n)")

Dispatch = Callable[[jsonrpc.Message], None]
#: ``open_get(last_event_id, read_timeout)``: a streaming GET of the endpoint.
OpenGet = Callable[[Optional[bytes], Optional[float]], requests.Response]


class StreamState:
    """What one stream has seen over all its connections: the SSE fields (``reader.resume``
    is the ``Last-Event-ID`` to send) and the ids delivered, so a replay delivers none twice."""

    __slots__ = ("_order", "_seen", "reader")

    def __init__(self) -> None:
        self.reader = EventReader()
        self._seen: set[str] = set()
        self._order: collections.deque[str] = collections.deque()

    def first_time(self, event_id: str | None) -> bool:
        """True unless an event with this id was delivered already (no id: always True)."""
        if event_id is None:
            return True
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._order.append(event_id)
        if len(self._order) > MAX_SEEN_IDS:
            self._seen.discard(self._order.popleft())
        return True


def drain(response: requests.Response) -> None:
    """Read what follows the answer (the end of the chunked body), at most
    :data:`DRAIN_BYTES` within :data:`DRAIN_SECONDS`, so the connection can be reused; a
    server that keeps the stream open just has it closed, as before."""
    sock = socket_of(response.raw)
    if sock is None:
        return
    try:
        sock.settimeout(DRAIN_SECONDS)
        left = DRAIN_BYTES
        while left > 0:
            chunk = response.raw.read1(min(left, READ_CHUNK))
            if not chunk:
                return
            left -= len(chunk)
    except BREAKS:
        pass  # not drained: closing the response closes its connection


def read_messages(raw: Any, state: StreamState, max_event_bytes: int,
                  name: str) -> Iterator[jsonrpc.Message]:
    """The JSON-RPC messages of one SSE connection (``raw`` has urllib3's ``read1``), as they
    arrive, each delivered once per ``state``; ends at the end of the body. A malformed
    message is logged and skipped; an oversize event raises ``EventTooLarge``."""
    framer = SSEFramer(max_event_bytes)
    while True:
        chunk = raw.read1(READ_CHUNK, decode_content=True)
        if not chunk:
            return
        for block in framer.feed(chunk):
            event = state.reader.read(block)
            if event is None or event.type != "message" or event.data == "":
                continue  # no data, another type, or a priming event (id and retry only)
            if not state.first_time(event.id if _OWN_ID.search(block) else None):
                continue  # replayed after a resumption: delivered already
            data = event.data if isinstance(event.data, str) else json.dumps(event.data)
            try:
                yield jsonrpc.parse_line(data)
            except jsonrpc.FramingError as exc:
                log.warning("%s sent a malformed message: %s", name, exc)


def open_stream(session: requests.Session, url: str, headers: Mapping[str, str],
                last_event_id: bytes | None, read_timeout: float | None) -> requests.Response:
    """A streaming GET of ``url`` for an event stream, with the session's ``headers`` (its
    ``Content-Type`` dropped) and ``Last-Event-ID`` when resuming."""
    send: dict[str, Any] = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    send["Accept"] = "text/event-stream"
    if last_event_id is not None:
        send["Last-Event-ID"] = last_event_id
    connect = CONNECT_TIMEOUT if read_timeout is None else min(read_timeout, CONNECT_TIMEOUT)
    return session.get(url, headers=send, stream=True, timeout=(connect, read_timeout),
                       allow_redirects=False)


def is_event_stream(response: requests.Response) -> bool:
    """Whether ``response`` is the event stream a GET asked for (200, ``text/event-stream``)."""
    mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return response.status_code == 200 and mime == "text/event-stream"


class ResponseStreams:
    """Reads a channel's response streams to their answer and resumes them (see the module).
    It holds no reference to the channel: each answer gets its ``open_get`` and ``dispatch``."""

    def __init__(self, name: str, max_event_bytes: int,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.name = name
        self._max_event_bytes = max_event_bytes
        self._closed = threading.Event()
        #: ``sleep(seconds)`` waits before a resumption; True means the channel was closed.
        self._sleep = sleep or self._closed.wait

    def close(self) -> None:
        """Wake and fail every resumption waiting for its delay."""
        self._closed.set()

    def answer(self, response: requests.Response, request_id: int, method: str,
               deadline: float, where: dict[str, Any], open_get: OpenGet,
               dispatch: Dispatch) -> jsonrpc.Response | jsonrpc.ErrorResponse:
        """The answer to ``request_id`` from its SSE ``response`` (closed by the caller) and
        its resumptions (closed here; ``open_get`` opens them), giving everything else to
        ``dispatch`` on the way."""
        state = StreamState()
        current, idle = response, 0
        try:
            while True:
                delivered, last = False, state.reader.last_event_id
                try:
                    for message in read_messages(current.raw, state, self._max_event_bytes,
                                                 self.name):
                        delivered = True
                        if isinstance(message, (jsonrpc.Response, jsonrpc.ErrorResponse)) \
                                and message.id == request_id:
                            drain(current)
                            return message
                        dispatch(message)
                    how = "ended"
                except BREAKS as exc:
                    if was_cut():
                        raise
                    how = f"broke off ({type(exc).__name__})"
                # A new id is progress too: a server that polls closes streams that hold a
                # priming event alone while the call runs.
                idle = 0 if delivered or state.reader.last_event_id != last else idle + 1
                if current is not response:
                    current.close()
                current = self._resume(state, idle, how, method, deadline, where, open_get)
        finally:
            if current is not response:
                current.close()

    def _resume(self, state: StreamState, idle: int, how: str, method: str, deadline: float,
                where: dict[str, Any], open_get: OpenGet) -> requests.Response:
        """The resumed stream, after the reconnection delay; or the error that ends the call."""
        what = f"MCP server {self.name!r}: the response stream of {method} {how} before its answer"
        resume = state.reader.resume
        if resume is None:
            raise mark_sent(ConnectionFailed(f"{what}, with no event id to resume from", **where))
        if idle >= MAX_IDLE_RESUMES:
            raise mark_sent(ConnectionFailed(f"{what}, and {idle} resumptions in a row brought "
                                             "nothing new", **where))
        if state.reader.retry_ms is not None:
            delay = state.reader.retry_ms / 1000.0
        else:
            delay = 0.0 if idle == 0 else RESUME_BACKOFF * 2 ** (idle - 1)
        remaining = deadline - time.monotonic()
        if delay >= remaining:
            raise mark_sent(TransportTimeout(f"{what}; resuming it after {delay:.3g}s would "
                                             "pass the deadline", **where))
        if (delay > 0 and self._sleep(delay)) or self._closed.is_set():
            raise ClientClosedError(f"the session with {self.name!r} was closed")
        log.debug("%s: resuming the response stream of %s", self.name, method)
        try:
            resumed = open_get(resume, max(deadline - time.monotonic(), 0.001))
        except requests.RequestException as exc:
            if was_cut():
                raise
            raise mark_sent(ConnectionFailed(f"{what}, and resuming it failed: "
                                             f"{type(exc).__name__}", **where)) from exc
        if not is_event_stream(resumed):
            status = resumed.status_code
            resumed.close()
            raise mark_sent(ConnectionFailed(f"{what}, and resuming it was answered {status}",
                                             **dict(where, method="GET", status_code=status)))
        return resumed
