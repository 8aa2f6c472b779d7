"""MCP Streamable HTTP, client side: a blocking message channel to a remote MCP server.

:class:`StreamableHTTPChannel` implements the seam's ``MessageChannel`` over the transport of
MCP revisions 2025-03-26 to 2025-11-25 (facts: ``docs/dev/MCP_HTTP_FACTS.md``):

- one POST per JSON-RPC message (never a batch) with ``Accept: application/json,
  text/event-stream``; a request's answer is a JSON body or an SSE stream on which the server
  may send notifications and its own requests before the response; a notification or a
  response is answered 202;
- ``Mcp-Session-Id`` is taken from a successful ``initialize`` answer and sent on every later
  request, ``MCP-Protocol-Version`` once negotiated; ``close()`` DELETEs the session (405: none);
- every exchange is bounded by the request's timeout, however slowly the server trickles
  (the deadline watchdog of :mod:`._guarded`), and a timeout sends ``notifications/cancelled``;
- a response stream that breaks is resumed with ``GET`` + ``Last-Event-ID`` when the server
  gave event ids, and a session keeps one listening ``GET`` stream for what the server sends
  unasked (:mod:`._mcp_http_stream`);
- what the server did not run is recovered from once (:mod:`._mcp_http_recovery`): a 404 to
  the session's id opens a new session (one ``initialize`` for every thread that saw it) and
  resends, a 401 refreshes ``auth`` and resends, a same-origin 307/308 is followed; a forked
  child opens its own session and never DELETEs its parent's;
- at 2026-07-28 (``modern_version``, set by the negotiation of :mod:`._mcp_modern`) every
  message carries the ``params._meta`` envelope and the ``Mcp-Method``/``Mcp-Name``/
  ``Mcp-Param-*`` headers, never a session id; no listening stream, no DELETE; a timeout
  closes the connection (the server's cancellation) and posts nothing; a non-2xx JSON-RPC
  error body is an :class:`RPCError` with ``status_code``; a result that is not
  ``resultType: complete`` is a :class:`ProtocolError`.

The HTTP+SSE transport of 2024-11-05 is :mod:`.mcp_sse`'s.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

import requests

from .._exceptions import (
    AuthenticationError,
    ClientClosedError,
    DeadlineExceeded,
    GatewayError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from ..resilience import (
    CancelToken,
    cancelled_error,
    cancels,
    current_cancellation,
    forksafety,
    mark_sent,
)
from ..wire import DEFAULT_MAX_EVENT_BYTES, jsonrpc
from . import _common
from ._common import READ_FAILURES, close_session, error_from_answer, new_session, translate
from ._guarded import GuardedAdapter, guarded, timed_out
from ._mcp_http_listen import EventStreams
from ._mcp_http_recovery import (
    MAX_REDIRECTS,
    Recovery,
    Redirected,
    SessionGone,
    Unauthorized,
    redirect_target,
)
from ._mcp_http_stream import open_stream
from ._mcp_modern import ParamHeaders, complete, error_of_answer, prepare, relearn

__all__ = ["StreamableHTTPChannel"]

log = logging.getLogger(__name__)

#: What every POST accepts: the server chooses a JSON body or an SSE stream per request.
ACCEPT = "application/json, text/event-stream"
#: Bytes asked for per read of an SSE response.
READ_CHUNK = 64 * 1024
#: Seconds to wait for the answer to a notification, a response or the closing DELETE.
SHORT_TIMEOUT = 5.0
#: What reading an answer may raise when the server breaks off or the deadline cuts it.
_BROKEN: tuple[type[Exception], ...] = (*READ_FAILURES, requests.RequestException)


class StreamableHTTPChannel:
    """JSON-RPC with one MCP server at ``url`` over Streamable HTTP. Thread-safe: each request
    is its own POST. ``headers`` go on every request (credentials: never logged), and so does
    ``auth`` (requests' ``auth=``). 404, 401 and redirects: :mod:`._mcp_http_recovery`."""

    def __init__(
        self, url: str, *, name: str, user_agent: str, headers: Mapping[str, str] | None = None,
        verify: bool | str | None = None,
        on_request: Callable[[jsonrpc.Request], None] | None = None,
        on_notification: Callable[[jsonrpc.Notification], None] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, auth: Any = None,
        reinitialize: Callable[[float], None] | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self._peer = f"MCP server {name!r}"  # who answered, in error messages
        self._headers = dict(headers or {})
        self._on_request = on_request
        self._on_notification = on_notification
        self._max_event_bytes = max_event_bytes
        self._user_agent, self._verify, self._auth = user_agent, verify, auth
        self._recovery = Recovery(name, auth, reinitialize)
        self._session = self._http_session()
        self._pid = os.getpid()  # a child never ends (DELETEs) its parent's session
        self._lost = False  # the session must be opened again before the next request
        forksafety.register(self)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._streams = EventStreams(name, max_event_bytes)
        #: None: the 2025 wire. A 2026 version (set by the negotiation): every message
        #: carries the envelope and routing headers, never a session id; no DELETE.
        self.modern_version: str | None = None
        self._tools = ParamHeaders()  # the Mcp-Param-* headers of each tool, at 2026
        self._closed = False

    # -- MessageChannel ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed

    def start(self) -> None:
        """Nothing to start: the first POST (``initialize``) opens the session."""

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        """The result of one request; :class:`DeadlineExceeded` (after sending
        ``notifications/cancelled``) when it is not answered within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        request_id = next(self._ids)
        modern, route = prepare(method, params, self.modern_version, self._tools)
        body = jsonrpc.encode_request(request_id, method, modern)
        renewed = False
        cancellation = current_cancellation() if method in (
            "tools/call", "subscriptions/listen") else None  # a token cuts these
        if cancellation is not None and cancellation.cancelled:
            raise cancelled_error(self.name, method, cancellation)
        while True:
            seen = self._recovery.sessions.generation
            try:
                if self._lost and method != "initialize":
                    self._renew_session(seen, method, deadline)  # forked: a session of our own
                    continue
                result = self._post(body, max(0.0, deadline - time.monotonic()),
                                    request_id=request_id, method=method, route=route,
                                    cancellation=cancellation)
                break
            except SessionGone:
                if renewed or method == "initialize":
                    raise self._recovery.expired(method) from None
                renewed = True
                self._renew_session(seen, method, deadline)
            except RPCError as exc:  # 2026: a tool's Mcp-Param-* headers, unknown until listed
                if not (route and relearn(self.request, self._tools, exc, params, route,
                                          deadline)):
                    raise
                modern, route = prepare(method, params, self.modern_version, self._tools)
            except TransportTimeout as exc:
                if cancellation is not None and cancellation.cancelled:  # its exchange cut
                    self._cancel(request_id, cancellation.reason or "cancelled")
                    raise cancelled_error(self.name, method, cancellation) from None
                self._cancel(request_id, "timeout")
                if time.monotonic() < deadline:
                    raise
                raise DeadlineExceeded(exc.message, timeout=timeout, last_error=exc,
                                       server=self.name) from None
        if route:  # 2026: an input_required result is answered and the request sent again
            inputs, result = self._tools.inputs, complete(result, method, self.name, self._tools)
            return inputs.resolve(self, method, params, result, deadline) if inputs else result
        if method == "initialize" and isinstance(result, Mapping):
            version = result.get("protocolVersion")
            self.protocol_version = version if isinstance(version, str) else None
        return result

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = SHORT_TIMEOUT) -> None:
        modern, route = prepare(method, params, self.modern_version, self._tools)
        self._post(jsonrpc.encode_notification(method, modern), timeout, route=route)
        if method == "notifications/initialized":
            self._listen()

    def respond(self, request_id: str | int, result: Any) -> None:
        self._post(jsonrpc.encode_response(request_id, result), SHORT_TIMEOUT)

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        self._post(jsonrpc.encode_error(request_id, code, message), SHORT_TIMEOUT)

    def close(self) -> None:
        """DELETE the session (a server that keeps none answers 405; a forked child never
        DELETEs its parent's), then release the connections. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._streams.close()  # the listening thread joined before the connections go
        if self.session_id is not None and self._pid == os.getpid():
            try:
                with guarded(time.monotonic() + SHORT_TIMEOUT):
                    self._session.delete(self.url, headers=self._send_headers(),
                                         timeout=SHORT_TIMEOUT, allow_redirects=False).close()
            except (requests.RequestException, OSError) as exc:
                log.debug("%s: DELETE of the session failed: %s", self.name, type(exc).__name__)
        close_session(self._session)

    # -- one POST ----------------------------------------------------------------------------

    def _send_headers(self, *, fresh: bool = False) -> dict[str, str]:
        """The headers of every request; ``fresh`` (an ``initialize``, which opens a new
        session) carries neither the session id nor the version of the old session."""
        headers = dict(self._headers)
        headers["Content-Type"] = "application/json"
        if self.session_id is not None and not fresh:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None and not fresh:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def _post(self, body: bytes, timeout: float, *, request_id: int | None = None,
              method: str = "", route: Mapping[str, str] | None = None,
              cancellation: CancelToken | None = None) -> Any:
        """POST one message, following same-origin 307/308 and refreshing the credentials
        once on a 401; for a request, its result (an error answer raises RPCError)."""
        deadline = time.monotonic() + timeout
        url, hops, refreshed = self.url, 0, False
        while True:
            seen = self._recovery.credentials.generation
            try:
                return self._post_once(url, body, max(0.0, deadline - time.monotonic()),
                                       request_id=request_id, method=method, route=route,
                                       cancellation=cancellation)
            except Redirected as hop:
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise ProtocolError(f"MCP server {self.name!r} redirected more than "
                                        f"{MAX_REDIRECTS} times", server=self.name) from None
                url = hop.url
            except Unauthorized as refused:
                if refreshed or not self._recovery.refresh(seen, deadline):
                    raise refused.error from None
                refreshed = True
            except SessionGone:
                if request_id is not None:
                    raise  # request() opens a new session and resends
                raise self._recovery.expired(method) from None

    def _post_once(self, url: str, body: bytes, timeout: float, *, request_id: int | None,
                   method: str, route: Mapping[str, str] | None = None,
                   cancellation: CancelToken | None = None) -> Any:
        if self._closed:
            raise ClientClosedError(f"the session with {self.name!r} is closed")
        where: dict[str, Any] = {"method": "POST", "url": self.url, "server": self.name}
        deadline = time.monotonic() + timeout
        with guarded(deadline) as exchange, cancels(cancellation, exchange.expire):
            try:
                headers = _common.with_call_headers(dict(self._send_headers(
                    fresh=method == "initialize" or bool(route)), **(route or {})), method)
                response = _common.send_direct(self._session, "POST", url, params=None,
                                               data=body, headers=headers,
                                               timeout=(min(timeout, 10.0), timeout))
            except requests.RequestException as exc:
                error = translate(exc, peer=self._peer, **where)
                raise self._timeout(method, timeout) if timed_out(exchange, error, deadline) \
                    else error from exc
            try:
                return self._answer(response, request_id, method, where, deadline)
            except GatewayError as exc:
                if timed_out(exchange, exc, deadline):
                    raise self._timeout(method, timeout) from None
                raise
            except _BROKEN as exc:
                if exchange.cut:
                    raise self._timeout(method, timeout) from None
                # The server may have run it: only an idempotent call is tried again.
                what = method or "a message"
                raise mark_sent(ProtocolError(f"{self.name!r}: the answer to {what} broke off: "
                                              f"{type(exc).__name__}", **where)) from exc
            finally:
                response.close()

    def _timeout(self, method: str, timeout: float) -> TransportTimeout:
        return TransportTimeout(f"MCP server {self.name!r} did not answer {method or 'a message'} "
                                f"within {timeout:.3g}s", server=self.name)

    def _answer(self, response: requests.Response, request_id: int | None, method: str,
                where: dict[str, Any], deadline: float) -> Any:
        status = response.status_code
        if 300 <= status < 400:
            raise Redirected(redirect_target(response.url, status,
                                             response.headers.get("Location"), name=self.name))
        if status == 401:
            raise Unauthorized(AuthenticationError(
                f"MCP server {self.name!r} refused the credentials (401)",
                **dict(where, status_code=status)))
        if status == 404 and response.request.headers.get("Mcp-Session-Id"):
            raise SessionGone()
        if request_id is None:  # a notification or a response: 202, nothing to read
            if status not in (200, 202):
                raise error_from_answer(status, response.raw.read(4096) or b"",
                                        response.headers, where, peer=self._peer)
            return None
        if status != 200:
            raw = response.raw.read(64 * 1024) or b""
            rpc_error = error_of_answer(raw, status, self.name) if self.modern_version else None
            raise rpc_error or error_from_answer(status, raw, response.headers, where,
                                                 peer=self._peer)
        if method == "initialize":
            self.session_id = response.headers.get("Mcp-Session-Id") or None
        mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if mime == "application/json":
            raw = response.raw.read(self._max_event_bytes + 1, decode_content=True)
            if len(raw) > self._max_event_bytes:
                raise ProtocolError(f"{self.name!r} answered {method} with more than "
                                    f"{self._max_event_bytes} bytes", **where)
            return self._settle(jsonrpc.parse_line(raw), request_id, where)
        if mime == "text/event-stream":  # resumed if it breaks: _mcp_http_stream
            answer = self._streams.answer(response, request_id, method, deadline, where,
                                          self._open_stream, self._dispatch)
            return self._settle(answer, request_id, where)
        raise ProtocolError(f"{self.name!r} answered {method} with Content-Type "
                            f"{mime[:80] or 'none'!r}", **where)

    # -- event streams (_mcp_http_stream) -------------------------------------------------------

    def _open_stream(self, last_event_id: bytes | None,
                     read_timeout: float | None) -> requests.Response:
        """A GET of the endpoint's event stream with the session's headers: a resumption
        (``Last-Event-ID``) or the listening stream."""
        return open_stream(self._session, self.url, self._send_headers(), last_event_id,
                           read_timeout)

    def _listen(self) -> None:
        """Open the session's one listening stream, once it is initialized with a session id."""
        if self.session_id is not None and self.modern_version is None:
            self._streams.listen(self, self.session_id, self._open_stream, self._dispatch)

    def _settle(self, message: jsonrpc.Message, request_id: int, where: dict[str, Any]) -> Any:
        if isinstance(message, jsonrpc.ErrorResponse):
            raise RPCError(f"{self.name!r} answered error {message.code}: {message.message}",
                           code=message.code, rpc_message=message.message, data=message.data,
                           server=self.name)
        if isinstance(message, jsonrpc.Response) and message.id == request_id:
            return message.result
        raise ProtocolError(f"{self.name!r} answered with another message than the response",
                            **where)

    def _dispatch(self, message: jsonrpc.Message) -> None:
        try:
            if isinstance(message, jsonrpc.Notification) and self._on_notification is not None:
                self._on_notification(message)
            elif isinstance(message, jsonrpc.Request) and self._on_request is not None:
                self._on_request(message)
        except Exception:  # a callback's bug must not break the stream
            log.exception("%s: a callback failed", self.name)

    # -- recovery (_mcp_http_recovery) ----------------------------------------------------------

    def _http_session(self) -> requests.Session:
        session = new_session(self.url, self._user_agent, self._verify, GuardedAdapter(
            pool_connections=1, pool_maxsize=32), accept=ACCEPT)
        session.auth = self._auth
        return session

    def _renew_session(self, seen: int, method: str, deadline: float) -> None:
        def opened() -> None:
            self._lost = False

        self._recovery.renew_session(seen, method, deadline, opened)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the session and the pooled connections are the parent's. The
        child opens its own session on its first request and never DELETEs the parent's."""
        self._session = self._http_session()
        self._pid = os.getpid()
        self._lost = self.session_id is not None  # a session of its own, on first use
        if self._lost:
            self.session_id = self.protocol_version = None
        self._lock = threading.Lock()
        self._recovery.after_fork()

    def _cancel(self, request_id: int, reason: str) -> None:
        if self.modern_version is not None:
            return  # 2026-07-28: closing the connection (the watchdog's cut) cancels
        try:
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason},
                        timeout=1.0)
        except GatewayError as exc:
            log.debug("%s: could not send the cancellation: %s", self.name, exc)

    def __repr__(self) -> str:
        return f"<StreamableHTTPChannel {self.name!r} session={'yes' if self.session_id else 'no'}>"
