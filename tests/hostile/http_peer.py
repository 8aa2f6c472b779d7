"""A raw-socket HTTP/1.1 server on 127.0.0.1 that misbehaves on command.

``http.server`` always sends a well-formed status line and headers in one piece; the attacks
this kit exists for happen between bytes. So the server reads each request itself and answers
with a *script*: a handler ``(request) -> Iterable[bytes | Pause | Action]`` whose items are
written one by one, with pauses in between:

    with HostilePeer(trickle_headers(interval=0.2)) as peer:
        client = GatewayClient(peer.url, ...)

Every pause waits on the server's stop event, so :meth:`HostilePeer.stop` ends a script that
would otherwise run forever within one pause; every connection thread is joined and every
socket closed on stop (the suite's leak guard checks). TCP_NODELAY is set on every
connection, so a one-byte write really leaves as one segment.

The script factories below cover the attacks the SDK must survive; a test may also pass its
own handler.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Union
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CLOSE",
    "AwaitRequest",
    "RESET",
    "HostilePeer",
    "Pause",
    "Request",
    "answer",
    "endless_continue",
    "json_answer",
    "nested_json",
    "stall",
    "trickle",
    "trickle_body",
    "trickle_headers",
]

#: Longest request head the peer reads.
MAX_HEAD = 64 * 1024
#: How long stop() waits for each connection thread.
JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds (or until the peer stops) before the next item."""

    seconds: float


@dataclass(frozen=True)
class AwaitRequest:
    """Wait until the client sends more bytes on this connection (its next request), at most
    ``seconds``: what follows then races that request's own answer."""

    seconds: float = 5.0


class _Action:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Close the connection after what was written (a clean FIN).
CLOSE = _Action("CLOSE")
#: Reset the connection (RST: SO_LINGER 0, then close).
RESET = _Action("RESET")

Item = Union[bytes, Pause, AwaitRequest, _Action]
Handler = Callable[["Request"], Iterable[Item]]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(urlsplit(self.target).query).items()}


@dataclass
class HostilePeer:
    """The server. ``handler`` scripts the answer to each request; the log of requests seen
    is ``requests`` (thread-safe to read after the exchange), connections accepted
    ``connections``."""

    handler: Handler
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept",
                                          daemon=True)
        self._acceptor.start()

    def __enter__(self) -> HostilePeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End every script and connection; join every thread (bounded)."""
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._acceptor.join(JOIN_TIMEOUT)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), "a hostile peer connection did not stop"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(sock,), name="hostile-conn",
                                      daemon=True)
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self.connections += 1
                self._sockets.add(sock)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(sock, buffer)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                if not self._play(sock, self.handler(request)):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()

    def _play(self, sock: socket.socket, script: Iterable[Item]) -> bool:
        """Write the script; False when the connection is over."""
        for item in script:
            if self._stop.is_set():
                return False
            if isinstance(item, Pause):
                if self._stop.wait(item.seconds):
                    return False
            elif isinstance(item, AwaitRequest):
                deadline = time.monotonic() + item.seconds
                while not select.select([sock], [], [], 0.05)[0]:
                    if self._stop.is_set() or time.monotonic() > deadline:
                        return False
            elif item is CLOSE:
                return False
            elif item is RESET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            elif isinstance(item, bytes):
                sock.sendall(item)
        return True


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[Request | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            return None, b""
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        rest += data
    return Request(method, target, headers, rest[:length]), rest[length:]


# -- scripts ------------------------------------------------------------------------------------

def answer(status: int = 200, body: bytes = b"", *, content_type: str = "application/json",
           headers: dict[str, str] | None = None, reason: str = "OK") -> bytes:
    """A whole well-formed response, as bytes."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_answer(handler: Callable[[Request], Any], status: int = 200) -> Handler:
    """Answer each request with the JSON of ``handler(request)``, promptly and correctly."""
    def script(request: Request) -> Iterator[Item]:
        yield answer(status, json.dumps(handler(request)).encode())
    return script


def trickle(data: bytes, interval: float, step: int = 1) -> Iterator[Item]:
    """``data`` in pieces of ``step`` bytes, ``interval`` seconds apart."""
    for start in range(0, len(data), step):
        if start:
            yield Pause(interval)
        yield data[start:start + step]


def trickle_headers(interval: float = 0.2) -> Handler:
    """A status line at once, then one more header byte every ``interval``, forever."""
    def script(request: Request) -> Iterator[Item]:
        yield b"HTTP/1.1 200 OK\r\n"
        while True:
            yield from trickle(b"X-Slow: " + b"a" * 50 + b"\r\n", interval)
            yield Pause(interval)
    return script


def endless_continue(interval: float = 0.2) -> Handler:
    """``100 Continue`` interim responses, ``interval`` apart, forever."""
    def script(request: Request) -> Iterator[Item]:
        while True:
            yield b"HTTP/1.1 100 Continue\r\n\r\n"
            yield Pause(interval)
    return script


def trickle_body(interval: float = 0.2, *, chunked: bool = False) -> Handler:
    """Headers at once, then a body that never ends: one byte every ``interval`` (with
    ``chunked``, the chunk-size line itself is what trickles)."""
    def script(request: Request) -> Iterator[Item]:
        if chunked:
            yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            while True:
                yield b"0"
                yield Pause(interval)
        yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100000\r\n\r\n")
        while True:
            yield b" "
            yield Pause(interval)
    return script


def stall() -> Handler:
    """Read the request, then say nothing until stopped."""
    def script(request: Request) -> Iterator[Item]:
        while True:
            yield Pause(3600)
    return script


def nested_json(depth: int = 100_000, status: int = 200) -> Handler:
    """A JSON body of ``depth`` nested arrays (valid JSON; deep enough to exhaust a
    recursive parser)."""
    body = b"[" * depth + b"]" * depth
    return lambda request: [answer(status, body)]


# -- event stream scripts -------------------------------------------------------------------------

def sse_head(content_type: str = "text/event-stream", *, length: int | None = None) -> bytes:
    """The head of a 200 event stream response. Without ``length`` the body has no length: it
    ends when the peer closes the connection, as a long-lived stream does."""
    lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", "Cache-Control: no-cache"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def sse_script(*connections: Iterable[Item], head: bytes | None = None) -> Handler:
    """An event stream: the n-th request gets ``head`` (default :func:`sse_head`) and the items
    of the n-th argument, then the connection closes; requests past the last argument get the
    last one again. An argument may be a generator (made once, played once)."""
    answers = [list(items) if not isinstance(items, Iterator) else items
               for items in connections]
    count = [0]

    def script(request: Request) -> Iterator[Item]:
        index = min(count[0], len(answers) - 1)
        count[0] += 1
        yield sse_head() if head is None else head
        yield from answers[index]
        yield CLOSE
    return script


def sse_stall() -> list[Item]:
    """Items for :func:`sse_script`: nothing more until the peer stops (the stream stays open)."""
    return [Pause(3600)]
