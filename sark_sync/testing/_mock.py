"""MockTransport: answer a GatewayClient's requests with a function, without a socket.

As httpx's ``MockTransport``: the client's whole pipeline (deadline, authorization, breaker,
retries, audit, typed errors) runs unchanged above it; only the wire is replaced::

    from sark_sync import GatewayClient
    from sark_sync.testing import MockResponse, MockTransport

    def handler(request):
        if request.path == "/api/v1/invoke":
            body = request.json()
            return MockResponse(200, json={"success": True, "result": body["parameters"]})
        return MockResponse(404, json={"error": {"code": "not_found", "message": "no"}})

    client = GatewayClient(transport=MockTransport(handler))
    client.invoke_tool("demo", "echo", {"text": "hi"}).result   # {'text': 'hi'}

A status other than 2xx becomes the typed error the HTTP transport would raise (the gateway's
error envelope and ``Retry-After`` are read from ``json`` and ``headers``), so a 503 is retried
and counted by the breaker exactly as on the wire. A handler may also raise a ``GatewayError``
(a ``ConnectionFailed`` raised by the handler means "could not connect": nothing was sent, so
it is retried even for a request that is not idempotent).
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Mapping
from typing import Any, Callable

from .._deadline import Deadline
from .._exceptions import ClientClosedError, ConnectionFailed, GatewayError, ProtocolError
from ..resilience import mark_sent, mark_unsent
from ..transports import Request, Response, error_from_answer

__all__ = ["MockResponse", "MockTransport"]


class MockResponse:
    """What a :class:`MockTransport` handler answers: a status, a JSON body, headers; or, for
    an error status, ``content``: raw bytes instead of JSON (a proxy's HTML page, ``down``)."""

    __slots__ = ("content", "headers", "json", "status_code")

    def __init__(self, status_code: int = 200, json: Any = None,
                 headers: Mapping[str, str] | None = None, *, content: bytes | None = None
                 ) -> None:
        if isinstance(status_code, bool) or not isinstance(status_code, int) \
                or not 100 <= status_code <= 599:
            raise ValueError(f"status_code must be an int from 100 to 599, got {status_code!r}")
        if content is not None and (json is not None or not isinstance(content, bytes)):
            raise ValueError("content must be bytes, and given without json")
        self.status_code = status_code
        self.json = json
        self.content = content
        self.headers: dict[str, str] = dict(headers or {})

    def __repr__(self) -> str:
        return f"<MockResponse [{self.status_code}]>"


class MockTransport:
    """A gateway transport whose answers come from ``handler(request) -> MockResponse``.

    ``requests`` lists every request received, in order (one per attempt: a retried call
    appears once per attempt). Thread-safe when the handler is.
    """

    base_url = "mock://gateway"

    def __init__(self, handler: Callable[[Request], MockResponse]) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False
        self._lock = threading.Lock()

    def send(self, request: Request, *, deadline: Deadline,
             accept_statuses: frozenset[int] = frozenset()) -> Response:
        if self.closed:
            raise ClientClosedError("this MockTransport is closed")
        with self._lock:
            self.requests.append(request)
        where: dict[str, Any] = {"method": request.method, "url": self.base_url + request.path,
                                 "request_id": request.headers.get("X-Request-ID")}
        try:
            answer = self.handler(request)
        except ConnectionFailed as exc:
            if "_sark_exchange" not in exc.__dict__:
                mark_unsent(exc)
            exc._with(**where)
            raise
        except GatewayError as exc:
            exc._with(**where)
            raise
        if not isinstance(answer, MockResponse):
            raise TypeError(f"the MockTransport handler must return a MockResponse, not "
                            f"{type(answer).__name__}")
        if deadline.expired:
            raise deadline.exceeded("waiting for the MockTransport handler", **where)
        status = answer.status_code
        if answer.content is None and (200 <= status < 300 or (
                status in accept_statuses and answer.json is not None)):
            return Response(status, answer.json, answer.headers)
        if 200 <= status < 300:  # what the HTTP transport says of a 2xx that is not JSON
            raise ProtocolError(f"response is not valid JSON ({len(answer.content or b'')} "
                                "bytes)", status_code=status, **where)
        raw = answer.content if answer.content is not None else (
            b"" if answer.json is None else jsonlib.dumps(answer.json).encode())
        error = error_from_answer(status, raw, answer.headers, where)
        if status in accept_statuses:  # the caller asked to see it, not to retry it
            mark_sent(error, retryable=False)
        raise error

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<MockTransport {len(self.requests)} request(s)>"
