"""GatewayClient: the operations, transport selection and the call pipeline.

Every operation runs the same pipeline (DESIGN §5; tool calls are authorized first when the
client has an authorizer, see :mod:`._governed`)::

    deadline -> validate -> [authorize] -> breaker(gateway, server) -> transport -> result

The deadline is created when the call is made (for :meth:`GatewayClient.submit`, when it is
submitted) and bounds everything after it. Arguments are validated before anything touches the
network, so a bad name never becomes a request. One client is meant to be shared: by every
thread of a process, and across ``fork()`` (a forked child rebuilds what it needs lazily).
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .._config import (
    MAX_RESPONSE_BYTES,
    MAX_WORKERS,
    BreakerPolicy,
    RestartPolicy,
    RetryPolicy,
    Timeouts,
    check_count,
    resolve_api_key,
    resolve_base_url,
)
from .._deadline import Deadline
from .._exceptions import (
    ClientClosedError,
    ConfigurationError,
    GatewayError,
    TransportNotAvailableError,
    ValidationError,
)
from .._models import ToolResult
from .._redact import Secret
from .._useragent import user_agent
from .._validation import describe, validate_name
from ..governance._audit_recorder import AuditRecorder, Operation, flush_for_close, resolve_audit
from ..governance.audit import Auditor
from ..governance.policy import Authorizer, AuthorizerLike
from ..resilience import _forksafety
from ..resilience._breaker import Breaker
from ..transports._mcp_pool import LocalServerPool
from ..transports._mcp_session import DEFAULT_STARTUP_TIMEOUT, LocalServer
from ..transports.http import DEFAULT_MAX_RESPONSE_BYTES, HTTPTransport, Response
from ._discovery import DiscoveryMixin
from ._governance_stage import Governance
from ._invoking import InvocationMixin
from ._resources import Resources
from ._streaming import StreamingMixin

__all__ = ["GatewayClient"]

log = logging.getLogger("sark_sync")

T = TypeVar("T")

#: Transport modes: "auto" picks per operation; the others allow only that transport.
TRANSPORT_MODES = ("auto", "http", "sse", "stdio")


class GatewayClient(DiscoveryMixin, InvocationMixin, StreamingMixin):
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
        servers (log messages, list changes); it runs on a reader thread: keep it short.
    :param authorizer: asked before every tool call, gateway or local: an
        :class:`OPAAuthorizer`, :class:`SarkAuthorizer` or a callable ``(AuthorizationInput)
        -> Decision | Mapping``; a deny raises :class:`AuthorizationDenied`, nothing is sent.
        Costs two discovery requests per server a minute (see :mod:`sark_sync._governed`).
    :param audit: where one audit event per operation goes (DESIGN §7: each tool call, each
        discovery call or listing walked, ``health()``, each event stream opened): an
        :class:`~sark_sync.governance.Auditor`, a sink (``LoggingSink``, ``JSONLinesSink``,
        ``HTTPSink``, ``CallableSink`` or a callable ``func(event)``) or a list of them; ``[]``
        for none. None (the default) logs JSON lines on the ``sark_sync.audit`` logger at INFO,
        and costs nothing while that logger is not enabled for INFO. Ownership: an auditor
        the client built (None, a sink, a list) is closed by :meth:`close`, which flushes
        the caller's sinks but never closes them; an ``Auditor`` passed in is the caller's to
        close (:meth:`close` only flushes it).

    >>> client = GatewayClient("http://127.0.0.1:8080", api_key="k")  # doctest: +SKIP
    >>> with client:                                                  # doctest: +SKIP
    ...     client.invoke_tool("demo", "echo", {"text": "hi"}).text
    'hi'

    Raises :class:`ConfigurationError` for invalid settings, naming the argument and the rule
    (never quoting a credential, nor a URL that may carry one). Every limit is a named
    constant of :mod:`sark_sync._config`: durations up to ``MAX_SECONDS`` (24 h), and so on.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | Timeouts | None = None,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        max_workers: int = 8,
        transport_mode: str = "auto",
        idempotency_keys: bool = True,
        verify: bool | str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        local_servers: Mapping[str, Any] | None = None,
        restart: RestartPolicy | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        on_notification: Callable[[str, str, Mapping[str, Any]], None] | None = None,
        authorizer: AuthorizerLike | None = None,
        audit: object = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        key = resolve_api_key(api_key)
        self._api_key = Secret(key) if key is not None else None
        self.timeouts = Timeouts.coerce(timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self.breaker = breaker if breaker is not None else BreakerPolicy()
        if not isinstance(self.retry, RetryPolicy) or not isinstance(self.breaker, BreakerPolicy):
            raise ConfigurationError("retry and breaker must be RetryPolicy and BreakerPolicy")
        self.max_workers = check_count("max_workers", max_workers, 1, MAX_WORKERS)
        if not isinstance(transport_mode, str) or transport_mode not in TRANSPORT_MODES:
            shown = repr(transport_mode[:32]) if isinstance(transport_mode, str) else \
                describe(transport_mode)
            raise ConfigurationError(
                f"transport_mode must be one of {', '.join(TRANSPORT_MODES)}: {shown}"
            )
        if not isinstance(idempotency_keys, bool):
            raise ConfigurationError(
                f"idempotency_keys must be a bool, not {type(idempotency_keys).__name__}")
        self.transport_mode = str.__str__(transport_mode)
        self.idempotency_keys = idempotency_keys
        self._verify = _check_verify(verify)
        self._max_response_bytes = check_count("max_response_bytes", max_response_bytes, 1,
                                               MAX_RESPONSE_BYTES)
        self._retry_safe_tools: dict[tuple[str, str], bool] = {}
        self._closed = False
        self.restart = restart if restart is not None else RestartPolicy()
        # Checked before the auditor exists: a bad option must not leave a sink behind.
        local = LocalServerPool(local_servers, self.restart, startup_timeout=startup_timeout,
                                on_notification=on_notification)
        self._governance = Governance(authorizer)
        self._auditor, self._owns_auditor = resolve_audit(audit)
        if self._auditor is not None:
            self._governance.audit_hook = AuditRecorder(self._auditor)
        self._resources = Resources(local)
        self._finalizer = weakref.finalize(self, self._resources.close)
        _forksafety.register(self)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def authorizer(self) -> Authorizer | None:
        """The authorizer asked before each tool call (a callable is wrapped in one)."""
        return self._governance.authorizer

    def close(self) -> None:
        """Release every connection and thread. Idempotent; later calls raise
        :class:`ClientClosedError`. In-flight submitted calls finish within their deadlines."""
        self._closed = True
        self._finalizer()
        self._governance.close()
        auditor = self._auditor
        if auditor is not None:
            if self._owns_auditor:
                auditor.close()
            else:
                flush_for_close(auditor)

    @property
    def auditor(self) -> Auditor | None:
        """Where the audit events go (None with ``audit=[]``)."""
        return self._auditor

    def __enter__(self) -> GatewayClient:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "[secure]" if self._api_key is not None else "None"
        state = "closed" if self._closed else "open"
        return f"<GatewayClient {self.base_url} api_key={key} mode={self.transport_mode} {state}>"

    def _after_fork_in_child(self) -> None:
        self._resources.drop_after_fork()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this GatewayClient is closed")

    def _state(self) -> Resources:
        resources = self._resources
        if resources.pid != os.getpid():  # a fork the at-fork hook did not see
            resources.drop_after_fork()
        return resources

    def _require(self, transport: str) -> None:
        self._check_open()
        if self.transport_mode not in ("auto", transport):
            raise TransportNotAvailableError(
                f"this operation needs the {transport} transport, but transport_mode is "
                f"{self.transport_mode!r}"
            )

    def _local(self, server: str | None) -> LocalServerPool | None:
        """The local server pool if ``server`` is one of its servers (stdio), else None."""
        local = self._state().local
        if server is not None and server in local:
            self._require("stdio")
            return local
        return None

    def _http(self) -> HTTPTransport:
        self._require("http")
        return self._state().http(lambda: HTTPTransport(
            self.base_url, api_key=self._api_key, timeouts=self.timeouts, retry=self.retry,
            max_workers=self.max_workers, user_agent=user_agent(), verify=self._verify,
            max_response_bytes=self._max_response_bytes,
        ), self._check_open)

    def _executor(self) -> ThreadPoolExecutor:
        self._check_open()
        return self._state().executor_for(self.max_workers, self._check_open)

    def breaker_for(self, server: str | None = None) -> Breaker:
        """The breaker guarding ``server`` on this gateway (None: discovery and health), or
        the local server of that name. :class:`ValidationError` for an invalid name."""
        return self._breaker(None if server is None else validate_name(server, "server"))

    def _breaker(self, server: str | None) -> Breaker:
        resources = self._state()
        if server is not None and server in resources.local:
            name = f"local:{server}"
        else:
            name = self.base_url if server is None else f"{self.base_url}/{server}"
        return resources.breaker(name, self.breaker)

    # -- the pipeline ------------------------------------------------------------------------

    def _timeouts(self, timeout: float | Timeouts | None) -> Timeouts:
        """A call's ``timeout`` argument checked: :class:`ValidationError` naming it."""
        if timeout is None:
            return self.timeouts
        try:
            return Timeouts.coerce(timeout)
        except ConfigurationError as exc:
            raise ValidationError(exc.message) from None

    def _deadline(self, timeout: float | Timeouts | None) -> Deadline:
        timeouts = self._timeouts(timeout)
        return Deadline(timeouts.deadline, timeouts=timeouts)

    def _send(
        self, method: str, path: str, *, server: str | None, deadline: Deadline,
        idempotent: bool = True, params: Mapping[str, Any] | None = None,
        body: bytes | None = None, headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset(), tool: str | None = None,
        audit: Operation | None = None,
    ) -> Response:
        return self._exchange(
            method, path, _as_is, server=server, deadline=deadline, idempotent=idempotent,
            params=params, body=body, headers=headers, accept_statuses=accept_statuses,
            tool=tool, audit=audit)

    def _exchange(
        self, method: str, path: str, parse: Callable[[Response], T], *, server: str | None,
        deadline: Deadline, idempotent: bool = True, params: Mapping[str, Any] | None = None,
        body: bytes | None = None, headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset(), tool: str | None = None,
        audit: Operation | None = None,
    ) -> T:
        """One request through the breaker, with ``parse`` run on the response inside it,
        so that a malformed answer (``ProtocolError``) counts as the server's failure."""
        transport = self._http()
        send_headers = {"X-Request-ID": str(uuid.uuid4())}
        if headers:
            send_headers.update(headers)

        def attempt() -> T:
            if audit is not None:
                audit.sent(send_headers["X-Request-ID"])
            response = transport.request(
                method, path, deadline=deadline, idempotent=idempotent, params=params,
                body=body, headers=send_headers, accept_statuses=accept_statuses,
                timeouts=deadline.timeouts,
            )
            if audit is not None:
                audit.received(response)
            return parse(response)

        try:
            if not self.breaker.enabled:
                return attempt()
            return self._breaker(server).call(attempt)
        except GatewayError as exc:
            exc._with(server=server, tool=tool)
            raise

    def _guard(self, server: str) -> Callable[[Callable[[], ToolResult]], ToolResult]:
        if not self.breaker.enabled:
            return lambda attempt: attempt()
        return self._breaker(server).call

    # -- local servers (stdio) -----------------------------------------------------------------

    def connect_local_server(
        self, command: list[str], *, env: Mapping[str, str] | None = None,
        cwd: str | None = None, name: str | None = None, inherit_env: bool = False,
        timeout: float | None = None, startup_timeout: float | None = None,
        on_notification: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> LocalServer:
        """Start a local MCP server over stdio and return its session (a context manager).

        While it runs, ``invoke_tool(session.name, ...)`` reaches it through the client's
        pipeline (deadline, breaker, retries); the client closes it on ``close()`` if the
        caller has not. See :class:`LocalServer` for the arguments; ``timeout`` defaults to the
        client's deadline.
        """
        self._require("stdio")
        return self._state().local.connect(
            command, env=env, cwd=cwd, name=name, inherit_env=inherit_env,
            timeout=self.timeouts.deadline if timeout is None else timeout,
            startup_timeout=startup_timeout, on_notification=on_notification,
        )


def _as_is(response: Response) -> Response:
    return response


def _check_verify(verify: object) -> bool | str | None:
    """``verify`` as given if it is None, a bool, or the path of an existing CA bundle file
    or directory (requests would otherwise fail at the first call, with an OSError)."""
    if verify is None or isinstance(verify, bool):
        return verify
    if isinstance(verify, os.PathLike):
        verify = os.fspath(verify)
    if not isinstance(verify, str):
        raise ConfigurationError(
            f"verify must be a bool or a CA bundle path, not {type(verify).__name__}")
    path = str.__str__(verify)
    if not path or "\x00" in path or not os.path.exists(path):
        raise ConfigurationError("verify is not the path of an existing CA bundle file or "
                                 "directory")
    return path

