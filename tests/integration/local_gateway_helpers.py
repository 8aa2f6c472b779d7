"""Helpers of the LocalGateway's own integration tests: plain-HTTP calls and assertions on
the error envelope. Their gateway is ``make_gateway("local_gateway", ...)`` (see
tests/integration/conftest.py), with ``support.API_KEY``."""

from __future__ import annotations

import json
import socket
import threading
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
