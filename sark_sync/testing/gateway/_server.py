"""The threaded HTTP server under the LocalGateway, with every connection accounted for.

``ThreadingHTTPServer`` with daemon threads forgets its threads, and ``server_close()`` never
touches an idle keep-alive connection, whose handler thread stays blocked in ``recv``. This
subclass instead registers each accepted socket with the thread that serves it, so that
:meth:`GatewayHTTPServer.close_connections` can ``shutdown()`` every socket (which wakes a
blocked ``recv`` with end-of-file, unlike ``close()`` from another thread) and
:meth:`GatewayHTTPServer.join_workers` can join every thread within a deadline.

Each accepted socket gets ``TCP_NODELAY``. Errors of a connection are logged at DEBUG to
``sark_sync.testing``, never printed to stderr.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
import socketserver
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, cast

from ._handler import GatewayHandler, HandlerContext

__all__ = ["GatewayHTTPServer", "loopback"]

logger = logging.getLogger("sark_sync.testing")


def loopback(host: str) -> tuple[str, int]:
    """Return the address to bind and its family; refuse anything that is not loopback."""
    if host == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(f"LocalGateway binds loopback addresses only, not {host!r}")
    return str(address), socket.AF_INET6 if address.version == 6 else socket.AF_INET


class GatewayHTTPServer(ThreadingHTTPServer):
    """Serves :class:`GatewayHandler` on one loopback address; see the module docstring."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], family: int, context: HandlerContext) -> None:
        self.address_family = family
        self.context = context
        self._lock = threading.Lock()
        self._workers: dict[socket.socket, threading.Thread] = {}
        self._ids = itertools.count(1)
        self.connections_accepted = 0
        self.max_open_connections = 0
        super().__init__(address, GatewayHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host with getfqdn(), a DNS lookup we never need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        sock = cast(socket.socket, request)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not fatal: responses are written in one piece anyway
            logger.debug("could not set TCP_NODELAY", exc_info=True)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(sock, client_address),
            name=f"sark-local-gateway-conn-{next(self._ids)}",
            daemon=True,
        )
        with self._lock:
            self._workers[sock] = thread
            self.connections_accepted += 1
            self.max_open_connections = max(self.max_open_connections, len(self._workers))
        try:
            thread.start()
        except RuntimeError:
            with self._lock:
                del self._workers[sock]
            raise

    def _serve_connection(self, sock: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(sock, client_address)
        except Exception:
            self.handle_error(sock, client_address)
        finally:
            self.shutdown_request(sock)
            with self._lock:
                self._workers.pop(sock, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open connection; their handler threads then see end-of-file."""
        with self._lock:
            sockets = list(self._workers)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its own thread

    def serve_in_thread(self, poll_interval: float) -> threading.Thread:
        """Start accepting in a daemon thread, checking for shutdown every
        ``poll_interval`` seconds; return the thread."""
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name="sark-local-gateway-accept",
            daemon=True,
        )
        thread.start()
        return thread

    def stop_serving(
        self, accept_thread: threading.Thread, deadline: float
    ) -> list[threading.Thread]:
        """Stop accepting, close the listening socket and every connection, and join all
        threads until ``deadline`` (monotonic); return those still alive."""
        if accept_thread.is_alive():
            self.shutdown()
        self.server_close()
        self.close_connections()
        stuck = self.join_workers(max(0.0, deadline - time.monotonic()))
        accept_thread.join(max(0.0, deadline - time.monotonic()))
        return [*stuck, accept_thread] if accept_thread.is_alive() else stuck

    def join_workers(self, timeout: float) -> list[threading.Thread]:
        """Join every connection thread within ``timeout`` seconds; return those still alive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._workers.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread in threads if thread.is_alive()]
