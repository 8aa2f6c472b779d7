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

Shaping, for the tests of response streams: ``cut_after_events=N`` ends every SSE response
that ``only(exchange)`` selects (default: all) right after its N-th event with data (priming
events, with empty data, do not count), without the final chunk, closing both connections as
a network failure would; each cut is recorded in ``cuts`` (:class:`Cut`: the exchange, the
last ``id:`` relayed, when). ``trickle=seconds`` relays the body of every selected SSE
response one byte at a time, that long apart.

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
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Cut", "Exchange", "RecordingProxy"]

#: Bound for connecting to the upstream server (it is on loopback: it answers at once).
CONNECT_TIMEOUT = 5.0
#: The most bytes read from upstream at a time; a read returns what has arrived, not more.
READ_SIZE = 65536
#: Bound for the proxy's threads to end in close(), once their sockets are shut down.
CLOSE_TIMEOUT = 5.0
#: The end of an SSE event (a blank line), a data line with data, and an id line.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_DATA = re.compile(rb"(?m)^data: ?[^\r\n]")
_ID = re.compile(rb"(?m)^id: ?([^\r\n]*)")

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
    #: ``time.monotonic()`` when it was recorded.
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        """The first request header ``name`` (any case), or None."""
        return _find(self.headers, name)

    def response_header(self, name: str) -> str | None:
        """The first response header ``name`` (any case), or None."""
        return _find(self.response_headers, name)


@dataclass(frozen=True)
class Cut:
    """A response stream the proxy cut (``cut_after_events``): its exchange, the last event
    id it relayed (None: none had one), and ``time.monotonic()`` when it cut."""

    exchange: Exchange
    last_event_id: str | None
    at: float


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
        with proxy._lock:
            host, port = proxy.target_host, proxy.target_port
        upstream = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
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
            exchange = Exchange(self.command, self.path, headers, body, response.status,
                                response_headers)
            proxy._record(exchange)
            self._relay(response, response_headers, exchange)
        finally:
            if upstream.sock is not None:
                proxy._untrack(upstream.sock)
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse,
               headers: tuple[tuple[str, str], ...], exchange: Exchange) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        chunked = response.chunked
        if response.length is None and not chunked:
            self.close_connection = True  # the end of the body is the end of the connection
        proxy = self.server.proxy
        if proxy._shapes(exchange):
            try:
                if self._shaped(response, chunked, exchange):
                    return
            except (OSError, http.client.HTTPException):
                self.close_connection = True
                return
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

    def _shaped(self, response: http.client.HTTPResponse, chunked: bool,
                exchange: Exchange) -> bool:
        """Relay a selected SSE body as the proxy's options say; True if it was cut."""
        proxy = self.server.proxy
        buffer, events, last_id = b"", 0, None
        while True:
            data = response.read1(READ_SIZE)
            if not data:
                break
            if proxy.cut_after_events is None:
                self._send(data, chunked)
                continue
            buffer += data
            end = _EVENT_END.search(buffer)
            while end is not None:
                block, buffer = buffer[:end.end()], buffer[end.end():]
                self._send(block, chunked)
                found = _ID.search(block)
                last_id = found.group(1).decode() if found else last_id
                events += 1 if _DATA.search(block) else 0
                if events >= proxy.cut_after_events:
                    proxy._record_cut(Cut(exchange, last_id, time.monotonic()))
                    self.close_connection = True
                    return True
                end = _EVENT_END.search(buffer)
        if buffer:
            self._send(buffer, chunked)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        return False

    def _send(self, data: bytes, chunked: bool) -> None:
        trickle = self.server.proxy.trickle
        pieces = [data] if trickle is None else [data[i:i + 1] for i in range(len(data))]
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            self.wfile.flush()
            if trickle is not None and self.server.proxy._stop.wait(trickle):
                raise OSError("the proxy is closing")

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
    # socketserver's default backlog of 5 resets connections when 32 clients connect at once.
    request_queue_size = 128

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

    def __init__(self, target_url: str, *, cut_after_events: int | None = None,
                 trickle: float | None = None,
                 only: Callable[[Exchange], bool] | None = None) -> None:
        target = urllib.parse.urlsplit(target_url)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"not an http:// URL: {target_url!r}")
        self.target_host = target.hostname
        self.target_port = target.port or 80
        self._lock = threading.Condition()
        self._exchanges: list[Exchange] = []
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._stop = threading.Event()
        self.cut_after_events = cut_after_events
        self.trickle = trickle
        self._only = only
        self._cuts: list[Cut] = []
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

    @property
    def cuts(self) -> list[Cut]:
        """The response streams cut so far (a copy), in order."""
        with self._lock:
            return list(self._cuts)

    def wait_for(self, count: int, timeout: float) -> list[Exchange]:
        """Wait until ``count`` requests are recorded and return them all; raise
        ``TimeoutError`` after ``timeout`` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._exchanges) >= count, timeout):
                raise TimeoutError(f"{len(self._exchanges)} of {count} requests recorded "
                                   f"within {timeout:g}s")
            return list(self._exchanges)

    def retarget(self, target_url: str) -> None:
        """Forward the requests that arrive from now on to ``target_url``'s host and port
        (e.g. a server restarted on another port), behind the same proxy URL."""
        target = urllib.parse.urlsplit(target_url)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"not an http:// URL: {target_url!r}")
        with self._lock:
            self.target_host, self.target_port = target.hostname, target.port or 80

    def close(self) -> None:
        """Stop listening, cut every open connection (both sides), join every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        self._stop.set()
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

    def _record_cut(self, cut: Cut) -> None:
        with self._lock:
            self._cuts.append(cut)

    def _shapes(self, exchange: Exchange) -> bool:
        """Whether the options shape this response: an SSE body the ``only`` test selects."""
        if self.cut_after_events is None and self.trickle is None:
            return False
        mime = (exchange.response_header("Content-Type") or "").split(";")[0].strip().lower()
        return mime == "text/event-stream" and (self._only is None or self._only(exchange))

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

