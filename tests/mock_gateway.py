"""A fake gateway for unit tests of the client's pipeline: a table of routes answering through
``sark_sync.testing.MockTransport``, so everything above the transport (deadline, authorization,
breaker, retries, audit, typed errors) runs as in production, without a socket.

Routes match the way ``responses`` matches URLs, so a test reads the same: by method and path,
and by the exact query ``params`` when the route gives them. When several routes match a
request, the first answers once and is dropped: a route added twice answers in turn, and the
last one left repeats. A request that no route matches fails the test with an AssertionError
(it is never answered by accident).

``FakeGateway.requests`` is every request the transport received, one per attempt, in order::

    gateway = FakeGateway()
    gateway.add("GET", SERVERS, {"servers": [{"server_name": "a"}], "total": 1})
    with gateway.client() as client:
        client.list_servers()
    assert gateway.sent() == ["GET /api/v1/servers?offset=0&limit=100"]
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from sark_sync import GatewayClient, GatewayError, RetryPolicy
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

__all__ = ["HEALTH", "INVOKE", "SERVERS", "TOOLS", "FakeGateway", "Route"]

SERVERS = "/api/v1/servers"
TOOLS = "/api/v1/tools"
INVOKE = "/api/v1/invoke"
HEALTH = "/health"

#: One attempt per call unless a test says otherwise: an unexpected retry would hide a request.
ONE_ATTEMPT = RetryPolicy(attempts=1)


class Route:
    """One answer (or one error to raise) for a method, a path and optionally exact params."""

    __slots__ = ("answer", "method", "params", "path", "raises")

    def __init__(self, method: str, path: str, answer: MockResponse, *,
                 params: Mapping[str, Any] | None, raises: GatewayError | None) -> None:
        self.method = method
        self.path = path
        self.answer = answer
        self.params = None if params is None else dict(params)
        self.raises = raises

    def matches(self, request: Request) -> bool:
        return (request.method, request.path) == (self.method, self.path) and (
            self.params is None or dict(request.params) == self.params)


class FakeGateway:
    """A gateway answering from routes added with :meth:`add`; its :attr:`transport` is the
    ``MockTransport`` to give a ``GatewayClient`` (or use :meth:`client`)."""

    def __init__(self) -> None:
        self.transport = MockTransport(self.answer)
        self._routes: list[Route] = []
        self._lock = threading.Lock()  # submit() and invoke_many() answer from worker threads

    def add(self, method: str, path: str, json: Any = None, *, status: int = 200,
            headers: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
            raises: GatewayError | None = None) -> None:
        """Answer ``method path`` (with exactly ``params``, if given) with ``status`` and the
        JSON body ``json`` (None: no body), or raise ``raises`` as the transport would."""
        route = Route(method, path, MockResponse(status, json=json, headers=headers),
                      params=params, raises=raises)
        with self._lock:
            self._routes.append(route)

    def answer(self, request: Request) -> MockResponse:
        """The MockTransport's handler."""
        with self._lock:
            found = [route for route in self._routes if route.matches(request)]
            if not found:
                raise AssertionError(f"the fake gateway has no route for {describe(request)}")
            if len(found) > 1:
                self._routes.remove(found[0])
        route = found[0]
        if route.raises is not None:
            raise route.raises
        return route.answer

    @property
    def requests(self) -> list[Request]:
        return self.transport.requests

    def sent(self) -> list[str]:
        """Every request as ``"METHOD /path?query"``, in the order sent."""
        return [describe(request) for request in self.requests]

    def bodies(self, path: str = INVOKE) -> list[Any]:
        """The decoded JSON bodies of the requests sent to ``path``."""
        return [request.json() for request in self.requests if request.path == path]

    def request_ids(self) -> list[str]:
        return [request.headers["X-Request-ID"] for request in self.requests]

    def client(self, **options: Any) -> GatewayClient:
        """A client of this gateway; one attempt per call unless ``retry`` is given."""
        options.setdefault("retry", ONE_ATTEMPT)
        return GatewayClient(transport=self.transport, **options)


def describe(request: Request) -> str:
    """``"METHOD /path?query"``, the query encoded in the order of the request's params."""
    query = f"?{urlencode(request.params)}" if request.params else ""
    return f"{request.method} {request.path}{query}"
