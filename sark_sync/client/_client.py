"""GatewayClient: every operation of the client, in one class.

The public methods check their arguments (a bad name never becomes a request) and hand the call
to the client's :class:`~._pipeline.Pipeline`, built here (``docs/ARCHITECTURE.md``). One
client is shared by every thread of a process, and across ``fork()``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any, Callable

from .._config import BreakerPolicy, RestartPolicy, RetryPolicy, Timeouts
from .._models import Health, Principal, ServerInfo, ToolCall, ToolInfo, ToolResult
from .._validation import validate_name, validate_page
from ..governance import Auditor, AuditRecorder, Authorizer, resolve_audit
from ..governance.policy import AuthorizerLike
from ..resilience import Breaker, CancelToken, forksafety
from ..transports import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_RECONNECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STARTUP_TIMEOUT,
    EventStream,
    GatewayTransport,
    LocalServer,
    LocalServerPool,
    RemoteServer,
    RemoteServerPool,
)
from ..wire import DEFAULT_MAX_EVENT_BYTES
from . import _discovery as discovery
from . import _servers as servers
from ._governance_stage import Governance
from ._invocation import ProgressCallback
from ._options import Options
from ._pipeline import Pipeline
from ._resources import Resources
from ._streaming import open_stream
from ._submit import invoke_many as submit_many
from ._submit import submit
from ._view import view_of

__all__ = ["GatewayClient"]


class GatewayClient:
    """A blocking, thread-safe client for MCP tool calls through the SARK gateway.

    :param base_url: the gateway, ``http(s)://host[:port]``; default ``$SARK_GATEWAY_URL``.
    :param api_key: the application credential sent as ``X-API-Key``; default
        ``$SARK_API_KEY``; never logged or shown in reprs.
    :param timeout: seconds for a whole call (a number), or :class:`Timeouts` for connect,
        read and deadline separately. Each call may override it.
    :param retry: the :class:`RetryPolicy` (3 attempts, full-jitter backoff).
    :param breaker: the :class:`BreakerPolicy` (open after 5 failures, probe after 30 s).
    :param max_workers: threads for :meth:`submit`/:meth:`invoke_many`, and the most
        connections open to the gateway at once: 1 to 1,024 (``MAX_WORKERS``).
    :param transport_mode: ``"auto"`` (default) or a single allowed transport.
    :param idempotency_keys: send an auto-generated ``Idempotency-Key`` with every invocation
        (the gateway deduplicates by it), which makes tool calls safe to retry. With False,
        only calls given a key or to tools annotated read-only/idempotent are retried.
    :param verify: TLS verification (a bool or the path of an existing CA bundle file or
        directory); default: the ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` environment, else on.
    :param max_response_bytes: the largest response body accepted, 1 byte to 1 GiB.
    :param local_servers: ``{"name": ["python", "server.py"]}`` (or ``{"name": {"command":
        [...], "env": {...}, "cwd": ...}}``): MCP servers run as child processes and called
        over stdio through the same pipeline as gateway servers, started on first use and
        restarted after a crash within ``restart`` (a :class:`RestartPolicy`).
    :param startup_timeout: seconds a local server may take to complete the MCP handshake.
    :param on_notification: ``callback(server, method, params)`` for notifications of local
        and remote servers (log messages, list changes); it runs on a reader thread: keep it
        short.
    :param authorizer: asked before every tool call, gateway or local: an
        :class:`OPAAuthorizer`, :class:`SarkAuthorizer` or a callable ``(AuthorizationInput)
        -> Decision | Mapping``; a deny raises :class:`AuthorizationDenied`, nothing is sent.
        Costs two discovery requests per server a minute (``docs/gateway/AUTHORIZATION.md``).
    :param audit: where one audit event per operation goes: an
        :class:`~sark_sync.governance.Auditor`, a sink or a callable ``func(event)``, a list of
        them, ``[]`` for none; None (the default) logs JSON lines on the ``sark_sync.audit``
        logger at INFO (free while it is off). :meth:`close` closes an auditor it built and only
        flushes the caller's sinks or ``Auditor`` (``docs/gateway/AUDIT.md``).
    :param transport: the gateway transport (a :class:`~sark_sync.transports.GatewayTransport`)
        instead of HTTP to ``base_url``, e.g. :class:`sark_sync.testing.MockTransport` in a unit
        test; every stage above it runs unchanged, and :meth:`close` closes it.
    :param remote_servers: ``{"name": url}`` or ``{"name": {"url": ..., "auth": ...}}`` (the
        options of :meth:`connect_remote_server`): MCP servers by URL, connected on first use.

    >>> client = GatewayClient("http://127.0.0.1:8080", api_key="k")  # doctest: +SKIP
    >>> with client:                                                  # doctest: +SKIP
    ...     client.invoke_tool("demo", "echo", {"text": "hi"}).text
    'hi'

    Raises :class:`ConfigurationError` for invalid settings, naming the argument and the rule
    (never quoting a credential, nor a URL that may carry one). Every limit is a named
    constant of :mod:`sark_sync._config`: durations up to ``MAX_SECONDS`` (24 h), and so on.

    Every call runs one pipeline: deadline -> authorize -> breaker -> retry -> transport ->
    audit, in that order for every transport.
    """

    def __init__(
        self, base_url: str | None = None, *, api_key: str | None = None,
        timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None, max_workers: int = 8,
        transport_mode: str = "auto", idempotency_keys: bool = True,
        verify: bool | str | None = None, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        local_servers: Mapping[str, Any] | None = None, restart: RestartPolicy | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        on_notification: Callable[[str, str, Mapping[str, Any]], None] | None = None,
        authorizer: AuthorizerLike | None = None, audit: object = None,
        transport: GatewayTransport | None = None,
        remote_servers: Mapping[str, Any] | None = None,
    ) -> None:
        options = Options.check(
            base_url, api_key=api_key, timeout=timeout, retry=retry, breaker=breaker,
            restart=restart, max_workers=max_workers, transport_mode=transport_mode,
            idempotency_keys=idempotency_keys, verify=verify,
            max_response_bytes=max_response_bytes, transport=transport)
        self._options = options
        self.base_url, self.timeouts, self.retry = options.base_url, options.timeouts, options.retry
        self.breaker, self.restart = options.breaker, options.restart
        self.max_workers, self.transport_mode = options.max_workers, options.transport_mode
        self.idempotency_keys, self._api_key = options.idempotency_keys, options.api_key
        self._custom_transport = transport is not None
        self._parent: GatewayClient | None = None  # the client of a view (with_options)
        # Checked before the auditor exists: a bad option must not leave a sink behind.
        local = LocalServerPool(local_servers, options.restart, startup_timeout=startup_timeout,
                                on_notification=on_notification)
        remote = RemoteServerPool(remote_servers, on_notification=on_notification)
        pipeline: Pipeline
        self._governance = Governance(authorizer, metadata=lambda server, is_local, deadline: (
            discovery.server_metadata(pipeline, server, is_local, deadline)))
        self._auditor, self._owns_auditor = resolve_audit(audit)
        if self._auditor is not None:
            self._governance.audit_hook = AuditRecorder(self._auditor)
        self._resources = Resources(local, remote)
        gateway = options.http_transport if transport is None else (lambda: transport)
        pipeline = self._pipeline = Pipeline(
            options.base_url, timeouts=options.timeouts, retry=options.retry,
            breaker=options.breaker, max_workers=options.max_workers,
            transport_mode=options.transport_mode, idempotency_keys=options.idempotency_keys,
            resources=self._resources, governance=self._governance, gateway=gateway)
        self._finalizer = weakref.finalize(self, self._resources.close)
        forksafety.register(self)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._pipeline.closed

    @property
    def authorizer(self) -> Authorizer | None:
        """The authorizer asked before each tool call (a callable is wrapped in one)."""
        return self._governance.authorizer

    @property
    def auditor(self) -> Auditor | None:
        """Where the audit events go (None with ``audit=[]``)."""
        return self._auditor

    def close(self) -> None:
        """Release every connection, thread and server; idempotent. In-flight submitted calls
        finish within their deadlines; later calls raise :class:`ClientClosedError`."""
        self._pipeline.closed = True
        if self._parent is None:  # a view owns nothing: what it uses is its client's
            self._finalizer()
            self._governance.close(self._auditor, owns_auditor=self._owns_auditor)

    def with_options(self, *, timeout: float | Timeouts | None = None,
                     retry: RetryPolicy | None = None, headers: Mapping[str, str] | None = None
                     ) -> GatewayClient:
        """A view of this client with other defaults (None keeps this client's; ``headers`` are
        added to its own) sharing its connections, pools, breakers and servers: closing it
        leaves this client open, closing this client closes it (see ``CLIENT_USAGE.md``)."""
        return view_of(self, timeout=timeout, retry=retry, headers=headers)

    def __enter__(self) -> GatewayClient:
        self._pipeline.check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "[secure]" if self._api_key is not None else "None"
        state = "closed" if self.closed else "open"
        return f"<GatewayClient {self.base_url} api_key={key} mode={self.transport_mode} {state}>"

    def _after_fork_in_child(self) -> None:
        self._resources.drop_after_fork()

    def _state(self) -> Resources:
        return self._pipeline.state()

    def breaker_for(self, server: str | None = None) -> Breaker:
        """The breaker guarding ``server`` (None: the gateway's discovery and health)."""
        return self._pipeline.breaker(None if server is None else validate_name(server, "server"))

    # -- discovery -------------------------------------------------------------------------------

    def health(self, *, timeout: float | Timeouts | None = None) -> Health:
        """``GET /health``. An unhealthy gateway (503 with a health body) is a result, not an
        error, and is not retried; a 503 without one raises :class:`ServiceUnavailableError`."""
        deadline = self._pipeline.deadline(timeout)
        audit = self._pipeline.operation("health", "health")
        with audit or nullcontext():
            return discovery.health(self._pipeline, deadline, audit)

    def list_servers(self, *, page: int = 1, page_size: int = 100,
                     timeout: float | Timeouts | None = None) -> list[ServerInfo]:
        """One page of registered servers (``page`` 1..1,000,000, ``page_size`` 1..1000)."""
        page, page_size = validate_page(page, page_size)
        deadline = self._pipeline.deadline(timeout)
        audit = self._pipeline.operation("list_servers")
        with audit or nullcontext():
            found, _, _ = discovery.page(
                self._pipeline, discovery.SERVERS, "servers", ServerInfo.from_dict,
                (page - 1) * page_size, page_size, deadline, audit=audit)
        return found

    def iter_servers(self, *, page_size: int = 100, timeout: float | Timeouts | None = None
                     ) -> Iterator[ServerInfo]:
        """Every registered server, fetched page by page (each page has its own deadline)."""
        _, page_size = validate_page(1, page_size)
        timeouts = self._pipeline.call_timeouts(timeout)  # checked now, not at the first page
        audit = self._pipeline.operation("iter_servers", lazy=True)
        return discovery.iter_pages(self._pipeline, None, page_size, timeouts, audit, tools=False)

    def get_server(self, name: str, *, timeout: float | Timeouts | None = None) -> ServerInfo:
        """One server by name; :class:`NotFoundError` if the gateway does not know it."""
        name = validate_name(name, "server")
        deadline = self._pipeline.deadline(timeout)
        audit = self._pipeline.operation("get_server", server=name)
        with audit or nullcontext():
            return discovery.get_server(self._pipeline, name, deadline, audit=audit)

    def list_tools(self, server: str | None = None, *, page: int = 1, page_size: int = 100,
                   timeout: float | Timeouts | None = None) -> list[ToolInfo]:
        """One page of tools, of one server or of all gateway servers. For a local server the
        page is cut from its whole ``tools/list``."""
        server = None if server is None else validate_name(server, "server")
        page, page_size = validate_page(page, page_size)
        return discovery.list_tools(self._pipeline, server, page, page_size,
                                    self._pipeline.deadline(timeout))

    def iter_tools(self, server: str | None = None, *, page_size: int = 100,
                   timeout: float | Timeouts | None = None) -> Iterator[ToolInfo]:
        """Every tool, of one server or of all gateway servers, fetched page by page."""
        server = None if server is None else validate_name(server, "server")
        _, page_size = validate_page(1, page_size)
        timeouts = self._pipeline.call_timeouts(timeout)  # checked now, not at the first page
        return discovery.iter_tools(self._pipeline, server, page_size, timeouts)

    # -- tool calls ------------------------------------------------------------------------------

    def invoke_tool(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None = None, *,
        user_token: str | None = None, timeout: float | Timeouts | None = None,
        idempotency_key: str | None = None, principal: Principal | None = None,
        progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ToolResult:
        """Call ``tool`` on ``server`` and return its :class:`ToolResult`.

        :param parameters: the tool's arguments, a JSON-serialisable mapping.
        :param user_token: the end user's JWT, sent as ``Authorization: Bearer``.
        :param timeout: this call's deadline (seconds or :class:`Timeouts`).
        :param idempotency_key: deduplicates retries at the gateway; generated when absent
            (unless the client was made with ``idempotency_keys=False``).
        :param principal: who the call is for, for the client's authorizer; by default read
            (unverified, advisory) from ``user_token``'s claims ``sub``, ``roles``, ``teams``.
        :param progress: ``progress(progress, total, message)`` for each progress notification
            of an MCP server's tool, in order, off the reader thread, all before the call
            returns; never called for a gateway server (SARK's API reports no progress).
        :param cancel: a :class:`CancelToken`: its ``cancel()`` frees this call at once with
            :class:`CallCancelled` (an MCP server is told; a gateway call is not withdrawn once
            sent). See ``docs/gateway/CLIENT_USAGE.md``.
        :param headers: extra HTTP headers of the gateway request or remote MCP ``tools/call``
            (never logged); refused for a stdio server and for those the client sets.

        A tool error is a result (``is_error``); call ``raise_for_error()`` to raise it.
        Raises :class:`ValidationError` for bad arguments (before any request; a malformed
        ``user_token`` too when there is an authorizer), :class:`AuthorizationDenied`,
        :class:`AuthorizationUnavailable`, :class:`CircuitOpenError`,
        :class:`DeadlineExceeded`, :class:`CallCancelled`, or another :class:`GatewayError`.
        """
        deadline = self._pipeline.deadline(timeout)
        call = self._pipeline.prepare(server, tool, parameters, user_token, idempotency_key,
                                      principal, progress, cancel, headers)
        return self._pipeline.invoke(call, deadline, user_token)

    def submit(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None = None, *,
        user_token: str | None = None, timeout: float | Timeouts | None = None,
        idempotency_key: str | None = None, principal: Principal | None = None,
        progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Future[ToolResult]:
        """Run :meth:`invoke_tool` on the client's thread pool and return its future.

        Arguments are validated now (a bad name raises here, not from the future). The
        deadline starts now too, so time spent queued counts against it. ``cancel()`` works
        while the call runs too: a call to an MCP server (by URL or local) is abandoned at once
        and the server told (``notifications/cancelled``), the audit recording an ``error``
        (``CallCancelled``); a running gateway call cannot be cancelled (False), as before.
        ``cancel=token`` cancels the future as ``cancel()`` does; ``progress`` and ``headers``
        as :meth:`invoke_tool`'s.
        """
        deadline = self._pipeline.deadline(timeout)
        call = self._pipeline.prepare(server, tool, parameters, user_token, idempotency_key,
                                      principal, progress, cancel, headers)
        return submit(self._pipeline.executor(), call.local, self._pipeline.invoke, call,
                      deadline, user_token, cancel=call.cancel)

    def invoke_many(self, calls: Iterable[ToolCall], *, return_exceptions: bool = False
                    ) -> list[Any]:
        """Run many calls on the thread pool (at most ``max_workers`` at once); results come
        back in the order of ``calls``.

        Every call is validated before any is sent: one bad item (a non-ToolCall included)
        raises :class:`ValidationError` and nothing runs. With ``return_exceptions=True`` a
        failed call's exception takes its place in the list; otherwise, once every call has
        finished, the first failure (in the order of ``calls``) is raised. Each call's
        deadline starts now, so waiting is bounded.
        """
        return submit_many(self._pipeline, calls, return_exceptions)

    # -- event streams ---------------------------------------------------------------------------

    def stream_events(
        self, types: Iterable[str] | str | None = None, last_event_id: str | int | None = None,
        *, user_token: str | None = None, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> EventStream:
        """Stream the gateway's events (``GET /api/v1/events``), reconnecting as needed.

        Connects before returning, so no event published from now on is missed; iterate the
        returned :class:`~sark_sync.transports.sse.EventStream` (a context manager; ``close()``
        may be called from any thread) to get :class:`~sark_sync.Event` objects.

        :param types: event types wanted (e.g. ``["tool_invoked"]``, or one type as a str);
            the gateway filters, and so does the client. ``stream_reset`` always comes through.
        :param last_event_id: resume after this id: the gateway replays what followed it.
            It travels in ``Last-Event-ID`` as its UTF-8 bytes (as browsers send it), without
            surrounding spaces; the stream then resumes from each event id it receives, except
            one no HTTP header can carry (control characters, over 4 KiB): a reconnect then
            resumes from the last id that can, so events are replayed rather than lost.
        :param idle_timeout: seconds without a byte (events or ``: ping``) before the
            connection counts as stalled and is replaced.
        :param max_reconnects: consecutive failed attempts before giving up with the last
            error; the count restarts at every event received.
        :param max_event_bytes: larger events end the stream with :class:`ProtocolError`.

        Data that is not JSON comes as text; see ``docs/gateway/SSE_TRANSPORT.md``. Raises
        4xx errors at once (here or while iterating), the last connection error after
        ``max_reconnects`` failed attempts in a row, :class:`ValidationError` before anything
        is sent, :class:`TransportNotAvailableError` for a client given its own ``transport``.
        """
        return open_stream(
            self._pipeline, api_key=self._api_key, verify=self._options.verify, types=types,
            last_event_id=last_event_id, user_token=user_token, idle_timeout=idle_timeout,
            max_reconnects=max_reconnects, max_event_bytes=max_event_bytes,
            custom_transport=self._custom_transport)

    # -- local servers (stdio) -------------------------------------------------------------------

    def connect_local_server(
        self, command: list[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
        name: str | None = None, inherit_env: bool = False, timeout: float | None = None,
        startup_timeout: float | None = None, on_log: Callable[[Any], None] | None = None,
        on_notification: Callable[[str, Mapping[str, Any]], None] | None = None, **handlers: Any,
    ) -> LocalServer:
        """Start a local MCP server over stdio and return its session (a context manager);
        ``invoke_tool(session.name, ...)`` reaches it through the pipeline, and the client's
        ``close()`` ends it if the caller has not. Arguments as :class:`LocalServer`'s."""
        return servers.connect_local(
            self._pipeline, command, env=env, cwd=cwd, name=name, inherit_env=inherit_env,
            timeout=self.timeouts.deadline if timeout is None else timeout, on_log=on_log,
            startup_timeout=startup_timeout, on_notification=on_notification, handlers=handlers)

    def connect_remote_server(
        self, url: str, *, name: str | None = None, headers: Mapping[str, str] | None = None,
        auth: Any = None, transport: str = "auto", timeout: float | None = None,
        protocol_version: str = "auto", on_log: Callable[[Any], None] | None = None,
        on_notification: Callable[[str, Mapping[str, Any]], None] | None = None, **handlers: Any,
    ) -> RemoteServer:
        """Connect to the MCP server at ``url`` and return its session, as
        :meth:`connect_local_server` does; ``timeout`` (default: the client's deadline)
        bounds the connection and each request. ``auth`` is a ``(user, password)`` tuple or a
        ``requests.auth.AuthBase`` (refreshed once on 401); the rest as ``RemoteServer``'s."""
        return servers.connect_remote(
            self._pipeline, url, name=name, headers=headers, auth=auth, transport=transport,
            timeout=self.timeouts.deadline if timeout is None else timeout, on_log=on_log,
            protocol_version=protocol_version, on_notification=on_notification, handlers=handlers)
