"""MCP Streamable HTTP, client side: a blocking message channel to a remote MCP server.

:class:`StreamableHTTPChannel` implements the seam's ``MessageChannel`` over the transport of
MCP revisions 2025-03-26 to 2025-11-25 (facts: ``docs/dev/MCP_HTTP_FACTS.md``):

- one POST per JSON-RPC message (never a batch) with ``Accept: application/json,
  text/event-stream``; a request's answer is a JSON body or an SSE stream on which the server
  may send notifications and its own requests before the response; a notification or a
  response is answered 202;
- ``Mcp-Session-Id`` is taken from the ``initialize`` answer (only from a successful one) and
  sent on every later request, ``MCP-Protocol-Version`` once the version is negotiated;
  ``close()`` DELETEs the session (405: the server keeps none);
- every exchange is bounded by the request's timeout, however slowly the server trickles
  (the deadline watchdog of :mod:`._guarded`), and a timeout sends ``notifications/cancelled``.

Work in progress (issue 13): no listening GET stream, no resumption, no re-initialize on 404,
no 2026-07-28, no HTTP+SSE fallback yet.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import requests

from .._exceptions import (
    ClientClosedError,
    GatewayError,
    ProtocolError,
    RPCError,
    TransportTimeout,
)
from ..wire import DEFAULT_MAX_EVENT_BYTES, EventReader, SSEFramer, jsonrpc
from ._common import READ_FAILURES, close_session, error_from_answer, new_session, translate
from ._guarded import GuardedAdapter, guarded

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
    is its own POST. ``headers`` go on every request (credentials: never logged)."""

    def __init__(
        self, url: str, *, name: str, user_agent: str, headers: Mapping[str, str] | None = None,
        verify: bool | str | None = None,
        on_request: Callable[[jsonrpc.Request], None] | None = None,
        on_notification: Callable[[jsonrpc.Notification], None] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.url = url
        self.name = name
        self._headers = dict(headers or {})
        self._on_request = on_request
        self._on_notification = on_notification
        self._max_event_bytes = max_event_bytes
        self._session = new_session(url, user_agent, verify, GuardedAdapter(
            pool_connections=1, pool_maxsize=32), accept=ACCEPT)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._closed = False

    # -- MessageChannel ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed

    def start(self) -> None:
        """Nothing to start: the first POST (``initialize``) opens the session."""

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        request_id = next(self._ids)
        body = jsonrpc.encode_request(request_id, method, params)
        try:
            result = self._post(body, timeout, request_id=request_id, method=method)
        except TransportTimeout:
            self._cancel(request_id, "timeout")
            raise
        if method == "initialize" and isinstance(result, Mapping):
            version = result.get("protocolVersion")
            self.protocol_version = version if isinstance(version, str) else None
        return result

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = SHORT_TIMEOUT) -> None:
        self._post(jsonrpc.encode_notification(method, params), timeout)

    def respond(self, request_id: str | int, result: Any) -> None:
        self._post(jsonrpc.encode_response(request_id, result), SHORT_TIMEOUT)

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        self._post(jsonrpc.encode_error(request_id, code, message), SHORT_TIMEOUT)

    def close(self) -> None:
        """DELETE the session (a server that keeps none answers 405), then release the
        connections. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.session_id is not None:
            try:
                with guarded(time.monotonic() + SHORT_TIMEOUT):
                    self._session.delete(self.url, headers=self._send_headers(),
                                         timeout=SHORT_TIMEOUT, allow_redirects=False).close()
            except (requests.RequestException, OSError) as exc:
                log.debug("%s: DELETE of the session failed: %s", self.name, type(exc).__name__)
        close_session(self._session)

    # -- one POST ----------------------------------------------------------------------------

    def _send_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        headers["Content-Type"] = "application/json"
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def _post(self, body: bytes, timeout: float, *, request_id: int | None = None,
              method: str = "") -> Any:
        """POST one message; for a request, its result (an error answer raises RPCError)."""
        if self._closed:
            raise ClientClosedError(f"the session with {self.name!r} is closed")
        where: dict[str, Any] = {"method": "POST", "url": self.url, "server": self.name}
        with guarded(time.monotonic() + timeout) as exchange:
            try:
                response = self._session.post(
                    self.url, data=body, headers=self._send_headers(), stream=True,
                    timeout=(min(timeout, 10.0), timeout), allow_redirects=False)
            except requests.RequestException as exc:
                raise self._timeout(method, timeout) if exchange.cut else \
                    translate(exc, **where) from exc
            try:
                return self._answer(response, request_id, method, where)
            except GatewayError:
                if exchange.cut:
                    raise self._timeout(method, timeout) from None
                raise
            except _BROKEN as exc:
                if exchange.cut:
                    raise self._timeout(method, timeout) from None
                raise ProtocolError(f"{self.name!r}: the answer to {method or 'a message'} "
                                    f"broke off: {type(exc).__name__}", **where) from exc
            finally:
                response.close()

    def _timeout(self, method: str, timeout: float) -> TransportTimeout:
        return TransportTimeout(f"MCP server {self.name!r} did not answer {method or 'a message'} "
                                f"within {timeout:.3g}s", server=self.name)

    def _answer(self, response: requests.Response, request_id: int | None, method: str,
                where: dict[str, Any]) -> Any:
        status = response.status_code
        if request_id is None:  # a notification or a response: 202, nothing to read
            if status not in (200, 202):
                raise error_from_answer(status, response.raw.read(4096) or b"",
                                        response.headers, dict(where, status_code=status))
            return None
        if status != 200:
            raise error_from_answer(status, response.raw.read(64 * 1024) or b"",
                                    response.headers, dict(where, status_code=status))
        if method == "initialize":
            session_id = response.headers.get("Mcp-Session-Id")
            if session_id:
                self.session_id = session_id
        mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if mime == "application/json":
            raw = response.raw.read(self._max_event_bytes + 1, decode_content=True)
            if len(raw) > self._max_event_bytes:
                raise ProtocolError(f"{self.name!r} answered {method} with more than "
                                    f"{self._max_event_bytes} bytes", **where)
            return self._settle(jsonrpc.parse_line(raw), request_id, where)
        if mime == "text/event-stream":
            for message in self._stream(response):
                if isinstance(message, (jsonrpc.Response, jsonrpc.ErrorResponse)) \
                        and message.id == request_id:
                    return self._settle(message, request_id, where)
                self._dispatch(message)
            raise ProtocolError(f"{self.name!r} ended the response stream of {method} without "
                                "its answer", **where)
        raise ProtocolError(f"{self.name!r} answered {method} with Content-Type "
                            f"{mime[:80] or 'none'!r}", **where)

    def _stream(self, response: requests.Response) -> Iterator[jsonrpc.Message]:
        """The JSON-RPC messages of an SSE response, as they arrive (priming events, with no
        data, are skipped)."""
        framer = SSEFramer(self._max_event_bytes)
        fields = EventReader()
        raw = response.raw
        while True:
            chunk = raw.read1(READ_CHUNK, decode_content=True)
            if not chunk:
                return
            for block in framer.feed(chunk):
                event = fields.read(block)
                if event is None or event.type != "message":
                    continue
                data = event.data if isinstance(event.data, str) else json.dumps(event.data)
                try:
                    yield jsonrpc.parse_line(data)
                except jsonrpc.FramingError as exc:
                    log.warning("%s sent a malformed message: %s", self.name, exc)

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

    def _cancel(self, request_id: int, reason: str) -> None:
        try:
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason},
                        timeout=1.0)
        except GatewayError as exc:
            log.debug("%s: could not send the cancellation: %s", self.name, exc)

    def __repr__(self) -> str:
        return f"<StreamableHTTPChannel {self.name!r} session={'yes' if self.session_id else 'no'}>"
