"""A recording HTTP proxy on 127.0.0.1, placed in front of one server, for the tests.

``RecordingProxy(target_url)`` listens on 127.0.0.1 port 0 and forwards every request it
gets to the target's host and port, unchanged: the same method, path and query, headers (in
their order and spelling, ``Host`` included) and body. It sends the response back as it
arrives: the status line and headers unchanged, then the body piece by piece, each piece
written and flushed as soon as the upstream socket yields it, with ``TCP_NODELAY`` on both
sides, so an SSE stream reaches the client event by event, never buffered. A chunked body
stays chunked (the chunk boundaries may differ, the bytes do not); a response the upstream
cuts off mid-body is cut off the same way (no final chunk, the connection closed).

Every request is recorded as an :class:`Exchange` (method, path, headers, body, response
status and headers) once the response head has arrived, or once the upstream failed
before sending one (``status`` None, ``error`` says why; the client's connection is then
closed without a response, as the upstream's was). ``requests`` is a snapshot of those so
far, in the order the responses started; :meth:`RecordingProxy.wait_for` waits for a count
without sleeping.

Only the standard library: the tests import it on every Python that sark_sync supports.
Each client connection has its thread, each request its own upstream connection (opened and
closed with it). :meth:`RecordingProxy.close` shuts down every open socket, so that threads
blocked on a long stream end at once, and joins every thread. Use it as a context manager::

    with RecordingProxy("http://127.0.0.1:8000/mcp") as proxy:
        requests.post(proxy.url, ...)          # http://127.0.0.1:<proxy port>/mcp
        assert proxy.requests[0].header("mcp-protocol-version") == "2025-11-25"
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["Exchange", "RecordingProxy"]

#: Bound for connecting to the upstream server (it is on loopback: it answers at once).
CONNECT_TIMEOUT = 5.0
#: The most bytes read from upstream at a time; a read returns what has arrived, not more.
READ_SIZE = 65536
#: Bound for the proxy's threads to end in close(), once their sockets are shut down.
CLOSE_TIMEOUT = 5.0

def _find(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    name = name.lower()
    return next((value for key, value in headers if key.lower() == name), None)


@dataclass(frozen=True)
class Exchange:
    """One request the proxy forwarded, and the head of its response.

    ``headers`` and ``response_headers`` are ``(name, value)`` pairs as sent on the wire;
    :meth:`header` and :meth:`response_header` look one up case-insensitively. ``status`` is
    None when the upstream could not be reached or sent no valid response head (``error``
    says why).
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int | None
    response_headers: tuple[tuple[str, str], ...]
    error: str | None = None

    def header(self, name: str) -> str | None:
        """The first request header ``name`` (any case), or None."""
        return _find(self.headers, name)

    def response_header(self, name: str) -> str | None:
        """The first response header ``name`` (any case), or None."""
        return _find(self.response_headers, name)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the record is the log

    def _read_body(self) -> tuple[bytes, bytes]:
        """The request body as received and as it is sent on: a chunked body is decoded for
        the record and sent upstream as one chunk."""
        length = self.headers.get("Content-Length")
        if length is not None:
            body = self.rfile.read(int(length))
            return body, body
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return b"", b""
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        body = b"".join(parts)
        return body, (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")

    def _forward(self) -> None:
        proxy = self.server.proxy
        headers = tuple(self.headers.items())
        body, wire_body = self._read_body()
        upstream = http.client.HTTPConnection(proxy.target_host, proxy.target_port,
                                              timeout=CONNECT_TIMEOUT)
        try:
            try:
                upstream.connect()
                assert upstream.sock is not None
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.sock.settimeout(None)  # streams may stay silent: close() ends them
                proxy._track(upstream.sock)
                upstream.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                for name, value in headers:
                    upstream.putheader(name, value)
                upstream.endheaders(wire_body or None)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                # Mirror it: the client's connection closes without a response, as the
                # upstream's did (or as a refused connection would look through a proxy).
                proxy._record(Exchange(self.command, self.path, headers, body, None, (),
                                       f"{type(exc).__name__}: {exc}"))
                self.close_connection = True
                return
            response_headers = tuple(response.getheaders())
            proxy._record(Exchange(self.command, self.path, headers, body, response.status,
                                   response_headers))
            self._relay(response, response_headers)
        finally:
            if upstream.sock is not None:
                proxy._untrack(upstream.sock)
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse,
               headers: tuple[tuple[str, str], ...]) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        chunked = response.chunked
        if response.length is None and not chunked:
            self.close_connection = True  # the end of the body is the end of the connection
        try:
            while True:
                data = response.read1(READ_SIZE)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                self.wfile.flush()
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # cut off upstream, or by the client: cut here too
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_OPTIONS(self) -> None:
        self._forward()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins them
    block_on_close = True

    def __init__(self, proxy: RecordingProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client or upstream gone mid-exchange: nothing to report


class RecordingProxy:
    """A started recording proxy in front of ``target_url`` (an ``http://`` URL).

    ``url`` is ``target_url`` with the proxy's host and port (the same path and query).
    ``requests`` is a snapshot list of the :class:`Exchange` records so far. :meth:`close` (or
    leaving the ``with`` block) stops it and every thread it started; it is idempotent.
    """

    def __init__(self, target_url: str) -> None:
        target = urllib.parse.urlsplit(target_url)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"not an http:// URL: {target_url!r}")
        self.target_host = target.hostname
        self.target_port = target.port or 80
        self._lock = threading.Condition()
        self._exchanges: list[Exchange] = []
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = urllib.parse.urlunsplit(target._replace(netloc=f"127.0.0.1:{port}"))
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"recording-proxy-{port}")
        self._thread.start()

    @property
    def requests(self) -> list[Exchange]:
        """The requests recorded so far (a copy), in the order their responses started."""
        with self._lock:
            return list(self._exchanges)

    def wait_for(self, count: int, timeout: float) -> list[Exchange]:
        """Wait until ``count`` requests are recorded and return them all; raise
        ``TimeoutError`` after ``timeout`` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._exchanges) >= count, timeout):
                raise TimeoutError(f"{len(self._exchanges)} of {count} requests recorded "
                                   f"within {timeout:g}s")
            return list(self._exchanges)

    def close(self) -> None:
        """Stop listening, cut every open connection (both sides), join every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        self._server.shutdown()
        for sock in sockets:
            _shut(sock)
        self._server.server_close()  # joins the handler threads
        self._thread.join(CLOSE_TIMEOUT)

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)
            self._lock.notify_all()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            closed = self._closed
        if closed:
            _shut(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its peer or its thread

