"""Helpers of the LocalGateway's own integration tests: plain-HTTP calls, assertions on the
error envelope, and a raw SSE reader on one socket. Their gateway is
``make_gateway("local_gateway", ...)`` (see tests/integration/conftest.py), with
``support.API_KEY``."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from support import API_KEY, WAIT

from sark_sync.testing import LocalGateway

AUTH = {"X-API-Key": API_KEY}


def gateway_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sark-local-gateway")]


def invoke(
    http: requests.Session,
    gw: LocalGateway,
    tool: str = "echo",
    parameters: Any = None,
    *,
    server: str = "demo",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    body = {"server": server, "tool": tool, "parameters": parameters or {}}
    return http.post(f"{gw.url}/api/v1/invoke", json=body, headers={**AUTH, **(headers or {})})


def error_of(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def invoke_request(gw: LocalGateway) -> bytes:
    body = json.dumps({"server": "demo", "tool": "echo", "parameters": {}}).encode()
    head = (
        "POST /api/v1/invoke HTTP/1.1\r\nHost: x\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def raw_exchange(gw: LocalGateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a new socket and read until the server closes it."""
    port = gw.url.rsplit(":", 1)[1]
    with socket.create_connection(("127.0.0.1", int(port)), timeout=WAIT) as sock:
        sock.sendall(request)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# -- reading an event stream over a raw socket ---------------------------------------------


@dataclass(frozen=True)
class SSE:
    """One event as a client sees it: ``id`` is ``None`` when the event had no id line."""

    id: int | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """A raw SSE client on one socket: bounded waits, its own chunk and SSE parsing.

    Records what else the stream carried: ``retry`` lines, ``pings`` (their arrival times),
    ``chunks`` (each chunk's payload), ``last_chunk`` (the chunked body was ended cleanly),
    and ``last_id``: the ``Last-Event-ID`` a browser would reconnect with (the one it sent,
    until an ``id:`` line changes it, in an event or in a block without data).
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None = API_KEY,
        last_event_id: str | int | None = None,
        types: str | None = None,
        version: str = "HTTP/1.1",
        method: str = "GET",
    ) -> None:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=WAIT)
        path = "/api/v1/events" + (f"?types={types}" if types is not None else "")
        lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
        if key is not None:
            lines.append(f"X-API-Key: {key}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""
        self._body = bytearray()
        self.eof = False
        self.last_chunk = False
        self.retry: list[int] = []
        self.pings: list[float] = []
        self.chunks: list[bytes] = []
        self.blocks = 0
        self.last_id = None if last_event_id is None else str(last_event_id)
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline):
                raise AssertionError(f"no response head: {self._raw!r}")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines)
        }
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self._decode()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _recv(self, deadline: float) -> bool:
        """Read more bytes before ``deadline``; ``False`` at end of stream."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing more from the stream in time")
        self.sock.settimeout(remaining)
        try:
            piece = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing more from the stream in time") from None
        except ConnectionResetError:
            piece = b""
        if not piece:
            self.eof = True
            return False
        self._raw += piece
        return True

    def _decode(self) -> None:
        """Move what arrived from ``_raw`` to ``_body``, de-chunking it if need be."""
        if not self.chunked:
            self._body += self._raw
            self._raw = b""
            return
        raw, pos = self._raw, 0
        while (line_end := raw.find(b"\r\n", pos)) >= 0:
            size = int(raw[pos:line_end], 16)
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            assert raw[start + size : start + size + 2] == b"\r\n"
            if size == 0:
                self.last_chunk = True
            else:
                self.chunks.append(raw[start : start + size])
                self._body += raw[start : start + size]
            pos = start + size + 2
        self._raw = raw[pos:]

    def _block(self, deadline: float) -> list[str] | None:
        """The lines of the next SSE block, or ``None`` at end of stream."""
        while (end := self._body.find(b"\n\n")) < 0:
            if not self._recv(deadline):
                self._decode()
                if (end := self._body.find(b"\n\n")) >= 0:
                    break
                return None
            self._decode()
        block = bytes(self._body[:end])
        del self._body[: end + 2]
        self.blocks += 1
        return block.decode("utf-8").split("\n")

    def _fields(self, lines: list[str]) -> dict[str, str]:
        """The fields of a block; records its pings, ``retry`` and ``id``."""
        fields: dict[str, str] = {}
        for line in lines:
            if line.startswith(":"):
                self.pings.append(time.monotonic())
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "retry" in fields:
            self.retry.append(int(fields["retry"]))
        if "id" in fields:
            self.last_id = fields["id"]
        return fields

    def opening(self, timeout: float = WAIT) -> bytes:
        """The stream's first block, exactly as sent (it must not have been read yet)."""
        assert self.blocks == 0, "the opening block was already read"
        lines = self._block(time.monotonic() + timeout)
        if lines is None:
            raise AssertionError("the stream ended before its opening block")
        self._fields(lines)
        return ("\n".join(lines) + "\n\n").encode()

    def next(self, timeout: float = WAIT) -> SSE | None:
        """The next event (pings, ``retry`` and ids recorded, not returned); ``None`` at the
        end."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self._block(deadline)
            if lines is None:
                return None
            fields = self._fields(lines)
            if "event" in fields or "data" in fields:
                event_id = int(fields["id"]) if "id" in fields else None
                return SSE(event_id, fields.get("event", "message"), fields.get("data", ""))

    def take(self, count: int, timeout: float = WAIT) -> list[SSE]:
        deadline = time.monotonic() + timeout
        events: list[SSE] = []
        while len(events) < count:
            event = self.next(max(0.0, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"stream ended after {len(events)} of {count} events")
            events.append(event)
        return events

    def rest(self, timeout: float = WAIT) -> list[SSE]:
        """Every event until the server closes the stream."""
        deadline = time.monotonic() + timeout
        events: list[SSE] = []
        while (event := self.next(max(0.0, deadline - time.monotonic()))) is not None:
            events.append(event)
        return events

    def quiet(self, seconds: float) -> bool:
        """Whether nothing at all arrives for ``seconds`` (the stream may end meanwhile)."""
        try:
            return self.next(seconds) is None and self.eof
        except TimeoutError:
            return True
