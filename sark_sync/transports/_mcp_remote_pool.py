"""The client's remote MCP servers: connected by name, on first use, within the call's deadline.

A :class:`GatewayClient` routes calls for a name in ``remote_servers`` (or a server attached
with ``connect_remote_server``) here, with the same surface as the local server pool
(``call_tool``, ``list_tools``, ``retry_safe``), so the pipeline drives both alike. A server's
session is opened by the first call that needs it (one lock per name: concurrent callers share
one handshake), and its tools are listed then, so that the pipeline knows which tools are
annotated read-only or idempotent (only those are tried again after a broken exchange). After
``fork()`` the child forgets the parent's sessions (never ending them: they are the parent's)
and opens its own.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

from .._deadline import Deadline
from .._exceptions import ClientClosedError, ConfigurationError, GatewayError
from .._models import ToolInfo, ToolResult
from .._validation import validate_name
from ._mcp_progress import ProgressHandler
from ._mcp_remote import RemoteServer

__all__ = ["REMOTE_OPTIONS", "RemoteServerPool"]

log = logging.getLogger(__name__)

#: What a ``remote_servers`` entry may hold besides its ``url`` (RemoteServer's arguments).
REMOTE_OPTIONS = ("headers", "auth", "transport", "timeout", "protocol_version",
                  "on_notification", "sampling", "elicitation", "roots", "handler_timeout",
                  "on_log")


class _Entry:
    __slots__ = ("lock", "options", "retry_safe", "server", "url")

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.url = url
        self.options = dict(options)
        self.lock = threading.Lock()
        self.server: RemoteServer | None = None
        self.retry_safe: dict[str, bool] = {}


class RemoteServerPool:
    """Remote servers by name. Thread-safe.

    ``specs`` maps a name to a URL or to ``{"url": ..., "headers": ..., "auth": ...,
    "transport": ..., "timeout": ..., "protocol_version": ..., "on_notification": ...}``
    (:data:`REMOTE_OPTIONS`, as :class:`RemoteServer` takes them); each is checked now, by
    building (not connecting) its session. ``on_notification(server, method, params)`` gets
    the notifications of every server whose options give no ``on_notification`` of its own.
    """

    def __init__(self, specs: Mapping[str, object] | None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 on_notification: Callable[[str, str, Mapping[str, Any]], None] | None = None,
                 ) -> None:
        #: How the retry loop waits between attempts at a tool (injectable for tests).
        self.sleep = sleep
        self._entries: dict[str, _Entry] = {}
        self._closed = False
        if specs is not None and not isinstance(specs, Mapping):
            raise ConfigurationError("remote_servers must be a mapping of name to URL")
        for name, value in (specs or {}).items():
            validate_name(name, "remote server")
            if isinstance(value, str):
                entry = _Entry(value, {})
            elif isinstance(value, Mapping) and isinstance(value.get("url"), str):
                unknown = sorted(str(key)[:40] for key in value
                                 if key != "url" and key not in REMOTE_OPTIONS)
                if unknown:
                    raise ConfigurationError(f"remote server {name!r}: unknown option(s) "
                                             f"{', '.join(unknown)}; allowed: url, "
                                             f"{', '.join(REMOTE_OPTIONS)}")
                entry = _Entry(value["url"], {k: v for k, v in value.items() if k != "url"})
            else:
                raise ConfigurationError(f"remote server {name!r} must be a URL or "
                                         "{'url': ..., 'headers': {...}, 'auth': ...}")
            if on_notification is not None and entry.options.get("on_notification") is None:
                entry.options["on_notification"] = functools.partial(on_notification, name)
            self._build(name, entry)  # checks the URL and the options now
            self._entries[name] = entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def attach(self, server: RemoteServer) -> None:
        """Route calls for ``server.name`` to this connected session."""
        entry = _Entry("", {})
        entry.server = server
        self._entries[server.name] = entry

    def retry_safe(self, name: str, tool: str) -> bool:
        """Whether ``tool`` is annotated read-only or idempotent, as its session last listed
        it (a session lists its tools again before the call that follows a list_changed)."""
        entry = self._entries.get(name)
        if entry is None:
            return False
        known = entry.server.tool_retry_safe(tool) if entry.server is not None else None
        return entry.retry_safe.get(tool, False) if known is None else known

    def call_tool(self, name: str, tool: str, arguments: Mapping[str, Any],
                  deadline: Deadline, progress: ProgressHandler | None = None) -> ToolResult:
        """One attempt at ``tool`` on ``name``, within the deadline (the pipeline retries)."""
        server = self.get(name, deadline)
        budget = deadline.remaining()
        if budget <= 0:
            raise deadline.exceeded(f"before calling {name}/{tool}", attempts=0, server=name,
                                    tool=tool)
        return server.call_tool(tool, arguments, timeout=budget, progress=progress)

    def list_tools(self, name: str, deadline: Deadline) -> list[ToolInfo]:
        tools = self.get(name, deadline).list_tools(timeout=max(deadline.remaining(), 0.001))
        self._learn(self._entries[name], tools)
        return tools

    def get(self, name: str, deadline: Deadline) -> RemoteServer:
        """The open session with ``name``, connected (and its tools listed) first if need
        be."""
        entry = self._entries[name]
        server = entry.server
        if server is not None and server.alive:
            return server
        if not entry.lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise deadline.exceeded(f"waiting for remote server {name!r} to connect",
                                    attempts=0, server=name)
        try:
            if self._closed:
                raise ClientClosedError("this GatewayClient is closed")
            if entry.server is None or not entry.server.alive:
                server = self._build(name, entry)
                entry.server = server.connect(timeout=max(deadline.remaining(), 0.001))
                try:
                    self._learn(entry, server.list_tools(
                        timeout=max(deadline.remaining(), 0.001)))
                except GatewayError as exc:  # no hints: no tool is retried after a break
                    log.debug("could not list the tools of %s: %s", name, type(exc).__name__)
            return entry.server
        finally:
            entry.lock.release()

    def close(self) -> None:
        self._closed = True
        for entry in self._entries.values():
            if entry.server is not None:
                entry.server.close()

    def forget_after_fork(self) -> None:
        for entry in self._entries.values():
            entry.server = None  # the parent's session: never ended from here
            entry.lock = threading.Lock()

    @staticmethod
    def _build(name: str, entry: _Entry) -> RemoteServer:
        return RemoteServer(entry.url, name=name, **entry.options)

    @staticmethod
    def _learn(entry: _Entry, tools: list[ToolInfo]) -> None:
        entry.retry_safe = {tool.tool_name: tool.annotations.retry_safe for tool in tools}
