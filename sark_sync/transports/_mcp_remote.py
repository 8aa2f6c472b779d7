"""RemoteServer: a blocking MCP client session with one server reached by URL.

The HTTP sibling of ``LocalServer``: the same MCP layer (:class:`~._mcp_client.McpSession`)
over a :class:`~.mcp_http.StreamableHTTPChannel` instead of a child's pipes, or over the legacy
HTTP+SSE transport (:class:`~.mcp_sse.LegacySSEChannel`) on request or as the fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .._config import resolve_base_url
from .._exceptions import APIError, ConfigurationError, GatewayError
from .._useragent import user_agent
from .._validation import validate_name
from ._mcp_client import (
    DEFAULT_CALL_TIMEOUT,
    SUPPORTED_PROTOCOL_VERSIONS,
    McpSession,
    NotificationHandler,
    session_callback,
)
from ._mcp_handlers import (
    DEFAULT_HANDLER_TIMEOUT,
    ClientHandlers,
    ElicitationHandler,
    RootsSource,
    SamplingHandler,
)
from ._mcp_input import InputLoop
from ._mcp_logging import LogHandler
from ._mcp_modern import AUTO, MODERN_PROTOCOL_VERSIONS, negotiate
from ._mcp_options import check_seconds
from .mcp_http import StreamableHTTPChannel
from .mcp_sse import LegacySSEChannel

__all__ = ["RemoteServer", "TRANSPORTS"]

log = logging.getLogger("sark_sync.mcp")

#: The values of ``transport=``: pick by trying (Streamable HTTP, then HTTP+SSE), or one.
TRANSPORTS = ("auto", "streamable-http", "sse")
#: Statuses of the Streamable HTTP ``initialize`` POST after which "auto" tries HTTP+SSE.
LEGACY_FALLBACK_STATUSES = frozenset({400, 404, 405})


class RemoteServer(McpSession):
    """A session with the MCP server at ``url`` over Streamable HTTP; a context manager that
    connects (``initialize``) on entry and ends the session (DELETE) on exit.

    ``headers`` go on every request (e.g. ``Authorization``; never logged nor shown);
    ``auth`` is what requests takes as ``auth=``: a ``(user, password)`` tuple or a
    ``requests.auth.AuthBase``, called on every request to set its headers; on a 401 its
    ``refresh()`` (if it has one) is called once and the request resent once, and a second
    401 raises :class:`AuthenticationError` (never quoting a credential). ``timeout`` is the
    default seconds per request: a request not answered in time raises
    :class:`DeadlineExceeded` after sending ``notifications/cancelled``.

    A server that lost the session (a 404 to a request carrying its id: it restarted, or
    expired the session) gets one new ``initialize``, shared by every thread that saw the
    404, and the request is resent; a second 404 raises :class:`SessionExpiredError`. After
    ``os.fork()`` the child opens its own session on first use and never ends the parent's.
    Same-origin 307/308 redirects are followed (3 hops at most), others refused
    (:class:`ProtocolError`).

    ``protocol_version`` picks the MCP revision. ``"auto"`` (the default) probes
    ``server/discover`` at 2026-07-28 first: a server that offers it is spoken to at
    2026-07-28 (no ``initialize``, no session: every request carries the ``_meta`` envelope
    and the ``Mcp-Method``/``Mcp-Name`` headers, a timeout closes the connection, ``ping()``
    is a ``server/discover``); a server that refuses the probe with a JSON-RPC error or a
    400/404/405 gets ``initialize`` at 2025-11-25, as older servers expect. A network error,
    a timeout, a 401/403 or a 5xx on the probe propagates (it says nothing about versions).
    ``"2026-07-28"`` probes and never falls back (a refusal raises); a handshake version
    (``"2025-11-25"``, ``"2025-06-18"``, ``"2025-03-26"``, ``"2024-11-05"``) skips the probe
    and offers that version in ``initialize`` (the server may answer another one it
    supports, as the spec allows). After connecting, :attr:`protocol_version` is the one in
    use.

    ``sampling``, ``elicitation``, ``roots`` and ``handler_timeout`` answer what the server
    asks of the client, as for ``LocalServer``: at 2025 its requests, at 2026-07-28 the
    ``input_required`` results of ``tools/call`` (the call is sent again with the answers,
    within its timeout; :mod:`._mcp_input`). ``on_log`` takes the server's log messages, as
    for ``LocalServer``.

    ``transport`` picks the wire. ``"auto"`` (the default) speaks Streamable HTTP and, when
    its ``initialize`` POST is answered 400, 404 or 405 (a server of the 2024-11-05 era, whose
    ``url`` is its SSE stream), falls back to HTTP+SSE: GET ``url``, POST to the ``endpoint``
    the stream names (same origin only), answers read from the stream.
    ``"streamable-http"`` never falls back; ``"sse"`` speaks HTTP+SSE only (``initialize``,
    never ``server/discover``: 2026-07-28 has no HTTP+SSE). Over HTTP+SSE the session lives
    as long as the stream: when it ends (the server stopped), pending calls fail at once with
    :class:`ConnectionFailed` and the server is no longer :attr:`alive`.

    >>> with RemoteServer("http://127.0.0.1:8000/mcp") as server:   # doctest: +SKIP
    ...     server.call_tool("echo", {"text": "hi"}).text
    'hi'
    """

    kind = "remote MCP server"

    def __init__(self, url: str, *, name: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_CALL_TIMEOUT,
                 verify: bool | str | None = None,
                 on_notification: NotificationHandler | None = None, auth: Any = None,
                 protocol_version: str = AUTO, transport: str = "auto",
                 sampling: SamplingHandler | None = None,
                 elicitation: ElicitationHandler | None = None,
                 roots: RootsSource | None = None,
                 handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
                 on_log: LogHandler | None = None) -> None:
        url = resolve_base_url(url, what="MCP server URL")
        if protocol_version not in (AUTO, *MODERN_PROTOCOL_VERSIONS,
                                    *SUPPORTED_PROTOCOL_VERSIONS):
            raise ConfigurationError(
                f"protocol_version must be 'auto' or one of "
                f"{', '.join((*MODERN_PROTOCOL_VERSIONS, *SUPPORTED_PROTOCOL_VERSIONS))}, "
                f"not {str(protocol_version)[:40]!r}")
        self._wanted_version = protocol_version
        if name is not None:
            validate_name(name, "remote server")
        seconds = check_seconds("timeout", timeout)
        assert seconds is not None
        if auth is not None and not callable(auth) and not (
                isinstance(auth, tuple) and len(auth) == 2):
            raise ConfigurationError("auth must be a (user, password) tuple or a "
                                     f"requests.auth.AuthBase, not {type(auth).__name__}")
        if transport not in TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {', '.join(TRANSPORTS)}, not "
                                     f"{str(transport)[:40]!r}")
        if transport == "sse" and protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise ConfigurationError(f"protocol_version {protocol_version} has no HTTP+SSE "
                                     "transport: use transport='auto' or 'streamable-http'")
        self.transport = transport
        self._legacy_options: dict[str, Any] = {
            "url": url, "headers": headers, "verify": verify, "auth": auth}
        self._legacy: LegacySSEChannel | None = None
        name = name or (urlsplit(url).hostname or "remote")
        handlers = ClientHandlers(name, sampling=sampling, elicitation=elicitation, roots=roots,
                                  handler_timeout=handler_timeout)
        super().__init__(name, timeout=seconds, on_notification=on_notification,
                         handlers=handlers, on_log=on_log)
        self._channel = self._http = StreamableHTTPChannel(
            url, name=self.name, user_agent=user_agent(), headers=headers, verify=verify,
            on_request=session_callback(self._on_request),
            on_notification=session_callback(self._on_notification_message), auth=auth,
            reinitialize=session_callback(self.handshake))
        self._http._tools.inputs = InputLoop(handlers)  # 2026: input_required answered

    def connect(self, *, timeout: float | None = None) -> RemoteServer:
        """Negotiate the revision (see ``protocol_version``) within ``timeout`` seconds: at
        2026-07-28 ``server/discover``, at 2025 ``initialize`` then
        ``notifications/initialized``. A 400/404/405 to that ``initialize`` raises the
        :class:`APIError` of its status (``status_code`` set), unless ``transport="auto"``
        falls back to HTTP+SSE (see ``transport``; its failure then says it came after it)."""
        seconds = self._timeout(timeout)
        if self.transport == "sse":
            self._connect_legacy(seconds, None)
            return self
        deadline = time.monotonic() + seconds
        try:
            negotiate(self, self._http, self._wanted_version, timeout=seconds,
                      server=self.name)
        except APIError as exc:
            if self.transport != "auto" or exc.status_code not in LEGACY_FALLBACK_STATUSES \
                    or self._wanted_version in MODERN_PROTOCOL_VERSIONS:
                raise
            log.debug("%s answered initialize %s: trying HTTP+SSE", self.name, exc.status_code)
            self._http.close()
            self._connect_legacy(max(0.0, deadline - time.monotonic()), exc)
        return self

    def _connect_legacy(self, timeout: float, after: APIError | None) -> None:
        """Open the HTTP+SSE stream and ``initialize`` over it, within ``timeout``."""
        deadline = time.monotonic() + timeout
        options = self._legacy_options
        if self._legacy is not None:  # connect() again: a new session
            self._legacy.close()
        self._channel = self._legacy = LegacySSEChannel(
            options["url"], name=self.name, user_agent=user_agent(), headers=options["headers"],
            verify=options["verify"], auth=options["auth"],
            on_request=session_callback(self._on_request),
            on_notification=session_callback(self._on_notification_message))
        wanted = self._wanted_version
        try:
            self._legacy.start(timeout)
            self.handshake(max(0.0, deadline - time.monotonic()),
                           None if wanted == AUTO else wanted)
        except GatewayError as error:
            self._legacy.close()  # its reader thread and stream end with the failed attempt
            if after is not None:
                error.message = (f"{error.message} (trying HTTP+SSE after Streamable HTTP's "
                                 f"initialize was answered {after.status_code}: "
                                 f"{after.message[:200]})")
                error.args = (error.message,)
            raise

    @property
    def session_id(self) -> str | None:
        """The server's ``Mcp-Session-Id`` (None for a server that keeps no session); over
        HTTP+SSE, the ``session_id`` of the endpoint's URL."""
        return self._legacy.session_id if self._legacy is not None else self._http.session_id

    @property
    def alive(self) -> bool:
        return self._legacy.alive if self._legacy is not None else self._http.alive

    def close(self) -> None:
        """End the session (DELETE; over HTTP+SSE, close the stream) and release the
        connections. Idempotent."""
        self._stop_callbacks()  # the listening request cut, a callback's call to the server ends
        self._http.close()
        if self._legacy is not None:
            self._legacy.close()
        self._handlers.close()

    def __enter__(self) -> RemoteServer:
        if self.protocol_version is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RemoteServer {self.name!r} {self._http.url} {'open' if self.alive else 'closed'}>"
