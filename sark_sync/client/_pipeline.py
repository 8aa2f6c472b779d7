"""The pipeline every call of a GatewayClient runs through, in one fixed order.

::

    deadline -> authorize -> breaker -> retry -> transport -> audit

- **deadline**: made when the call is made (:meth:`Pipeline.deadline`; for ``submit``, when it is
  submitted) and handed to every stage below, each of which asks it for the time left;
- **authorize**: the governance stage (:mod:`._governance_stage`), for tool calls when the client
  has an authorizer: a deny is raised here, so it is never counted by the breaker nor retried;
- **breaker**: one per (gateway, server) and one per local server; it sees one outcome per
  logical call (its retries included), and the answer is parsed inside it, so a malformed answer
  counts as the server's failure;
- **retry**: the one loop of the package (:class:`~sark_sync.resilience.Retrying`) with the one
  rule (:func:`~sark_sync.resilience.retryable`);
- **transport**: any :class:`~sark_sync.transports.GatewayTransport` for the gateway (requests'
  HTTP by default; ``sark_sync.testing.MockTransport`` in tests), the local server's MCP session
  over stdio for a local server;
- **audit**: one event per operation whatever happened (the governance stage for tool calls, an
  :class:`Operation` around discovery).

The same order holds for every transport. See ``docs/ARCHITECTURE.md``. Each tool call, and
each discovery request, runs :func:`~sark_sync.resilience.observed`: the context its retry and
breaker log records name, and its OpenTelemetry span when the ``otel`` extra is installed.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .._config import BreakerPolicy, RetryPolicy, Timeouts
from .._deadline import Deadline
from .._exceptions import (
    ClientClosedError,
    ConfigurationError,
    GatewayError,
    ProtocolError,
    TransportNotAvailableError,
    ValidationError,
)
from .._models import Principal, ToolResult
from ..governance import Operation
from ..resilience import (
    Breaker,
    Retrying,
    cancellable,
    finished,
    interruptible,
    observed,
    raise_if_cancelled,
    retryable,
)
from ..transports import (
    GatewayTransport,
    LocalServerPool,
    RemoteServerPool,
    Request,
    Response,
    call_headers,
)
from ._governance_stage import Governance
from ._headers import check_headers, merge_headers
from ._invocation import Invocation, check_call, prepare
from ._resources import Resources

__all__ = ["Pipeline"]

T = TypeVar("T")

#: Tools whose annotations the client remembers for retry safety.
MAX_REMEMBERED_TOOLS = 10_000


class Pipeline:
    """The stages of a client's calls and the state they share (one per client).

    ``gateway`` builds the gateway transport on first use in each process (``resources`` keep
    it; a forked child builds its own). The pipeline holds no reference to its client, so a
    client dropped without ``close()`` is freed (and its resources released) at once.
    """

    def __init__(
        self, base_url: str, *, timeouts: Timeouts, retry: RetryPolicy, breaker: BreakerPolicy,
        max_workers: int, transport_mode: str, idempotency_keys: bool, resources: Resources,
        governance: Governance, gateway: Callable[[], GatewayTransport],
    ) -> None:
        self.base_url = base_url
        self.timeouts = timeouts
        self.retry = retry
        self.breaker_policy = breaker
        self.max_workers = max_workers
        self.transport_mode = transport_mode
        self.idempotency_keys = idempotency_keys
        self.resources = resources
        self.governance = governance
        #: Extra headers of every gateway request and remote MCP tool call (``with_options``).
        self.headers: Mapping[str, str] = {}
        #: The pipeline this one is a view of (``with_options``): closing it closes this one.
        self.parent: Pipeline | None = None
        self._closed = False
        self._build_gateway = gateway
        #: (server, tool) -> annotated read-only or idempotent, learnt from tool listings.
        self.retry_safe: dict[tuple[str, str], bool] = {}

    @property
    def closed(self) -> bool:
        """Set by the client's ``close()`` (a view's, or its parent's); every stage checks it
        before it starts anything."""
        return self._closed or (self.parent is not None and self.parent.closed)

    @closed.setter
    def closed(self, value: bool) -> None:
        self._closed = value

    def derive(self, timeouts: Timeouts, retry: RetryPolicy, headers: Mapping[str, str]
               ) -> Pipeline:
        """A view of this pipeline (``GatewayClient.with_options``): other defaults, the same
        state (resources, breakers, governance, learnt retry safety); open while both are."""
        view = copy.copy(self)
        view.timeouts, view.retry, view.headers = timeouts, retry, headers
        view.parent, view._closed = self, False
        return view

    # -- deadline ----------------------------------------------------------------------------

    def call_timeouts(self, timeout: float | Timeouts | None) -> Timeouts:
        """A call's ``timeout`` argument checked: :class:`ValidationError` naming it."""
        if timeout is None:
            return self.timeouts
        try:
            return Timeouts.coerce(timeout)
        except ConfigurationError as exc:
            raise ValidationError(exc.message) from None

    def deadline(self, timeout: float | Timeouts | None) -> Deadline:
        timeouts = self.call_timeouts(timeout)
        return Deadline(timeouts.deadline, timeouts=timeouts)

    # -- what the stages run on ----------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise ClientClosedError("this GatewayClient is closed")

    def state(self) -> Resources:
        resources = self.resources
        if resources.pid != os.getpid():  # a fork the at-fork hook did not see
            resources.drop_after_fork()
        return resources

    def require(self, transport: str) -> None:
        self.check_open()
        if self.transport_mode not in ("auto", transport):
            raise TransportNotAvailableError(
                f"this operation needs the {transport} transport, but transport_mode is "
                f"{self.transport_mode!r}")

    def local(self, server: str | None) -> LocalServerPool | RemoteServerPool | None:
        """The pool of MCP sessions ``server`` belongs to: local servers (stdio) or remote
        ones (Streamable HTTP); None for a gateway server."""
        resources = self.state()
        if server is not None and server in resources.local:
            self.require("stdio")
            return resources.local
        if server is not None and server in resources.remote:
            self.require("http")
            return resources.remote
        return None

    def gateway(self) -> GatewayTransport:
        self.require("http")
        return self.state().gateway(self._build_gateway, self.check_open)

    def executor(self) -> ThreadPoolExecutor:
        self.check_open()
        return self.state().executor_for(self.max_workers, self.check_open)

    def breaker(self, server: str | None) -> Breaker:
        resources = self.state()
        if server is not None and server in resources.local:
            name = f"local:{server}"
        elif server is not None and server in resources.remote:
            name = f"remote:{server}"
        else:
            name = self.base_url if server is None else f"{self.base_url}/{server}"
        return resources.breaker(name, self.breaker_policy)

    def operation(self, name: str, event_type: str = "discovery", *, server: str | None = None,
                  transport: str = "http", user_token: object = None, lazy: bool = False
                  ) -> Operation | None:
        """The audit of one operation (None while nobody listens)."""
        return self.governance.operation(name, event_type, transport, server=server,
                                         user_token=user_token, lazy=lazy)

    # -- breaker -> retry -> transport ---------------------------------------------------------

    def guarded(self, server: str | None, logical: Callable[[], T]) -> T:
        """``logical()`` (the retry loop of one call) under the server's breaker."""
        if not self.breaker_policy.enabled:
            return logical()
        return self.breaker(server).call(logical)

    def request(
        self, method: str, path: str, parse: Callable[[Response], T], *, server: str | None,
        deadline: Deadline, idempotent: bool = True, params: Mapping[str, Any] | None = None,
        body: bytes | None = None, headers: Mapping[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset(), tool: str | None = None,
        audit: Operation | None = None,
    ) -> T:
        """One gateway request: breaker -> retry -> transport, ``parse`` inside the breaker.
        Every attempt carries the same ``X-Request-ID`` (and body, and idempotency key)."""
        transport = self.gateway()
        request = Request(method, path, params=params, body=body, headers=merge_headers(
            {"X-Request-ID": str(uuid.uuid4())}, merge_headers(self.headers, headers or {})))
        if tool is None:  # discovery: a call of its own (a tool call's is invoke's)
            with observed(method, server=server, tool=None, transport="http",
                          request_id=request.headers["X-Request-ID"],
                          attributes={"http.request.method": method, "url.path": path}):
                return self._send(transport, request, parse, server, None, deadline,
                                  idempotent, accept_statuses, audit)
        return self._send(transport, request, parse, server, tool, deadline, idempotent,
                          accept_statuses, audit)

    def _send(self, transport: GatewayTransport, request: Request,
              parse: Callable[[Response], T], server: str | None, tool: str | None,
              deadline: Deadline, idempotent: bool, accept_statuses: frozenset[int],
              audit: Operation | None) -> T:
        policy = self.retry

        def logical() -> T:
            retrying = Retrying(policy, deadline, retryable=lambda error: retryable(
                error, idempotent=idempotent, policy=policy), sleep=interruptible(time.sleep))

            def attempt() -> Response:
                if audit is not None:
                    audit.sent(request.headers["X-Request-ID"])
                response = transport.send(request, deadline=deadline,
                                          accept_statuses=accept_statuses)
                response.attempts = retrying.attempts
                if audit is not None:
                    audit.received(response)
                return response

            return parse(retrying.call(attempt))

        try:
            return self.guarded(server, logical)
        except GatewayError as exc:
            exc._with(server=server, tool=tool)
            raise

    # -- tool calls ----------------------------------------------------------------------------

    def prepare(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None,
        user_token: str | None, idempotency_key: str | None, principal: Principal | None,
        progress: object = None, cancel: object = None, headers: object = None,
    ) -> Invocation:
        """Validate and encode a call; nothing is sent yet. The names and header values are
        checked first, before anything (the local server lookup, the token) reads them.
        ``progress`` and ``cancel`` are kept for an MCP server's ``tools/call``; ``headers``
        (:mod:`._headers`) join the view's for the gateway or a remote MCP server."""
        server, tool, user_token, idempotency_key = check_call(server, tool, user_token,
                                                               idempotency_key)
        extra = check_headers(headers)
        pool = self.local(server)
        if isinstance(pool, LocalServerPool):
            if extra:
                raise ValidationError(f"headers: {server!r} is a local server (stdio), which "
                                      "takes no HTTP headers", server=server, tool=tool)
        else:
            extra = merge_headers(self.headers, extra)
            if user_token is not None and any(k.lower() == "authorization" for k in extra):
                raise ValidationError("headers carry Authorization and user_token is given: "
                                      "pass one of them", server=server, tool=tool)
        return prepare(
            server, tool, parameters, user_token, idempotency_key, extra,
            local=pool is not None, auto_key=self.idempotency_keys,
            transport="mcp-http" if isinstance(pool, RemoteServerPool) else None,
            retry_safe=self.retry_safe.get((server, tool), False),
            principal=self.governance.principal(principal, user_token),
            snapshot=self.governance.authorizer is not None, progress=progress, cancel=cancel)

    def invoke(self, call: Invocation, deadline: Deadline, user_token: str | None = None
               ) -> ToolResult:
        """authorize -> breaker -> retry -> transport -> audit, for one prepared call, in
        the scope of its cancel token (if any)."""
        with cancellable(call.cancel), observed(
                "invoke_tool", server=call.server, tool=call.tool, transport=call.transport,
                request_id=call.headers.get("X-Request-ID")) as span:
            result = self.governance.run(call, deadline, self._transmit, user_token)
            finished(span, result.attempts, result.is_error)
            return result

    def _transmit(self, call: Invocation, deadline: Deadline) -> ToolResult:
        raise_if_cancelled("before it was sent", server=call.server, tool=call.tool)
        if call.local:
            return self._transmit_local(call, deadline)
        started = time.perf_counter()

        def parse(response: Response) -> ToolResult:
            latency_ms = (time.perf_counter() - started) * 1000.0
            try:
                return ToolResult.from_invoke_response(
                    response.data, server=call.server, tool=call.tool, latency_ms=latency_ms,
                    attempts=response.attempts)
            except ValueError as exc:
                raise ProtocolError(f"malformed invoke response: {exc}", server=call.server,
                                    tool=call.tool, attempts=response.attempts) from None

        return self.request("POST", "/api/v1/invoke", parse, server=call.server,
                            tool=call.tool, deadline=deadline, idempotent=call.idempotent,
                            body=call.body, headers=call.headers)

    def _transmit_local(self, call: Invocation, deadline: Deadline) -> ToolResult:
        """A local server's tool: the same breaker -> retry -> transport order. Without
        idempotency keys on stdio, only tools annotated read-only or idempotent are retried
        after a crash or a timeout."""
        local = self.local(call.server)
        if local is None:
            raise ClientClosedError("this GatewayClient is closed")
        server, tool, policy = call.server, call.tool, self.retry

        def logical() -> ToolResult:
            retrying = Retrying(policy, deadline, retryable=lambda error: retryable(
                error, idempotent=local.retry_safe(server, tool), policy=policy),
                sleep=interruptible(local.sleep), what=f"waiting for {server}/{tool}")
            with call_headers(call.headers):  # a remote server's tools/call carries them
                result = retrying.call(lambda: local.call_tool(
                    server, tool, call.arguments, deadline, progress=call.progress))
            return dataclasses.replace(result, attempts=retrying.attempts)

        try:
            return self.guarded(server, logical)
        except GatewayError as exc:
            exc._with(server=server, tool=tool)
            raise
