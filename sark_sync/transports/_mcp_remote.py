"""RemoteServer: a blocking MCP client session with one server reached by URL.

The HTTP sibling of ``LocalServer``: the same MCP layer (:class:`~._mcp_client.McpSession`)
over a :class:`~.mcp_http.StreamableHTTPChannel` instead of a child's pipes. Work in progress
(issue 13): the client's ``connect_remote_server`` and ``remote_servers=`` come next.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from .._config import resolve_base_url
from .._useragent import user_agent
from .._validation import validate_name
from ._mcp_client import DEFAULT_CALL_TIMEOUT, McpSession, NotificationHandler, session_callback
from ._mcp_options import check_seconds
from .mcp_http import StreamableHTTPChannel

__all__ = ["RemoteServer"]


class RemoteServer(McpSession):
    """A session with the MCP server at ``url`` over Streamable HTTP; a context manager that
    connects (``initialize``) on entry and ends the session (DELETE) on exit.

    ``headers`` go on every request (e.g. ``Authorization``; never logged nor shown);
    ``timeout`` is the default seconds per request.

    >>> with RemoteServer("http://127.0.0.1:8000/mcp") as server:   # doctest: +SKIP
    ...     server.call_tool("echo", {"text": "hi"}).text
    'hi'
    """

    kind = "remote MCP server"

    def __init__(self, url: str, *, name: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_CALL_TIMEOUT,
                 verify: bool | str | None = None,
                 on_notification: NotificationHandler | None = None) -> None:
        url = resolve_base_url(url, what="MCP server URL")
        if name is not None:
            validate_name(name, "remote server")
        seconds = check_seconds("timeout", timeout)
        assert seconds is not None
        super().__init__(name or (urlsplit(url).hostname or "remote"), timeout=seconds,
                         on_notification=on_notification)
        self._channel = self._http = StreamableHTTPChannel(
            url, name=self.name, user_agent=user_agent(), headers=headers, verify=verify,
            on_request=session_callback(self._on_request),
            on_notification=session_callback(self._on_notification_message))

    def connect(self, *, timeout: float | None = None) -> RemoteServer:
        """Open the session: ``initialize`` then ``notifications/initialized``."""
        self.handshake(self._timeout(timeout))
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
