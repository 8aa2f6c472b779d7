"""The HTTP/1.1 request handler of the LocalGateway: bytes in, faults, bytes out.

Design: one handler instance serves one keep-alive connection in its own thread. For each
request it reads the body (``Content-Length`` or chunked, refusing more than
``max_request_bytes`` with 413 and closing), records the request, takes at most one matching
fault, asks :class:`~sark_sync.testing._api.Api` for the answer unless the fault answers
instead, and writes status line, headers and body in a single ``sendall`` so no response is
ever split into segments that Nagle's algorithm could hold back (the server also sets
``TCP_NODELAY`` on every accepted socket). Every response carries ``Content-Length``, except
an event stream (``GET /api/v1/events``), which the handler hands over to
:class:`~._event_stream.EventStream` for as long as it lasts; the connection then closes.

Every wait here (fault delays, slow bodies) is a wait on the gateway's stop event, so
``stop()`` interrupts it at once. Nothing is written to stderr: stdlib log calls go to the
``sark_sync.testing`` logger at DEBUG, and neither logs nor responses contain credentials.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from ._api import Api
from ._event_stream import EventStream, StreamSettings, peer_closed
from ._events import EventLog, Subscription
from ._faults import SLOW_BODY_CHUNK, Fault, FaultSet
from ._recording import RecordedHeaders, RecordedRequest, RequestLog
from ._wire import JSON, Response, error_response, format_retry_after

__all__ = ["GatewayHandler", "HandlerContext"]

logger = logging.getLogger("sark_sync.testing")

#: Longest X-Request-ID echoed; a longer one is replaced by a fresh uuid4.
MAX_REQUEST_ID = 200
#: Longest line of a chunked body's framing.
MAX_CHUNK_LINE = 1024
#: Largest refused body still read and discarded so that the client sees the 413.
MAX_DISCARD = 64 * 1024 * 1024


@dataclass
class HandlerContext:
    """What every handler thread shares with its gateway."""

    api: Api
    events: EventLog
    stream: StreamSettings
    faults: FaultSet
    log: RequestLog
    stopping: threading.Event
    max_request_bytes: int
    version: str
    idle_timeout: float | None


class _Refused(Exception):
    """The request body is refused before it is read (the connection then closes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Disconnected(Exception):
    """The client went away or stalled mid-request: close without answering."""


def _request_id(sent: str | None) -> str:
    if sent and len(sent) <= MAX_REQUEST_ID and sent.isprintable():
        return sent
    return str(uuid.uuid4())


class GatewayHandler(BaseHTTPRequestHandler):
    """Serves the gateway API on one connection; see the module docstring."""

    protocol_version = "HTTP/1.1"
    context: HandlerContext

    def setup(self) -> None:
        self.context = getattr(self.server, "context")  # noqa: B009 - set by GatewayHTTPServer
        super().setup()
        self.connection.settimeout(self.context.idle_timeout)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol errors found by the stdlib parser with the JSON envelope."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        response = error_response(code, message or phrase, str(uuid.uuid4()))
        response.close = True
        self._write(response)

    def _dispatch(self) -> None:
        ctx = self.context
        received_at = time.monotonic()
        request_id = _request_id(self.headers.get("X-Request-ID"))
        target = urlsplit(self.path)
        headers = RecordedHeaders(self.headers.items())
        refusal: Response | None = None
        try:
            body = self._read_body()
        except _Disconnected:
            self.close_connection = True
            return
        except _Refused as exc:
            body = b""
            refusal = error_response(exc.status, str(exc), request_id)
            refusal.close = True
        recorded = RecordedRequest(
            method=self.command,
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            received_at=received_at,
            request_id=request_id,
        )
        ctx.log.append(recorded)
        if refusal is not None:
            self._write(_with_request_id(refusal, request_id))
            return
        fault = None if ctx.stopping.is_set() else ctx.faults.take(self.command, target.path, body)
        if fault is None:
            answer = ctx.api.handle(recorded)
            if isinstance(answer, Subscription):
                self._stream(answer, request_id, None)
            else:
                self._write(_with_request_id(answer, request_id))
            return
        if fault.delay and ctx.stopping.wait(fault.delay):
            self.close_connection = True
            return
        if fault.drop:
            self.close_connection = True
            return
        response = _fault_response(fault, request_id) if fault.answers else ctx.api.handle(recorded)
        if isinstance(response, Subscription):
            self._stream(response, request_id, fault)
            return
        if fault.content_type is not None:
            response.content_type = fault.content_type
        if fault.retry_after is not None and not any(
            name == "Retry-After" for name, _ in response.headers
        ):
            response.headers.append(("Retry-After", format_retry_after(fault.retry_after)))
        self._write(
            _with_request_id(response, request_id),
            truncate=fault.truncate,
            slow_body=fault.slow_body,
        )

    def _stream(self, subscription: Subscription, request_id: str, fault: Fault | None) -> None:
        """Answer 200 and stream events until the stream ends; then close the connection."""
        ctx = self.context
        self.close_connection = True
        framing = ctx.stream.framing if self.request_version == "HTTP/1.1" else "close"
        headers = [
            ("Server", f"sark-sync-local/{ctx.version}"),
            ("Date", self.date_time_string()),
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Request-ID", request_id),
        ]
        if fault is not None and fault.content_type is not None:
            headers[2] = ("Content-Type", fault.content_type)
        if fault is not None and fault.retry_after is not None:
            headers.append(("Retry-After", format_retry_after(fault.retry_after)))
        headers.append(
            ("Transfer-Encoding", "chunked") if framing == "chunked" else ("Connection", "close")
        )
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
        self.log_request(200, "-")
        if self.command == "HEAD":
            try:
                self.wfile.write(head.encode("latin-1"))
            except OSError:
                pass
            return
        sock = self.connection
        stream = EventStream(
            ctx.events,
            subscription,
            StreamSettings(ctx.stream.ping_interval, ctx.stream.retry, framing),
            send=self.wfile.write,
            is_peer_closed=lambda: peer_closed(sock),
            stopping=ctx.stopping,
            fault=fault,
        )
        ended = stream.run(head.encode("latin-1"))
        logger.debug("event stream to %s ended (%s) after %d events",
                     self.address_string(), ended, stream.sent)

    def _read_body(self) -> bytes:
        limit = self.context.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise _Refused(400, "Content-Length is not a non-negative integer")
        length = int(raw)
        if length > limit:
            self._discard(length)
            raise _Refused(413, f"request body exceeds {limit} bytes")
        return self._read_exactly(length)

    def _discard(self, length: int) -> None:
        # A client (http.client among them) sends its whole body before it reads the answer:
        # closing on unread data would reset the connection and hide the 413 from it.
        if length > MAX_DISCARD:
            return
        while length > 0:
            try:
                piece = self.rfile.read(min(length, 65536))
            except OSError:
                return
            if not piece:
                return
            length -= len(piece)

    def _read_exactly(self, size: int) -> bytes:
        try:
            data = self.rfile.read(size)
        except OSError as exc:  # socket.timeout is an OSError on every supported Python
            raise _Disconnected() from exc
        if len(data) < size:
            raise _Disconnected()
        return data

    def _read_line(self) -> bytes:
        try:
            line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        except OSError as exc:
            raise _Disconnected() from exc
        if not line.endswith(b"\n"):
            raise _Disconnected()
        return line

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_field = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise _Refused(400, "malformed chunked body") from None
            if size == 0:
                while self._read_line() not in (b"\r\n", b"\n"):
                    pass  # trailers are read and ignored
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _Refused(413, f"request body exceeds {limit} bytes")
            chunks.append(self._read_exactly(size))
            self._read_line()

    def _write(
        self, response: Response, *, truncate: bool = False, slow_body: float | None = None
    ) -> None:
        """Send ``response`` (headers and body in one write unless a fault says otherwise)."""
        ctx = self.context
        close = response.close or truncate or self.close_connection or ctx.stopping.is_set()
        body = b"" if self.command == "HEAD" else response.body
        declared = len(response.body)
        if truncate:
            declared = max(declared, 2)
            body = body[: len(body) // 2]
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        headers: list[tuple[str, str]] = [
            ("Server", f"sark-sync-local/{ctx.version}"),
            ("Date", self.date_time_string()),
        ]
        if response.content_type is not None:
            headers.append(("Content-Type", response.content_type))
        headers.append(("Content-Length", str(declared)))
        headers.extend(response.headers)
        if close:
            headers.append(("Connection", "close"))
        head = f"HTTP/1.1 {response.status} {phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        self.log_request(response.status, declared)
        try:
            if slow_body is None:
                self.wfile.write(head.encode("latin-1") + body)
            else:
                self._write_slowly(head.encode("latin-1"), body, slow_body)
        except OSError:
            close = True
        if close:
            self.close_connection = True

    def _write_slowly(self, head: bytes, body: bytes, pause: float) -> None:
        self.wfile.write(head)
        for start in range(0, len(body), SLOW_BODY_CHUNK):
            if self.context.stopping.wait(pause):
                self.close_connection = True
                return
            self.wfile.write(body[start : start + SLOW_BODY_CHUNK])


def _fault_response(fault: Fault, request_id: str) -> Response:
    status = fault.status if fault.status is not None else 200
    body = fault.body_bytes
    if body is not None:
        return Response(status, body, fault.content_type or JSON)
    if status < 400:
        return Response.json(status, {})
    extra = {"reason": "injected fault", "audit_id": str(uuid.uuid4())} if status == 403 else {}
    return error_response(status, f"injected fault: HTTP {status}", request_id, **extra)


def _with_request_id(response: Response, request_id: str) -> Response:
    response.headers.append(("X-Request-ID", request_id))
    return response
