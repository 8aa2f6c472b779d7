"""HTTP exchanges with a hard end: the adapter every session of the package mounts.

urllib3's timeouts bound each socket operation, so a peer that trickles its status line,
headers, interim ``100 Continue`` responses, chunk sizes or TLS handshake keeps an exchange
alive as long as it likes. :func:`guarded` bounds the whole exchange instead:

    with guarded(deadline_instant) as exchange:
        response = session.request(...)   # connect, send, headers
        ...read the body...
    if exchange.cut: ...the time ran out...

While the block runs, every connection the session uses (new or taken from the pool) and every
raw socket it opens registers with the exchange; when the instant passes, the process-wide
:mod:`~sark_sync._watchdog` shuts them down (``SHUT_RDWR``, on the plain socket even under TLS)
and the blocked read fails at once. Shutting down rather than closing keeps the descriptor
owned by urllib3, so a reused fd number can never be read by mistake; a connection closed
during the cut waits for it (``close`` takes the exchange's lock). A connection cut this way is
dead: urllib3 sees the shutdown socket as dropped when the pool offers it again.

Outside a ``guarded`` block (a session used directly) the classes behave as urllib3's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager, ProxyManager

from .._exceptions import TransportTimeout
from ..resilience import watchdog

__all__ = ["Exchange", "GuardedAdapter", "guarded", "guarded_for", "timed_out", "was_cut"]


class Exchange:
    """The connections and sockets of one bounded HTTP exchange.

    ``cut`` is True once the watchdog shut them down; ``finished`` once the block ended.
    """

    __slots__ = ("_connections", "_lock", "_sockets", "cut", "finished")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []
        self.cut = False
        self.finished = False

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            if self.cut:
                _shutdown(connection.sock)
            self._connections.append(connection)

    def attach_socket(self, sock: socket.socket) -> None:
        """A socket not yet on its connection (TLS handshakes run on a local variable)."""
        with self._lock:
            if self.cut:
                _shutdown(sock)
            self._sockets.append(sock)

    def expire(self) -> None:
        """Shut down every socket of the exchange (the watchdog calls this)."""
        with self._lock:
            if self.finished or self.cut:
                return
            self.cut = True
            for connection in self._connections:
                _shutdown(connection.sock)
            for sock in self._sockets:
                _shutdown(sock)

    def tighten(self, at: float) -> None:
        """Cut the exchange at ``at`` (``time.monotonic()``) if that is earlier than planned."""
        if not self.finished:
            watchdog.watch(at, self)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._connections.clear()
            self._sockets.clear()

    @property
    def closing(self) -> threading.Lock:
        """The lock a connection holds while it closes, so no cut shuts down a freed fd."""
        return self._lock


_current: ContextVar[Exchange | None] = ContextVar("sark_sync_exchange", default=None)


@contextlib.contextmanager
def guarded(at: float) -> Iterator[Exchange]:
    """Run an exchange that must be over by ``at`` (``time.monotonic()``), see the module."""
    exchange = Exchange()
    token = _current.set(exchange)
    watchdog.watch(at, exchange)
    try:
        yield exchange
    finally:
        exchange.finish()
        _current.reset(token)


def was_cut() -> bool:
    """True inside a :func:`guarded` block whose exchange the watchdog cut: whatever error
    the cut caused (a reset, an EOF in the headers) is really a timeout."""
    exchange = _current.get()
    return exchange is not None and exchange.cut


def timed_out(exchange: Exchange, error: BaseException, deadline: float) -> bool:
    """Whether the exchange's deadline ended it: the watchdog cut it, or a socket timeout
    fired at the same moment (whichever of the two came first, the time ran out)."""
    return exchange.cut or (isinstance(error, TransportTimeout) and time.monotonic() >= deadline)


def guarded_for(seconds: float) -> contextlib.AbstractContextManager[Exchange]:
    """:func:`guarded` for an exchange that may take ``seconds`` from now."""
    return guarded(time.monotonic() + seconds)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        # socket.socket's own shutdown, also for an SSLSocket: its override tears down the TLS
        # object under a thread that may be reading through it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


class _GuardedMixin:
    """Registers the connection (and its fresh socket) with the current exchange."""

    _sark_exchange: Exchange | None = None
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        exchange = _current.get()
        if exchange is not None:
            exchange.attach_socket(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        exchange = _current.get()
        if exchange is not None:
            self._sark_exchange = exchange
            exchange.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]

    def connect(self) -> None:
        exchange = _current.get()
        if exchange is not None:
            self._sark_exchange = exchange
            exchange.attach(self)  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]

    def close(self) -> None:
        exchange = self._sark_exchange
        if exchange is None:
            super().close()  # type: ignore[misc]
            return
        with exchange.closing:
            super().close()  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOL_CLASSES = {"http": _GuardedHTTPConnectionPool, "https": _GuardedHTTPSConnectionPool}


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections take part in :func:`guarded` exchanges."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
        return manager
