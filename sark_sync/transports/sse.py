"""The SSE transport: the gateway's event stream, reconnected until the caller stops it.

:class:`EventStream` reads ``GET /api/v1/events`` over its own ``requests.Session`` (a stream
holds its connection for hours; it must not take a slot of the pool that tool calls share).
:mod:`sark_sync.wire` frames and reads the events; reconnection is done here:

- **Short reads.** The body is read with ``read1``: whatever has arrived, at once. A
  fixed-size read (``iter_content(n)``) waits for n bytes, and with no size a body ended by
  closing the connection waits for the end: measured, 20 ms to 1.1 s of delay per event.
- **Resume.** After a drop, an idle timeout (no byte, not even a ``: ping``, for
  ``idle_timeout`` seconds) or a retryable status (the policy's: 408, 429, 502-504 by
  default), the stream reconnects with ``Last-Event-ID``; a ``stream_reset`` event says the
  gateway could not replay what was missed.
- **Backoff.** The package's one retry loop (:class:`~sark_sync.resilience.Retrying`) and
  rule: full jitter below ``min(cap, base * multiplier**failures)``, with ``base`` the
  server's ``retry:`` (at most 60 s, so a gateway cannot park a client for hours) else the
  policy's ``backoff_base``, and ``cap`` the larger of ``backoff_max`` and ``base``. A 429 or
  503 ``Retry-After`` is waited (up to ``retry_after_max``; longer fails fast with it).
- **Giving up.** After ``max_reconnects`` consecutive failed attempts; an attempt fails unless
  an event arrives on its connection (a bare connect that then drops counts as a failure, so a
  gateway that accepts and immediately closes cannot keep a client looping forever).
- **Hostile fields.** ``id``, ``retry`` and ``data`` are read as the HTML standard says
  (:class:`~sark_sync.wire.EventReader`); no field value raises; ``Last-Event-ID`` carries
  only what a header can. Nothing but a :class:`GatewayError` comes out of the iterator.
- **Fatal answers.** 3xx (credentials are never sent elsewhere), 4xx other than 408/429,
  and 5xx the policy does not retry end the stream with their typed error.

Each stream has its own last id, retry and failure count: streams never share state. One
thread iterates a stream; :meth:`EventStream.close` may come from any thread and wakes a read
in progress by shutting the socket down (never closing it under the reader).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from http.client import HTTPException
from typing import Any

import requests
import urllib3.exceptions

from .._config import RetryPolicy
from .._exceptions import (
    APIError,
    ClientClosedError,
    ConnectionFailed,
    GatewayError,
    ProtocolError,
    TransportTimeout,
)
from .._models import Event
from .._redact import Secret
from ..resilience import Retrying, mark_sent, retryable
from ..wire import DEFAULT_MAX_EVENT_BYTES, EventReader, EventTooLarge, SSEFramer
from ._common import close_session, error_from_response, new_session, short_reads, translate
from ._guarded import GuardedAdapter, guarded_for

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_RECONNECTS", "EventStream"]

log = logging.getLogger("sark_sync.sse")

#: Seconds without a byte before a stream counts as stalled: three of the gateway's pings.
DEFAULT_IDLE_TIMEOUT = 45.0
#: Consecutive failed attempts after which a stream gives up.
DEFAULT_MAX_RECONNECTS = 10
#: Bytes asked for per read (a read returns what has arrived, often far less).
READ_CHUNK = 64 * 1024
#: Bytes of an error response read for its message.
ERROR_BODY_BYTES = 64 * 1024
#: How long close() waits for the iterating thread to let go of the connection.
CLOSE_WAIT = 2.0
#: The type of the event that says events were lost; never filtered out.
STREAM_RESET = "stream_reset"

#: What a read of a broken or stalled connection raises (timeouts are OSErrors).
_BROKEN = (OSError, HTTPException, urllib3.exceptions.HTTPError, requests.RequestException)


class _Closed(Exception):
    """Internal: the stream was closed during a wait between attempts."""


class EventStream(Iterator[Event]):
    """An iterator of :class:`~sark_sync.Event` from the gateway, reconnecting as needed.

    Made by :meth:`GatewayClient.stream_events`, which calls :meth:`connect` before returning
    (events from then on are not missed). A context manager; :meth:`close` ends iteration
    from any thread.
    """

    def __init__(
        self, base_url: str, *, api_key: Secret | None, user_token: Secret | None,
        user_agent: str, verify: bool | str | None, connect_timeout: float,
        types: tuple[str, ...] | None, last_event_id: str | None, idle_timeout: float,
        retry: RetryPolicy, max_reconnects: int, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        path: str = "/api/v1/events",
    ) -> None:
        self.url, self.types, self.reconnects = base_url + path, types, 0
        self._fields = EventReader(last_event_id)
        self._api_key, self._user_token = api_key, user_token
        self._timeout = (connect_timeout, idle_timeout)
        self._policy, self._max_reconnects = retry, max_reconnects
        self._max_event_bytes = max_event_bytes
        self._wanted = frozenset(types) if types else None
        self._session = new_session(base_url, user_agent, verify,
                                    GuardedAdapter(pool_connections=1, pool_maxsize=1),
                                    accept="text/event-stream")
        self._lock = threading.Lock()  # held by the iterating thread; close() waits for it
        self._reader: int | None = None  # the thread inside next(), if any
        self._closed = threading.Event()
        self._owner_pid = os.getpid()
        self._response: requests.Response | None = None
        self._blocks: Iterator[bytes] | None = None
        self._delivered = False  # an event arrived on the current connection
        self._connected_once = False
        # Counts consecutive failed attempts: one fails unless an event arrives on it.
        self._retrying = Retrying(retry, None, attempts=max_reconnects + 1,
                                  retryable=self._retryable, backoff=self._backoff,
                                  sleep=self._sleep)

    def connect(self) -> EventStream:
        """Open the first connection, retrying within the policy, so that nothing published
        from now on is missed; raise a fatal answer, or the last error when giving up (the
        stream is then closed)."""
        with self._lock:
            try:
                if self._blocks is None and not self._closed.is_set():
                    self._connect()
            except BaseException:
                self._closed.set()
                self._release(final=True)
                raise
        return self

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event that set one (``""`` after an empty ``id:``), as sent."""
        return self._fields.last_event_id

    @property
    def retry_ms(self) -> int | None:
        """The reconnection time the gateway set with ``retry:``, in ms (at most 60,000)."""
        return self._fields.retry_ms

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        if os.getpid() != self._owner_pid:
            raise ClientClosedError("this event stream belongs to the process that opened it; "
                                    "open a new one after fork()")
        with self._lock:
            self._reader = threading.get_ident()
            try:
                return self._next()
            except GatewayError:
                self._closed.set()  # given up, or a fatal answer: the stream is over
                self._release(final=True)
                raise
            finally:
                self._reader = None

    def _next(self) -> Event:
        while True:
            if self._closed.is_set():
                self._release(final=True)
                raise StopIteration
            if self._blocks is None:
                self._connect()
                continue
            try:
                block = next(self._blocks)
            except StopIteration:
                if not self._closed.is_set():
                    self._dropped(None)
                continue
            except EventTooLarge as exc:
                raise ProtocolError(f"the event stream sent {exc} (max_event_bytes)",
                                    url=self.url) from None
            except _BROKEN as exc:
                if not self._closed.is_set():
                    self._dropped(exc)
                continue
            event = self._fields.read(block)  # None for a block without data
            if event is None:
                continue
            if not self._delivered:  # the connection's first event: the failures end
                self._retrying.reset()
                self._delivered = True
            if self._wanted is None or event.type in self._wanted or event.type == STREAM_RESET:
                return event

    def _read_blocks(self, response: requests.Response) -> Iterator[bytes]:
        """The event blocks of one connection, from short reads."""
        read1 = short_reads(response.raw)
        framer = SSEFramer(self._max_event_bytes)
        while True:
            chunk = read1(READ_CHUNK)
            if not chunk:
                return
            yield from framer.feed(chunk)

    # -- connecting ------------------------------------------------------------------------

    def _connect(self) -> None:
        """Open a connection, retrying within the policy; return with ``_blocks`` set, or
        with the stream closed; raise a fatal error, or the last one when giving up."""
        retrying = self._retrying
        try:
            if self._connected_once and retrying.attempts == 0:
                self._sleep(self._backoff(0))  # the reconnection time, after a good connection
            self._connected_once = True
            response = retrying.call(self._open)
        except _Closed:
            return
        except GatewayError as error:
            self._gave_up(error)
            raise
        self._response = response
        self._blocks = self._read_blocks(response)
        self._delivered = False

    def _gave_up(self, error: GatewayError) -> None:
        if self._retrying.exhausted:
            error.message = (f"{error.message} (the event stream gave up after "
                             f"{self._retrying.attempts} consecutive failed attempts)")
            error.args = (error.message,)

    def _retryable(self, error: GatewayError) -> bool:
        if not retryable(error, idempotent=True, policy=self._policy):
            return False
        log.info("event stream %s: %s; reconnecting (attempt %d of %d)", self.url, error,
                 self._retrying.attempts + 1, self._max_reconnects + 1)
        return True

    def _open(self) -> requests.Response:
        """One attempt: the 200 response of an event stream, or raise the error the gateway
        answered (marked for the retry rule). Connecting, the response headers and an error
        body must all arrive within ``connect_timeout + idle_timeout``, however slowly the
        gateway sends them."""
        request_id = str(uuid.uuid4())
        headers: dict[str, str | bytes] = {
            "Cache-Control": "no-cache", "Accept-Encoding": "identity", "X-Request-ID": request_id}
        if self._api_key is not None:
            headers["X-API-Key"] = self._api_key.reveal()
        if self._user_token is not None:
            headers["Authorization"] = "Bearer " + self._user_token.reveal()
        if self._fields.resume is not None:
            headers["Last-Event-ID"] = self._fields.resume  # UTF-8, as browsers send it
        params = {"types": ",".join(self.types)} if self.types else None
        where: dict[str, Any] = {"url": self.url, "method": "GET",
                                 "request_id": request_id}
        budget = self._timeout[0] + self._timeout[1]
        with guarded_for(budget) as exchange:
            try:
                response = self._session.get(self.url, params=params, headers=headers,
                                             stream=True, timeout=self._timeout,
                                             allow_redirects=False)
            except requests.RequestException as exc:
                if exchange.cut:
                    raise TransportTimeout(
                        f"the gateway did not answer the event stream's request within "
                        f"{budget:g}s (connect_timeout + idle_timeout)", **where) from exc
                raise translate(exc, **where) from exc
            if exchange.cut:  # headers read after the cut may be truncated ones
                response.close()
                raise TransportTimeout(
                    f"the gateway did not answer the event stream's request within "
                    f"{budget:g}s (connect_timeout + idle_timeout)", **where)
            if response.status_code != 200:
                error = self._error(response)
                if exchange.cut:
                    raise TransportTimeout(
                        f"the gateway did not send the event stream's error answer within "
                        f"{budget:g}s (connect_timeout + idle_timeout)", **where) from error
                raise error
            mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if mime != "text/event-stream":
                response.close()  # fatal, as a 4xx: reconnecting would not change it
                shown = mime if len(mime) <= 80 else mime[:80] + "..."  # a hostile 64 KiB
                raise mark_sent(ProtocolError(f"expected an event stream, got Content-Type "
                                              f"{shown or 'none'!r}", status_code=200, **where),
                                retryable=False)
            return response

    def _error(self, response: requests.Response) -> GatewayError:
        """The error of a non-200 answer, its body read for the gateway's envelope."""
        where: dict[str, Any] = {"method": "GET", "url": self.url,
                                 "request_id": response.request.headers.get("X-Request-ID")}
        try:
            raw = response.raw.read(ERROR_BODY_BYTES, decode_content=True) or b""
        except _BROKEN:
            raw = b""
        finally:
            response.close()
        if 300 <= response.status_code < 400:
            return APIError(f"gateway answered {response.status_code} redirecting the event "
                            "stream; sark_sync does not follow redirects: configure the final "
                            "URL", status_code=response.status_code, **where)
        return error_from_response(response, raw, where)

    def _dropped(self, cause: BaseException | None) -> None:
        """The connection ended: count it as a failure unless it delivered an event."""
        self._release()
        self.reconnects += 1
        if self._delivered:
            log.info("event stream %s dropped after id %s; resuming", self.url,
                     self.last_event_id)
            return
        how = f" ({type(cause).__name__})" if cause is not None else ""
        error = ConnectionFailed(f"the event stream ended before any event arrived{how}",
                                 url=self.url)
        if cause is not None:
            error.__cause__ = cause
        try:
            self._retrying.failed(error)  # waits before the next attempt, or gives up
        except _Closed:
            return
        except GatewayError as final:
            self._gave_up(final)
            raise

    def _backoff(self, failures: int) -> float:
        """Full jitter below ``base * multiplier**failures`` (capped), with ``base`` the
        server's ``retry:`` when it sent one."""
        policy = self._policy
        retry_ms = self._fields.retry_ms  # at most MAX_RETRY_MS
        base = retry_ms / 1000.0 if retry_ms is not None else policy.backoff_base
        cap = max(policy.backoff_max, base)
        try:
            ceiling = min(cap, base * policy.backoff_multiplier ** max(0, failures))
        except OverflowError:  # thousands of failures in a row (max_reconnects is unbounded)
            ceiling = cap if base > 0 else 0.0
        return policy.jittered(ceiling)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` unless closed first (then :class:`_Closed` ends the attempts)."""
        if seconds > 0:
            log.debug("event stream %s: reconnecting in %.3fs", self.url, seconds)
            self._closed.wait(seconds)
        if self._closed.is_set():
            raise _Closed

    # -- closing ---------------------------------------------------------------------------

    def _release(self, final: bool = False) -> None:
        response, self._response, self._blocks = self._response, None, None
        if response is not None:
            response.close()
        if final:
            close_session(self._session)

    def close(self) -> None:
        """End the stream and release its connection; iteration in another thread stops
        promptly. Idempotent. In a forked child it only forgets the parent's connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        if os.getpid() != self._owner_pid:
            self._response = None
            self._blocks = None
            return
        response = self._response
        if response is not None:
            try:
                response.raw.shutdown()  # wakes a read in progress; the reader closes
            except (AttributeError, ValueError, RuntimeError, OSError):
                pass
        if self._reader == threading.get_ident():
            return  # called inside next() (a signal handler): next() releases on its way out
        if self._lock.acquire(timeout=CLOSE_WAIT):
            try:
                self._release(final=True)
            finally:
                self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<EventStream {self.url} last_event_id={self.last_event_id!r} {state}>"
