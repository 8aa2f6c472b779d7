"""RemoteServer: a blocking MCP client session with one server reached by URL.

The HTTP sibling of ``LocalServer``: the same MCP layer (:class:`~._mcp_client.McpSession`)
over a :class:`~.mcp_http.StreamableHTTPChannel` instead of a child's pipes. Work in progress
(issue 13): the client's ``connect_remote_server`` and ``remote_servers=`` come next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .._config import resolve_base_url
from .._exceptions import ConfigurationError
from .._useragent import user_agent
from .._validation import validate_name
from ._mcp_client import (
    DEFAULT_CALL_TIMEOUT,
    SUPPORTED_PROTOCOL_VERSIONS,
    McpSession,
    NotificationHandler,
    session_callback,
)
from ._mcp_modern import AUTO, MODERN_PROTOCOL_VERSIONS, negotiate
from ._mcp_options import check_seconds
from .mcp_http import StreamableHTTPChannel

__all__ = ["RemoteServer"]


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

    >>> with RemoteServer("http://127.0.0.1:8000/mcp") as server:   # doctest: +SKIP
    ...     server.call_tool("echo", {"text": "hi"}).text
    'hi'
    """

    kind = "remote MCP server"

    def __init__(self, url: str, *, name: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_CALL_TIMEOUT,
                 verify: bool | str | None = None,
                 on_notification: NotificationHandler | None = None, auth: Any = None,
                 protocol_version: str = AUTO) -> None:
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
        super().__init__(name or (urlsplit(url).hostname or "remote"), timeout=seconds,
                         on_notification=on_notification)
        self._channel = self._http = StreamableHTTPChannel(
            url, name=self.name, user_agent=user_agent(), headers=headers, verify=verify,
            on_request=session_callback(self._on_request),
            on_notification=session_callback(self._on_notification_message), auth=auth,
            reinitialize=session_callback(self.handshake))

    def connect(self, *, timeout: float | None = None) -> RemoteServer:
        """Negotiate the revision (see ``protocol_version``) within ``timeout`` seconds: at
        2026-07-28 ``server/discover``, at 2025 ``initialize`` then
        ``notifications/initialized``. A 400/404/405 to that ``initialize`` raises the
        :class:`APIError` of its status (``status_code`` set)."""
        negotiate(self, self._http, self._wanted_version, timeout=self._timeout(timeout),
                  server=self.name)
        return self

    @property
    def session_id(self) -> str | None:
        """The server's ``Mcp-Session-Id`` (None for a server that keeps no session)."""
        return self._http.session_id

    @property
    def alive(self) -> bool:
        return self._http.alive

    def close(self) -> None:
        """End the session (DELETE) and release the connections. Idempotent."""
        self._http.close()

    def __enter__(self) -> RemoteServer:
        if self.protocol_version is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RemoteServer {self.name!r} {self._http.url} {'open' if self.alive else 'closed'}>"
