"""MCP over HTTP+SSE (the 2024-11-05 transport), client side: a blocking message channel.

:class:`LegacySSEChannel` implements the seam's ``MessageChannel`` over the transport MCP used
before Streamable HTTP, which servers still offer (the official SDK's ``sse_app()``; facts:
``docs/dev/MCP_HTTP_FACTS.md`` §6):

- :meth:`~LegacySSEChannel.start` GETs the SSE URL and waits, within its timeout, for the
  ``endpoint`` event: the URL to POST messages to, resolved against the SSE URL. An endpoint
  on another origin (scheme, host, port) is refused with :class:`ProtocolError`: the
  ``headers`` (credentials) must never travel to a host the caller did not name.
- Each message is one POST to the endpoint (answered 202, or 200); the answer to a request
  arrives on the GET stream, where one reader thread demultiplexes responses by id into the
  waiting callers and hands the server's own requests and notifications to the callbacks (on
  that thread: keep them short). The stream is :class:`~._mcp_sse_stream.EndpointStream`.
- ``auth`` (anything ``requests`` takes) sets its headers on every request; a 401 calls its
  ``refresh()``, if it has one, once and sends the request once more (as the Streamable HTTP
  channel does).
- Every wait is bounded by the request's timeout (the POST by the deadline watchdog of
  :mod:`._guarded`, the answer by its latch); a request not answered in time posts
  ``notifications/cancelled`` and raises :class:`DeadlineExceeded`.
- The session lives as long as the GET connection. When it ends (the server stopped or was
  killed, an event over ``max_event_bytes``), every pending request fails at once with
  :class:`ConnectionFailed` (:class:`ProtocolError` for an oversized event), the channel is no
  longer ``alive`` and later requests fail at once, before anything is sent.
- :meth:`~LegacySSEChannel.close` fails pending requests with :class:`ClientClosedError`,
  stops the reader (socket shut down, thread joined) and only then releases the connections.
  In a process forked from the owner it only forgets the parent's.
"""

from __future__ import annotations

import itertools
import logging
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
    TransportTimeout,
)
from ..resilience import (
    cancelled_error,
    cancels,
    current_cancellation,
    mark_sent,
    sent_reason,
)
from ..wire import DEFAULT_MAX_EVENT_BYTES, jsonrpc
from ._common import READ_FAILURES, close_session, new_session, translate, with_call_headers
from ._guarded import GuardedAdapter, guarded, timed_out
from ._mcp_http_recovery import Recovery
from ._mcp_sse_stream import (
    CONNECT_TIMEOUT,
    EndpointStream,
    Unasked,
    refused,
    resolve_endpoint,
)

__all__ = ["LegacySSEChannel", "resolve_endpoint"]

log = logging.getLogger(__name__)

#: Seconds :meth:`LegacySSEChannel.start` waits for the stream and its endpoint by default.
START_TIMEOUT = 10.0
#: Seconds to wait for the server to take a notification or a response.
SHORT_TIMEOUT = 5.0
#: Seconds a timed-out request spends telling the server to cancel it (after its timeout).
CANCEL_TIMEOUT = 0.5
#: Bytes of a POST's answer read (its "Accepted", or an error's message).
ANSWER_BYTES = 64 * 1024
#: The statuses that mean the server took a POSTed message.
ACCEPTED = frozenset({200, 202, 204})


class LegacySSEChannel:
    """JSON-RPC with one MCP server over HTTP+SSE; ``url`` is its GET stream (``/sse``).
    Thread-safe. ``headers`` (and ``auth``: anything ``requests`` takes) go on every request,
    the GET and each POST (credentials: never logged nor shown).

    >>> channel = LegacySSEChannel("http://127.0.0.1:8000/sse", name="s",   # doctest: +SKIP
    ...                            user_agent="sark-sync")
    >>> channel.start(5.0); channel.request("ping", None, 5.0)             # doctest: +SKIP
    {}
    """

    def __init__(
        self, url: str, *, name: str, user_agent: str, headers: Mapping[str, str] | None = None,
        auth: Any = None, verify: bool | str | None = None,
        on_request: Callable[[jsonrpc.Request], None] | None = None,
        on_notification: Callable[[jsonrpc.Notification], None] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.url = url
        self.name = name
        self._headers = dict(headers or {})
        self._auth = auth
        self._on_request = on_request
        self._on_notification = on_notification
        # The stream holds its connection for the session's life: a session of its own.
        self._stream_session = new_session(url, user_agent, verify, GuardedAdapter(
            pool_connections=1, pool_maxsize=1), accept="text/event-stream")
        self._post_session = new_session(url, user_agent, verify, GuardedAdapter(
            pool_connections=1, pool_maxsize=32))
        self._stream = EndpointStream(
            url, name=name, session=self._stream_session, headers=self._headers, auth=auth,
            max_event_bytes=max_event_bytes, dispatch=self._dispatch)
        self._recovery = Recovery(name, auth, None)  # 401: auth.refresh() once, if it has one
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._closed = False
        self.protocol_version: str | None = None

    @property
    def endpoint(self) -> str | None:
        """The URL messages are POSTed to (from the ``endpoint`` event); None before start."""
        return self._stream.endpoint

    @property
    def session_id(self) -> str | None:
        """The ``session_id`` of the endpoint's query (None before start, or without one)."""
        return self._stream.session_id

    # -- MessageChannel ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed and self._stream.failure is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Open the stream and wait for its endpoint, within ``timeout`` seconds; idempotent
        (concurrent callers share one start). Raises the typed error of the GET's answer,
        :class:`TransportTimeout` without an endpoint in time, :class:`ProtocolError` for an
        endpoint refused; the channel is then closed."""
        deadline = time.monotonic() + timeout
        if not self._start_lock.acquire(timeout=max(0.0, timeout)):
            raise self._timeout("the endpoint event", timeout)
        try:
            stream = self._stream
            stream.check()
            if not stream.opened:
                self._refreshing(lambda: stream.open(max(0.0, deadline - time.monotonic())),
                                 deadline)
            if not stream.ready.wait(max(0.0, deadline - time.monotonic())):
                self.close()
                raise self._timeout("the endpoint event", timeout)
            stream.check()  # the stream ended, or the endpoint was refused
        except GatewayError:
            self.close()
            raise
        finally:
            self._start_lock.release()

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        """The result of ``method``; :class:`RPCError` for an error answer, the stream's end
        or the POST's failure as their typed errors, :class:`DeadlineExceeded` (after posting
        ``notifications/cancelled``) when no answer came within ``timeout`` seconds;
        :class:`CallCancelled` (after posting it too) when the call's token was cancelled."""
        started = time.monotonic()
        if self._stream.endpoint is None:
            self.start(timeout)
        request_id = next(self._ids)
        body = jsonrpc.encode_request(request_id, method, params)
        waiter = self._stream.expect(request_id)
        token = current_cancellation() if method == "tools/call" else None
        cancelled = cancelled_error(self.name, method, token)
        try:
            try:
                with cancels(token, lambda: self._stream.abandon(request_id, cancelled)):
                    self._post(body, timeout - (time.monotonic() - started), method)
                    answered = waiter.latch.acquire(
                        timeout=max(0.0, timeout - (time.monotonic() - started)))
                cut = None if answered else self._timeout(method, timeout)
            except TransportTimeout as exc:
                cut = exc
            if waiter.error is cancelled and token is not None:  # the call's token fired
                self._cancel(request_id, sent_reason(cancelled, token))
            elif cut is not None:
                self._cancel(request_id, "timeout")
                raise DeadlineExceeded(cut.message, timeout=timeout, last_error=cut,
                                       server=self.name) from None
        finally:
            self._stream.forget(request_id)
        if waiter.error is not None:
            raise waiter.error
        if method == "initialize" and isinstance(waiter.result, Mapping):
            version = waiter.result.get("protocolVersion")
            self.protocol_version = version if isinstance(version, str) else None
        return waiter.result

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = SHORT_TIMEOUT) -> None:
        started = time.monotonic()
        if self._stream.endpoint is None:
            self.start(timeout)
        self._post(jsonrpc.encode_notification(method, params),
                   timeout - (time.monotonic() - started), method)

    def respond(self, request_id: str | int, result: Any) -> None:
        self._post(jsonrpc.encode_response(request_id, result), SHORT_TIMEOUT, "a response")

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        self._post(jsonrpc.encode_error(request_id, code, message), SHORT_TIMEOUT, "a response")

    def close(self) -> None:
        """Fail pending requests, stop the reader, release the connections. Idempotent; never
        raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stream.fail_all(ClientClosedError(f"the session with {self.name!r} is closed",
                                                server=self.name))
        self._stream.stop()
        close_session(self._post_session)
        close_session(self._stream_session)

    # -- inside ----------------------------------------------------------------------------

    def _dispatch(self, message: Unasked) -> None:
        """A request or notification of the server (on the reader thread)."""
        try:
            if isinstance(message, jsonrpc.Notification):
                if self._on_notification is not None:
                    self._on_notification(message)
            elif self._on_request is not None:
                self._on_request(message)
            else:
                self.respond_error(message.id, jsonrpc.METHOD_NOT_FOUND, "method not found")
        except GatewayError as exc:
            log.debug("%s: could not answer %s: %s", self.name, message.method, exc)
        except Exception:  # a callback's bug must not end the stream
            log.exception("%s: a callback for %s failed", self.name, message.method)

    def _refreshing(self, attempt: Callable[[], None], deadline: float) -> None:
        """``attempt()``, and once more after ``auth.refresh()`` if it is answered 401 (the
        server ran nothing) and the auth object has a ``refresh``."""
        seen = self._recovery.credentials.generation
        try:
            attempt()
        except AuthenticationError:
            if not self._recovery.refresh(seen, deadline):
                raise
            attempt()

    def _post(self, body: bytes, timeout: float, what: str) -> None:
        """POST one message to the endpoint (refreshing the credentials once on a 401); the
        server must take it (202, 200)."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._refreshing(lambda: self._post_once(body, deadline - time.monotonic(), what),
                         deadline)

    def _post_once(self, body: bytes, timeout: float, what: str) -> None:
        self._stream.check()
        endpoint = self._stream.endpoint
        if endpoint is None:
            raise ProtocolError(f"the HTTP+SSE session with {self.name!r} is not started",
                                server=self.name)
        # The endpoint's session id is the session's key: errors show the stream's URL.
        where: dict[str, Any] = {"method": "POST", "url": self.url, "server": self.name}
        headers = with_call_headers(dict(self._headers, **{"Content-Type": "application/json"}),
                                    what)
        timeout = max(0.0, timeout)
        deadline = time.monotonic() + timeout
        with guarded(deadline) as exchange:
            try:
                response = self._post_session.post(
                    endpoint, data=body, headers=headers, auth=self._auth, stream=True,
                    timeout=(min(timeout, CONNECT_TIMEOUT), timeout), allow_redirects=False)
            except requests.RequestException as exc:
                error = translate(exc, peer=f"MCP server {self.name!r}", **where)
                raise self._timeout(what, timeout) if timed_out(exchange, error, deadline) \
                    else error from exc
            try:
                # Read to the end (a few bytes) so the connection goes back to the pool.
                raw = response.raw.read(ANSWER_BYTES, decode_content=True) or b""
                if response.status_code not in ACCEPTED:
                    raise refused(response.status_code, raw, response.headers, where,
                                  f"the POST of {what}")
            except READ_FAILURES as exc:
                if exchange.cut:
                    raise self._timeout(what, timeout) from None
                raise mark_sent(ProtocolError(f"{self.name!r}: the answer to the POST of "
                                              f"{what} broke off: {type(exc).__name__}",
                                              **where)) from exc
            finally:
                response.close()

    def _cancel(self, request_id: int, reason: str) -> None:
        try:
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason},
                        timeout=CANCEL_TIMEOUT)
        except GatewayError as exc:
            log.debug("%s: could not send the cancellation: %s", self.name, exc)

    def _timeout(self, what: str, timeout: float) -> TransportTimeout:
        return TransportTimeout(f"MCP server {self.name!r} did not answer {what} within "
                                f"{timeout:.3g}s", server=self.name)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self.endpoint else "not started"
        return f"<LegacySSEChannel {self.name!r} {self.url} {state}>"
