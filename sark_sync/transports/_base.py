"""The seam between the client and the wire: small Protocols every transport implements.

The pipeline above (deadline, authorization, breaker, retries, audit) never knows which
transport it drives; it hands a :class:`Request` to a :class:`GatewayTransport` and gets a
:class:`Response` back or a ``GatewayError``. Three shapes cover what the package speaks:

- :class:`GatewayTransport`: one request, one answer (the gateway's REST API over HTTP; in
  tests, :class:`sark_sync.testing.MockTransport`).
- :class:`EventSource`: an iterator of events that connects in :meth:`~EventSource.connect`,
  not when it is built (the gateway's SSE stream).
- :class:`MessageChannel`: JSON-RPC messages both ways (a local MCP server's stdio pipes); the
  MCP session (``LocalServer``) runs over any channel.

The contract of :meth:`GatewayTransport.send` is **one attempt**: retries are the pipeline's
(one loop for every transport, see :mod:`sark_sync.resilience`). A transport returns the
answer of a 2xx or an accepted status, raises the typed error of any other status (with the
gateway's envelope and ``Retry-After`` read), and marks a failure that happened before the
request left with :func:`~sark_sync.resilience.mark_unsent` (it may always be sent again) and one
after it may have been processed with :func:`~sark_sync.resilience.mark_sent`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from .._deadline import Deadline
from .._models import Event

__all__ = ["EventSource", "GatewayTransport", "MessageChannel", "Request", "Response"]


class Request:
    """A request to the gateway as the pipeline hands it to a transport: ``path`` is relative
    to the gateway's base URL; ``body`` is encoded JSON (or None). The transport adds its own
    credentials and ``User-Agent``; the repr shows no header value."""

    __slots__ = ("body", "headers", "method", "params", "path")

    def __init__(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, body: bytes | None = None) -> None:
        self.method = method
        self.path = path
        self.params: Mapping[str, Any] = dict(params) if params else {}
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body

    def json(self) -> Any:
        """The decoded body, or None without one."""
        return None if self.body is None else json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


class Response:
    """A decoded answer: status, JSON body, headers, and the attempts the pipeline made
    (set by the pipeline's retry loop; a transport reports 1)."""

    __slots__ = ("attempts", "data", "headers", "status_code")

    def __init__(self, status_code: int, data: Any, headers: Mapping[str, str],
                 attempts: int = 1) -> None:
        self.status_code = status_code
        self.data = data
        self.headers = headers
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


@runtime_checkable
class GatewayTransport(Protocol):
    """Requests to one gateway: one attempt per :meth:`send`, bounded by ``deadline``."""

    def send(self, request: Request, *, deadline: Deadline,
             accept_statuses: frozenset[int] = frozenset()) -> Response:
        """The answer of a 2xx or of a status in ``accept_statuses``; a ``GatewayError``
        otherwise (``APIError`` and its subclasses for the other statuses)."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


@runtime_checkable
class EventSource(Protocol):
    """Events from a peer, reconnected by the source itself until it gives up or is closed."""

    def connect(self) -> None:
        """Open the first connection (so nothing published from now on is missed)."""
        ...

    def __iter__(self) -> Iterator[Event]:
        ...

    def __next__(self) -> Event:
        ...

    def close(self) -> None:
        """End iteration, from any thread; idempotent."""
        ...


@runtime_checkable
class MessageChannel(Protocol):
    """JSON-RPC 2.0 both ways with one peer: requests with a timeout, notifications, and
    answers to the peer's own requests. The MCP session (``McpSession``) runs over any."""

    @property
    def alive(self) -> bool:
        ...

    def start(self) -> None:
        ...

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        """The result of ``method``; a ``GatewayError`` for an error answer, an exit or a
        timeout."""
        ...

    def notify(self, method: str, params: Mapping[str, Any] | None = None,
               timeout: float = ...) -> None:
        """Send a notification, waiting at most ``timeout`` seconds to write it."""
        ...

    def respond(self, request_id: str | int, result: Any) -> None:
        """Answer a request the peer sent."""
        ...

    def respond_error(self, request_id: str | int | None, code: int, message: str) -> None:
        """Answer a request the peer sent with a JSON-RPC error."""
        ...

    def close(self) -> None:
        ...
