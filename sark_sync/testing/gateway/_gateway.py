"""LocalGateway: the SARK Gateway API v1 served on loopback, for tests and demos.

Design: a :class:`LocalGateway` owns one :class:`~._server.GatewayHTTPServer`, one accept
thread and one thread per connection; the catalogue (:class:`~._registry.Registry`), the
faults, the request log and the idempotency store are shared with the handler threads and are
thread-safe, so a test may change them while clients run.

Lifecycle contract: :meth:`LocalGateway.start` binds (port 0 picks a free port, so
:attr:`LocalGateway.url` is known as soon as ``start()`` returns) and starts serving; a
gateway starts once. :meth:`LocalGateway.stop` is idempotent and bounded: it stops accepting,
closes the listening socket, wakes every wait (fault delays, slow bodies, idempotency waits),
shuts down every connection, idle keep-alive ones included, and joins every thread it started
within ``stop_timeout`` seconds. A thread stuck in a user's tool function cannot be
interrupted; it is reported in a warning log and left as a daemon.

Events (``GET /api/v1/events``, docs/gateway/SSE_TRANSPORT.md) go through one
:class:`~._events.EventLog`; ``stop()`` closes it, which ends every stream.

Stdio MCP servers (:mod:`..stdio._hosting`) start, and list their tools, before the gateway
serves, so its catalogue is complete when ``url`` is known; ``stop()`` closes them before the
HTTP side, which fails their calls in flight at once (502) instead of leaving handler threads
waiting for a server that is going away.

It is a test double and must never pass for production: it binds loopback addresses only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, TypeVar

from ..policy import _jwt
from ..policy._enforcement import Enforcement, resolve_policy
from ..stdio._hosting import CALL_TIMEOUT, STARTUP_TIMEOUT, StdioHosting
from ._api import Api, ApiConfig
from ._catalogue import Catalogue
from ._event_stream import EVENT_RETRY, PING_INTERVAL, StreamSettings
from ._events import DEFAULT_BUFFER, EventLog
from ._faults import Fault, FaultSet
from ._handler import HandlerContext
from ._idempotency import IdempotencyStore
from ._recording import RecordedRequest, RequestLog
from ._registry import Registry
from ._server import GatewayHTTPServer, loopback
from ._tool_calls import ToolFunction

__all__ = ["LocalGateway"]

logger = logging.getLogger("sark_sync.testing")

F = TypeVar("F", bound=Callable[..., object])

#: How often the accept loop checks for shutdown; bounds how long stop() waits for it.
POLL_INTERVAL = 0.05
#: Seconds stop() waits for all threads to finish.
STOP_TIMEOUT = 5.0
#: Seconds a repeated Idempotency-Key waits for the first request to finish.
IDEMPOTENCY_WAIT = 30.0
#: Seconds an idle keep-alive connection is kept open (None: until stop()).
IDLE_TIMEOUT = 120.0


class LocalGateway:
    """An embedded SARK gateway on 127.0.0.1, like stripe-mock or moto for sark_sync.

    :param api_keys: accepted ``X-API-Key`` values; empty: no key required.
    :param jwt_secret: HS256 secret of user JWTs (``Authorization: Bearer``).
    :param require_user_token: when true, POST /api/v1/invoke needs a valid user JWT.
    :param host: a loopback address or ``"localhost"``; anything else raises ``ValueError``.
    :param port: 0 (default) picks a free port.
    :param max_request_bytes: larger request bodies are answered 413.
    :param version: reported by ``/health``.
    :param idempotency_wait: seconds a repeated key waits for the first request (then 409).
    :param idle_timeout: seconds an idle keep-alive connection stays open (None: forever).
    :param stop_timeout: seconds :meth:`stop` waits for threads.
    :param event_buffer: events kept for replay to reconnecting streams (>= 10,000).
    :param first_event_id: the first event id (>= 1); give a restarted gateway the next id of
        the previous one for its clients to resume, or leave 1 to test ``stream_reset``.
    :param ping_interval: seconds of silence before a stream gets a ``: ping`` (> 0).
    :param event_retry: seconds sent to stream clients as ``retry: <ms>`` (>= 0).
    :param event_framing: ``"chunked"`` (Transfer-Encoding: chunked) or ``"close"`` (the body
        ends when the connection closes). The event wire format is in :mod:`._events`.
    :param policy: who authorizes each invoke (:mod:`..policy._enforcement`): None (the
        default: every authenticated call runs), ``"builtin"`` (the shipped gateway.rego's
        rules, built in), an OPA base URL (``"http://127.0.0.1:8181"``: asks
        ``sark/gateway/decision``), or an authorizer or decision function. The principal is
        the verified user JWT's ``sub``, ``roles`` and ``teams``; a deny answers 403
        ``policy_denied`` and publishes ``authorization_denied``; filtered parameters are what
        the tool receives; a policy that cannot decide answers 503.

    Example::

        with LocalGateway(api_keys=("k",)) as gw:
            gw.add_server("demo")
            gw.add_tool("demo", "echo", lambda params: params)
            requests.post(gw.url + "/api/v1/invoke", headers={"X-API-Key": "k"},
                          json={"server": "demo", "tool": "echo", "parameters": {"a": 1}})
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("test-key",),
        jwt_secret: str = "local-dev-secret",
        require_user_token: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        max_request_bytes: int = 1_048_576,
        version: str = "0.1.0-local",
        *,
        idempotency_wait: float = IDEMPOTENCY_WAIT,
        idle_timeout: float | None = IDLE_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        event_buffer: int = DEFAULT_BUFFER,
        first_event_id: int = 1,
        ping_interval: float = PING_INTERVAL,
        event_retry: float = EVENT_RETRY,
        event_framing: str = "chunked",
        policy: object = None,
    ) -> None:
        keys = frozenset([api_keys] if isinstance(api_keys, str) else api_keys)
        if any(not key for key in keys):
            raise ValueError("API keys must be non-empty strings")
        if not jwt_secret:
            raise ValueError("jwt_secret must not be empty")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("port must be an integer in 0..65535")
        if max_request_bytes < 0:
            raise ValueError("max_request_bytes must be >= 0")
        self._bind_host, self._family = loopback(host)
        self._port = port
        self._jwt_secret = jwt_secret
        self._stop_timeout = stop_timeout
        self._registry = Registry()
        self._faults = FaultSet()
        self._log = RequestLog()
        self._store = IdempotencyStore()
        self._hosting = StdioHosting()
        self._events = EventLog(event_buffer, first_event_id)
        self._catalogue = Catalogue(self._registry, self._hosting, self._events)
        self._stopping = threading.Event()
        config = ApiConfig(keys, jwt_secret, require_user_token, version, idempotency_wait)
        authorizer = resolve_policy(policy)
        self._enforcement = (
            None if authorizer is None else Enforcement(authorizer, self._events))
        self._api = Api(config, self._registry, self._store, self._events, self._enforcement)
        self._context = HandlerContext(
            api=self._api,
            events=self._events,
            stream=StreamSettings(ping_interval, event_retry, event_framing),
            faults=self._faults,
            log=self._log,
            stopping=self._stopping,
            max_request_bytes=max_request_bytes,
            version=version,
            idle_timeout=idle_timeout,
        )
        self._lifecycle = threading.Lock()
        self._state = "new"
        self._server: GatewayHTTPServer | None = None
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalGateway:
        """Start the stdio servers, bind and serve in background threads; return ``self``.

        Raises ``RuntimeError`` if the gateway was already started, ``OSError`` if the address
        cannot be bound, and what :class:`~sark_sync.LocalServer` raises if a stdio server
        cannot start (:class:`~sark_sync.ProcessStartError`, ...); nothing is left running then.
        """
        with self._lifecycle:
            if self._state != "new":
                raise RuntimeError("a LocalGateway can be started only once")
            self._hosting.start_all()
            try:
                server = GatewayHTTPServer(
                    (self._bind_host, self._port), self._family, self._context
                )
            except BaseException:
                self._hosting.close_all()
                raise
            thread = server.serve_in_thread(POLL_INTERVAL)
            self._server, self._accept_thread, self._state = server, thread, "running"
        logger.debug("LocalGateway serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release every thread and socket; idempotent, bounded."""
        with self._lifecycle:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            server, thread = self._server, self._accept_thread
        assert server is not None and thread is not None
        deadline = time.monotonic() + self._stop_timeout
        self._stopping.set()
        self._events.close()
        self._store.close()
        self._hosting.close_all()
        stuck = server.stop_serving(thread, deadline)
        if self._enforcement is not None:
            self._enforcement.close()
        if stuck:
            logger.warning("LocalGateway.stop(): %d thread(s) still running", len(stuck))

    def __enter__(self) -> LocalGateway:
        if self._state == "running":  # ``with LocalGateway().start() as gw`` works too
            return self
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``"http://127.0.0.1:8123"``; ``RuntimeError`` before start()."""
        if self._server is None:
            raise RuntimeError("the LocalGateway is not started")
        host = self._bind_host
        shown = f"[{host}]" if self._family == socket.AF_INET6 else host
        return f"http://{shown}:{self._server.server_port}"

    @property
    def running(self) -> bool:
        return self._state == "running"

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"<LocalGateway {where} {self._state}>"

    # -- catalogue -------------------------------------------------------------------------

    def add_server(self, name: str, transport: str = "http", sensitivity_level: str = "medium",
                   authorized_teams: Iterable[str] = (), health_status: str = "healthy", *,
                   server_url: str | None = None) -> dict[str, Any]:
        """Register a server, publish ``server_registered`` and return its ServerInfo JSON;
        ``ValueError`` for a bad name, a duplicate or an unknown transport, sensitivity level
        or health status."""
        return self._catalogue.add_server(
            name, transport=transport, sensitivity_level=sensitivity_level,
            authorized_teams=authorized_teams, health_status=health_status,
            server_url=server_url,
        )

    def add_stdio_server(self, name: str, command: Sequence[str], *,
                         env: Mapping[str, str] | None = None,
                         cwd: str | os.PathLike[str] | None = None, inherit_env: bool = False,
                         sensitivity_level: str = "medium", authorized_teams: Iterable[str] = (),
                         startup_timeout: float = STARTUP_TIMEOUT,
                         call_timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """Host a stdio MCP server as server ``name``; return its ServerInfo JSON.

        It starts with the gateway (at once if it is running); its tools, with their MCP
        ``inputSchema`` and ``annotations``, become the server's. Invokes are forwarded with
        ``tools/call``: a tool error is a 200, a crash or JSON-RPC error a 502, no answer in
        ``call_timeout`` a 504. A crashed server is "unhealthy" until the next invoke
        restarts it (at most 3 times in 60 s; see :mod:`..stdio._hosting`). Publishes
        ``server_registered`` at once, and ``server_health`` when it starts ("healthy") and
        each time its health changes.

        :param command: e.g. ``[sys.executable, "-m", "sark_sync.testing.demo_server"]``.
        :param env: variables added to the child's environment, which otherwise holds only
            HOME, LOGNAME, PATH, SHELL, TERM, USER and LANG (``inherit_env=True``: all of ours).
        :param startup_timeout: seconds for spawn, handshake and ``tools/list`` (> 0).
        :param call_timeout: seconds per tool call (> 0).

        Raises ``ValueError`` for a bad name, a duplicate, a bad command or timeout, and, when
        the gateway is running, what :class:`~sark_sync.LocalServer` raises if the server
        cannot start (it is not registered then).
        """
        with self._lifecycle:  # a start() or stop() in between would miss this server
            return self._catalogue.add_stdio_server(
                name, command, running=self._state == "running", env=env, cwd=cwd,
                inherit_env=inherit_env, sensitivity_level=sensitivity_level,
                authorized_teams=authorized_teams, startup_timeout=startup_timeout,
                call_timeout=call_timeout,
            )

    def remove_server(self, name: str) -> None:
        """Unregister a server and its tools (closing it if it is a stdio server) and publish
        ``server_unregistered``; ``KeyError`` if there is none by that name."""
        self._catalogue.remove_server(name)

    def set_server_health(self, name: str, status: str) -> None:
        """Set the ``health_status`` of a server added with :meth:`add_server` and publish
        ``server_health`` if it changed. ``KeyError`` for an unknown server, ``ValueError``
        for an unknown status or a stdio server (whose health is its process's)."""
        self._catalogue.set_health(name, status)

    def add_raw_server(self, obj: object) -> None:
        """Append any JSON value to the server list as is (to test malformed items)."""
        self._registry.add_raw(obj)

    def add_tool(self, server: str, name: str, func: ToolFunction, description: str = "",
                 input_schema: Mapping[str, Any] | None = None,
                 annotations: Mapping[str, Any] | None = None, sensitivity_level: str = "low",
                 sensitive_params: Iterable[str] = ()) -> dict[str, Any]:
        """Register ``func`` as tool ``name`` of ``server``; return its ToolInfo JSON.

        ``description`` defaults to the first line of the function's docstring,
        ``input_schema`` to ``{"type": "object"}``. Raises ``KeyError`` for an unknown
        server and ``ValueError`` for a bad or duplicate name.
        """
        return self._registry.add_tool(
            server, name, func, description=description, input_schema=input_schema,
            annotations=annotations, sensitivity_level=sensitivity_level,
            sensitive_params=sensitive_params,
        )

    def tool(self, server: str, *, name: str | None = None, **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`add_tool`; the tool is named after the function."""

        def register(func: F) -> F:
            tool_name = name if name is not None else str(getattr(func, "__name__", ""))
            self.add_tool(server, tool_name, func, **options)
            return func

        return register

    def tool_runs(self, server: str, tool: str) -> int:
        """How many times the tool function really ran, or a stdio server's tool was called
        (replays do not count)."""
        return self._registry.runs(server, tool)

    def set_health(self, status: str) -> None:
        """Set what ``/health`` reports: "healthy", "degraded", or "unhealthy" (503). This is
        the gateway's own health, not a server's: no ``server_health`` event is published."""
        self._api.health = status

    # -- events ----------------------------------------------------------------------------

    def publish_event(self, type: str, data: Mapping[str, Any]) -> int:
        """Publish an event to every stream (and the replay buffer); return its id.

        For tests and benchmarks, and for events of things outside the gateway (the gateway
        itself publishes ``tool_invoked``, ``authorization_denied`` when it has a ``policy``,
        and the ``server_*`` events). ``type`` must match
        ``[a-z_]{1,64}`` and not be ``stream_reset`` (``ValueError``); ``data`` must be a JSON
        object (``TypeError``). Works before start() and after stop() too.
        """
        return self._events.publish(type, data)

    @property
    def last_event_id(self) -> int:
        """The id of the newest event (``first_event_id - 1`` before the first one)."""
        return self._events.newest_id

    # -- credentials -----------------------------------------------------------------------

    def issue_token(self, subject: str = "alice", roles: Iterable[str] = ("developer",),
                    teams: Iterable[str] = ("data",), ttl: float | None = 3600,
                    **extra_claims: Any) -> str:
        """Return an HS256 user JWT signed with ``jwt_secret``.

        ``ttl`` seconds until ``exp`` (negative: already expired; ``None``: no ``exp``);
        ``extra_claims`` are added last and may override the others.
        """
        return _jwt.user_token(self._jwt_secret, subject, roles, teams, ttl, extra_claims)

    def verify_token(self, token: str) -> dict[str, Any]:
        """Return the claims of a user JWT, as the gateway checks it; ``ValueError`` if bad."""
        return _jwt.decode(token, self._jwt_secret)

    # -- faults and observation ------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Arm ``fault`` (after those already armed) and return it, to read ``fault.hits``."""
        return self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    @property
    def connections_accepted(self) -> int:
        return self._server.connections_accepted if self._server is not None else 0

    @property
    def max_open_connections(self) -> int:
        return self._server.max_open_connections if self._server is not None else 0

    @property
    def open_connections(self) -> int:
        return self._server.open_connections if self._server is not None else 0
