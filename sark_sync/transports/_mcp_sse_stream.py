"""The GET stream of an HTTP+SSE (2024-11-05) session: the endpoint, and every answer.

:class:`EndpointStream` is the half of :class:`~.mcp_sse.LegacySSEChannel` that reads: it GETs
the SSE URL, and one reader thread (``sark-sync-sse-<name>-reader``) frames the events under
``max_event_bytes``, takes the first ``endpoint`` event (same origin only, see
:func:`resolve_endpoint`), settles the waiter of each response by id and hands the server's
requests and notifications to ``dispatch``. When the stream ends, whatever the reason, every
waiter fails at once with the one error that says why, later ones fail before anything is
sent, and the reader releases the connection itself. :meth:`EndpointStream.stop` shuts the
socket down to wake the reader, then joins it: no descriptor is closed under a thread.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Union
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from .._exceptions import (
    ClientClosedError,
    ConnectionFailed,
    GatewayError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from .._models import Event
from ..resilience import mark_sent, mark_unsent
from ..wire import EventReader, EventTooLarge, SSEFramer, jsonrpc
from ._common import READ_FAILURES, error_from_answer, socket_of, translate
from ._guarded import guarded

__all__ = ["EndpointStream", "Waiter", "refused", "resolve_endpoint"]

log = logging.getLogger("sark_sync.transports.mcp_sse")

#: Bytes asked for per read of the stream (a read returns what has arrived).
READ_CHUNK = 64 * 1024
#: Bytes of an error answer read for its message.
ERROR_BODY_BYTES = 64 * 1024
#: Longest the connect phase of the GET may take, whatever the caller's timeout.
CONNECT_TIMEOUT = 10.0
#: Seconds stop() waits for the reader thread once the stream's socket is shut down.
JOIN_TIMEOUT = 2.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What checking the GET's answer may raise: its error, or a read the server broke off.
_OPEN_FAILURES: tuple[type[Exception], ...] = (GatewayError, *READ_FAILURES)

Unasked = Union[jsonrpc.Request, jsonrpc.Notification]


def resolve_endpoint(sse_url: str, data: object) -> str:
    """The absolute URL of an ``endpoint`` event's data, resolved against ``sse_url``; a
    ``ValueError`` saying why for data that is not a URL or is on another origin (scheme,
    host, port): the caller's credentials must never travel to a host it did not name."""
    if not isinstance(data, str) or not data.strip():
        raise ValueError("the endpoint event carries no URL")
    url = urljoin(sse_url, data.strip())
    if _origin(url) != _origin(sse_url):
        raise ValueError(f"the endpoint is on another origin ({_show_origin(url)}; the stream "
                         f"is on {_show_origin(sse_url)}): messages go only to the stream's")
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no origin matches it
        return (scheme, "\0invalid", None)
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme))


def _named(exc: BaseException) -> str:
    """``urllib3.ProtocolError`` rather than a bare name that reads as ours."""
    kind = type(exc)
    package = kind.__module__.split(".")[0]
    return kind.__name__ if package == "builtins" else f"{package}.{kind.__name__}"


def _show_origin(url: str) -> str:
    scheme, host, port = _origin(url)
    return "an invalid port" if host == "\0invalid" else f"{scheme}://{host[:100]}:{port}"


def _shut_down(response: requests.Response) -> None:
    """Wake a read of ``response`` in another thread: shut its socket down, never close it.

    urllib3 keeps the socket's ``shutdown`` for this; the connection's own socket is gone when
    http.client handed it to a response read until the peer closes (no length, not chunked).
    """
    try:
        response.raw.shutdown()
        return
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass
    sock = socket_of(response.raw)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def refused(status: int, raw: bytes, headers: Mapping[str, str], where: dict[str, Any],
            what: str) -> GatewayError:
    """The error of a status other than the expected ones: a redirect is never followed (the
    endpoint is the server's to name, in its stream), any other the typed error of its status."""
    if 300 <= status < 400:
        return ProtocolError(f"{where['server']!r} answered {what} with a redirect ({status}); "
                             "HTTP+SSE redirects are not followed: give the final URL",
                             status_code=status, **where)
    return error_from_answer(status, raw, headers, where,
                             peer=f"MCP server {where['server']!r}")


class Waiter:
    """One request waiting for its answer; the latch is a lock held until the answer is in
    (a waiter blocked in C on ``acquire`` wakes faster than on a ``threading.Event``)."""

    __slots__ = ("done", "error", "latch", "result")

    def __init__(self) -> None:
        self.latch = threading.Lock()
        self.latch.acquire()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any, error: BaseException | None) -> None:
        """Deliver the answer once (callers hold the stream's lock)."""
        if not self.done:
            self.result, self.error, self.done = result, error, True
            self.latch.release()


class EndpointStream:
    """The GET stream of one session, and the requests waiting for answers on it."""

    def __init__(self, url: str, *, name: str, session: requests.Session,
                 headers: Mapping[str, str], auth: Any, max_event_bytes: int,
                 dispatch: Callable[[Unasked], None]) -> None:
        self.url, self.name = url, name
        self._session, self._headers, self._auth = session, headers, auth
        self._max_event_bytes = max_event_bytes
        self._dispatch = dispatch
        self._lock = threading.Lock()  # guards _pending, failure, _response
        self._pending: dict[jsonrpc.RequestId, Waiter] = {}
        self._response: requests.Response | None = None
        self._reader: threading.Thread | None = None
        self._owner_pid = os.getpid()
        #: Set once the endpoint arrived or the stream is over.
        self.ready = threading.Event()
        #: Why no message can be sent any more (the stream ended, or the channel closed).
        self.failure: GatewayError | None = None
        #: The URL messages are POSTed to, from the ``endpoint`` event.
        self.endpoint: str | None = None
        #: The ``session_id`` (or ``sessionId``) of the endpoint's query, if it has one.
        self.session_id: str | None = None

    @property
    def opened(self) -> bool:
        return self._reader is not None

    # -- the waiters ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise why nothing can be sent now."""
        if os.getpid() != self._owner_pid:
            raise ClientClosedError(f"the session with {self.name!r} belongs to the process "
                                    "that opened it; open a new one after fork()",
                                    server=self.name)
        failure = self.failure
        if failure is not None:
            error = copy.copy(failure)  # one instance per raiser; nothing of it was sent
            raise error if isinstance(error, ClientClosedError) else mark_unsent(error)

    def expect(self, request_id: jsonrpc.RequestId) -> Waiter:
        """A waiter for the answer to ``request_id`` (register it before sending)."""
        waiter = Waiter()
        with self._lock:
            self.check()
            self._pending[request_id] = waiter
        return waiter

    def forget(self, request_id: jsonrpc.RequestId) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def abandon(self, request_id: jsonrpc.RequestId, error: BaseException) -> None:
        """End the wait for ``request_id`` with ``error`` (its call was cancelled)."""
        self._settle(request_id, None, error)

    def fail_all(self, error: GatewayError) -> None:
        """End the session: every waiter, and every later request, fails with ``error``
        (unless it already ended for another reason)."""
        with self._lock:
            if self.failure is None:
                self.failure = error
            for waiter in self._pending.values():
                waiter.settle(None, copy.copy(error))
        self.ready.set()

    # -- the connection ------------------------------------------------------------------------

    def open(self, timeout: float) -> None:
        """GET the stream (its head within ``timeout``) and start the reader."""
        where: dict[str, Any] = {"method": "GET", "url": self.url, "server": self.name}
        headers = dict(self._headers, **{"Cache-Control": "no-cache"})
        with guarded(time.monotonic() + timeout) as exchange:
            try:
                response = self._session.get(
                    self.url, headers=headers, auth=self._auth, stream=True,
                    timeout=(min(timeout, CONNECT_TIMEOUT), None), allow_redirects=False)
            except requests.RequestException as exc:
                raise self._cut(timeout) if exchange.cut else translate(
                    exc, peer=f"MCP server {self.name!r}", **where) from exc
            try:
                status = response.status_code
                if status != 200:
                    raw = response.raw.read(ERROR_BODY_BYTES, decode_content=True) or b""
                    raise refused(status, raw, response.headers, where, "the stream's GET")
                mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if mime != "text/event-stream":
                    raise ProtocolError(f"{self.name!r} answered the HTTP+SSE stream's GET with "
                                        f"Content-Type {mime[:80] or 'none'!r}", **where)
            except _OPEN_FAILURES as exc:
                response.close()
                if exchange.cut:
                    raise self._cut(timeout) from None
                if isinstance(exc, GatewayError):
                    raise
                raise mark_sent(ConnectionFailed(f"{self.name!r} broke off the answer to the "
                                                 f"stream's GET: {type(exc).__name__}",
                                                 **where)) from exc
        with self._lock:
            self._response = response
        self._reader = threading.Thread(target=self._read, args=(response,), daemon=True,
                                        name=f"sark-sync-sse-{self.name}-reader")
        self._reader.start()

    def _cut(self, timeout: float) -> TransportTimeout:
        return TransportTimeout(f"MCP server {self.name!r} did not answer the HTTP+SSE stream's "
                                f"GET within {timeout:.3g}s", server=self.name)

    def stop(self) -> None:
        """Shut the socket down (waking the reader), then join the reader, which releases
        the connection. Call after :meth:`fail_all`. In a forked child: nothing (the
        connection is the parent's)."""
        if os.getpid() != self._owner_pid:
            self._response = None
            return
        with self._lock:  # the reader closes the response under this lock
            response = self._response
            if response is not None:
                _shut_down(response)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(JOIN_TIMEOUT)
            if reader.is_alive():  # stuck in a callback: it releases the stream on its way out
                log.warning("%s: the stream's reader did not stop within %gs", self.name,
                            JOIN_TIMEOUT)

    # -- the reader thread -----------------------------------------------------------------------

    def _read(self, response: requests.Response) -> None:
        """Events in until the stream ends; then fail what is pending, release the stream."""
        framer, fields = SSEFramer(self._max_event_bytes), EventReader()
        error: GatewayError
        try:
            while True:
                chunk = response.raw.read1(READ_CHUNK, decode_content=True)
                if not chunk:
                    error = self._dropped("ended")
                    break
                for block in framer.feed(chunk):
                    event = fields.read(block)
                    if event is not None:
                        self._on_event(event)
        except EventTooLarge as exc:
            error = ProtocolError(f"{self.name!r} sent {exc} on its HTTP+SSE stream "
                                  "(max_event_bytes); the session is over", server=self.name,
                                  url=self.url)
        except ProtocolError as exc:  # an endpoint refused
            error = exc
        except READ_FAILURES as exc:
            error = self._dropped(f"broke off ({_named(exc)})")
        except BaseException as exc:  # never leave a caller waiting, whatever happened
            self.fail_all(self._dropped(f"failed ({type(exc).__name__})"))
            raise
        finally:
            with self._lock:
                if self._response is response:
                    self._response = None
                response.close()
        self.fail_all(error)

    def _dropped(self, how: str) -> GatewayError:
        return mark_sent(ConnectionFailed(f"the HTTP+SSE stream of MCP server {self.name!r} "
                                          f"{how}; the session is over", server=self.name,
                                          url=self.url))

    def _on_event(self, event: Event) -> None:
        if event.type == "endpoint":
            if self.endpoint is None:
                try:
                    endpoint = resolve_endpoint(self.url, event.data)
                except ValueError as exc:
                    raise ProtocolError(f"{self.name!r} sent an endpoint event that was "
                                        f"refused: {exc}", server=self.name, url=self.url) \
                        from None
                query = parse_qs(urlsplit(endpoint).query)
                ids = query.get("session_id") or query.get("sessionId")
                self.session_id, self.endpoint = ids[0] if ids else None, endpoint
                self.ready.set()
            return
        if event.type != "message":
            log.debug("%s sent an event of type %r (ignored)", self.name, event.type[:80])
            return
        data = event.data if isinstance(event.data, str) else json.dumps(event.data)
        try:
            message = jsonrpc.parse_line(data)
        except jsonrpc.FramingError as exc:
            log.warning("%s sent a malformed message: %s", self.name, exc)
            if exc.salvaged_id is not None:
                self._settle(exc.salvaged_id, None, ProtocolError(
                    f"unreadable answer from {self.name!r}: {exc}", server=self.name))
            return
        if isinstance(message, jsonrpc.Response):
            self._settle(message.id, message.result, None)
        elif isinstance(message, jsonrpc.ErrorResponse):
            error = RPCError(f"{self.name!r} answered error {message.code}: {message.message}",
                             code=message.code, rpc_message=message.message, data=message.data,
                             server=self.name)
            if message.id is None:
                log.warning("%s reported an error without an id: %s", self.name, error)
            else:
                self._settle(message.id, None, error)
        else:
            self._dispatch(message)

    def _settle(self, request_id: jsonrpc.RequestId, result: Any,
                error: BaseException | None) -> None:
        with self._lock:
            waiter = self._pending.get(request_id)
            if waiter is not None:
                waiter.settle(result, error)
                return
        log.debug("%s answered unknown or abandoned request %r", self.name, request_id)
