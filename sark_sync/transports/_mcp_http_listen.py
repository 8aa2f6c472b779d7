"""The listening stream of MCP Streamable HTTP: the one GET a session keeps open for what
the server sends unasked (facts: ``docs/dev/MCP_HTTP_FACTS.md`` §2), and :class:`EventStreams`,
a channel's event streams (this one and its response streams, :mod:`._mcp_http_stream`).

A :class:`Listener` reads with the response streams' rules (priming events skipped, ids
remembered, replays dropped) and sends each notification and request to the channel's
callbacks (list changes, requests not tied to a call). At most one per session, on its own
thread (``sark-sync-mcp-<server>-listener``), opened once the session is initialized and only
with a session id: 405 means the server offers none and 409 that one is open already (both end
it for good, as does any 4xx: a lost session gets a new listener with its new session); a drop
reconnects with ``Last-Event-ID`` after the server's ``retry:`` or :data:`LISTEN_BACKOFF`,
doubled for each connection in a row that failed or brought nothing (:func:`listen_delay`),
and :data:`MAX_LISTEN_FAILURES` failed connections in a row end it. :meth:`Listener.stop`
cuts its connection (the watchdog's cut, see :mod:`._guarded`) and joins the thread; the
channel's :meth:`EventStreams.close` does so before its connections are released, and a
channel dropped unclosed stops it when collected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Callable

from ..wire import jsonrpc
from ._guarded import Exchange, guarded
from ._mcp_http_stream import (
    BREAKS,
    Dispatch,
    OpenGet,
    ResponseStreams,
    StreamState,
    is_event_stream,
    read_messages,
)

__all__ = ["EventStreams", "Listener", "listen_delay"]

log = logging.getLogger("sark_sync.mcp")

#: Seconds before the listening stream reconnects (no ``retry:``), see listen_delay().
LISTEN_BACKOFF = 0.5
LISTEN_BACKOFF_CAP = 30.0
#: Failed connections in a row after which the listening stream gives up (a dead server).
MAX_LISTEN_FAILURES = 5
#: Seconds one listening connection may stay open: the watchdog's cut is how stop() ends it,
#: so it needs an instant; past it the stream reconnects with ``Last-Event-ID``.
LISTEN_HORIZON = 3600.0
#: Seconds stop() waits for the listening thread once its connection is cut.
LISTEN_JOIN_TIMEOUT = 5.0
#: What ends one listening connection: a break, or an oversize event (EventTooLarge).
_LISTEN_BREAKS: tuple[type[Exception], ...] = (*BREAKS, ValueError)


class EventStreams:
    """A channel's event streams: its response streams, read to their answer and resumed
    (:meth:`answer`, :class:`~._mcp_http_stream.ResponseStreams`), and its listening stream
    (:meth:`listen`). It holds no strong reference to the channel: each answer gets its
    ``open_get`` and ``dispatch``, the listener weak references to them."""

    def __init__(self, name: str, max_event_bytes: int,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.name = name
        self._max_event_bytes = max_event_bytes
        self.responses = ResponseStreams(name, max_event_bytes, sleep)
        #: The answer to a request from its response stream (ResponseStreams.answer).
        self.answer = self.responses.answer
        self._closed = False
        self._lock = threading.Lock()
        self.listener: Listener | None = None

    def listen(self, owner: object, session_id: str, open_get: OpenGet,
               dispatch: Dispatch) -> None:
        """Open the listening stream of session ``session_id`` unless it is open already (a
        new session's replaces the old one's); ``open_get`` and ``dispatch`` are methods of
        ``owner`` (the channel), referenced weakly."""
        with self._lock:
            old = self.listener
            if self._closed or (old is not None and old.alive and old.session_id == session_id):
                return
            listener = self.listener = Listener(
                self.name, session_id, self._max_event_bytes, weakref.WeakMethod(open_get),
                weakref.WeakMethod(dispatch))
        if old is not None:
            old.stop()
        listener.start()
        # A channel dropped unclosed: end the thread (never join it from the collector).
        weakref.finalize(owner, listener.stop, False)

    def close(self) -> None:
        """Wake and fail every resumption waiting for its delay; stop the listening stream
        and join its thread. Idempotent."""
        self.responses.close()
        with self._lock:
            self._closed = True
            listener = self.listener
        if listener is not None:
            listener.stop()


def listen_delay(retry_ms: int | None, streak: int) -> float:
    """Seconds before the listening stream reconnects: the server's ``retry:`` (else
    :data:`LISTEN_BACKOFF`), doubled for each of the ``streak`` connections in a row that failed
    or brought nothing but the first, at most :data:`LISTEN_BACKOFF_CAP`."""
    base = LISTEN_BACKOFF if retry_ms is None else retry_ms / 1000.0
    return float(min(base * 2 ** max(streak - 1, 0), LISTEN_BACKOFF_CAP))


class Listener:
    """The session's listening GET stream on its own thread (see the module). ``dispatch``
    gets each notification and request the server sends on it (responses are dropped).

    ``open_get`` and ``dispatch`` are weak references to the channel's methods (called, they
    give the method or None): the thread never keeps a dropped channel alive, and ends once
    the channel is gone. A forked child never touches its parent's listener (its connection
    is the parent's too): :meth:`stop` does nothing there."""

    def __init__(self, name: str, session_id: str, max_event_bytes: int,
                 open_get: Callable[[], OpenGet | None],
                 dispatch: Callable[[], Dispatch | None]) -> None:
        self.name = name
        #: The session the stream belongs to: a new session needs a new listener.
        self.session_id = session_id
        self._max_event_bytes = max_event_bytes
        self._open_get = open_get
        self._dispatch = dispatch
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._exchange: Exchange | None = None
        self._pid = os.getpid()
        self._fresh = False  # the current connection delivered a message
        self._thread = threading.Thread(target=self._run, name=f"sark-sync-mcp-{name}-listener",
                                        daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, join: bool = True) -> None:
        """Cut the stream and join the thread (unless ``join`` is False or this is the thread
        itself: a callback that closes the session)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._stopping.set()
            if self._exchange is not None:
                self._exchange.expire()
        if join and self._thread.ident is not None \
                and threading.current_thread() is not self._thread:
            self._thread.join(LISTEN_JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("%s: the listening stream's thread did not end", self.name)

    def _run(self) -> None:
        # failures: connections that failed in a row (they end it); streak: connections in a
        # row that brought nothing, failed or not (they slow it down).
        state, failures, streak = StreamState(), 0, 0
        while not self._stopping.is_set():
            last, self._fresh = state.reader.last_event_id, False
            outcome = self._listen_once(state)
            if outcome == "final":
                return
            failures = 0 if outcome == "dropped" else failures + 1
            if failures >= MAX_LISTEN_FAILURES:
                log.info("%s: giving up the listening stream after %d failed connections",
                         self.name, failures)
                return
            new = self._fresh or state.reader.last_event_id != last
            streak = 0 if new and outcome == "dropped" else streak + 1
            if self._stopping.wait(listen_delay(state.reader.retry_ms, streak)):
                return

    def _listen_once(self, state: StreamState) -> str:
        """One connection: ``"final"`` (stop for good), ``"dropped"`` or ``"failed"``."""
        with guarded(time.monotonic() + LISTEN_HORIZON) as exchange:
            with self._lock:
                if self._stopping.is_set():
                    return "final"
                self._exchange = exchange
            try:
                return self._read(state)
            finally:
                with self._lock:
                    self._exchange = None

    def _read(self, state: StreamState) -> str:
        open_get = self._open_get()
        if open_get is None:
            return "final"  # the channel is gone
        try:
            response = open_get(state.reader.resume, None)
        except BREAKS as exc:
            log.debug("%s: the listening stream failed: %s", self.name, type(exc).__name__)
            return "failed"
        try:
            if not is_event_stream(response):
                status = response.status_code
                # 405: no such stream here; 409: one is open already; other 4xx: not ours.
                log.debug("%s: no listening stream (%s)", self.name, status)
                return "final" if 400 <= status < 500 else "failed"
            del open_get
            for message in read_messages(response.raw, state, self._max_event_bytes, self.name):
                dispatch = self._dispatch()
                if dispatch is None:
                    return "final"
                self._fresh = True
                if isinstance(message, (jsonrpc.Notification, jsonrpc.Request)):
                    dispatch(message)
                else:
                    log.debug("%s: dropped a response on the listening stream", self.name)
                del dispatch  # no strong reference to the channel while the stream is idle
            return "dropped"
        except _LISTEN_BREAKS as exc:
            log.debug("%s: the listening stream broke off: %s", self.name, type(exc).__name__)
            return "dropped"
        finally:
            response.close()
