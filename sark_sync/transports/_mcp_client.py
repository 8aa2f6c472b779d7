"""The MCP client session: the protocol layer shared by every channel a server is reached over.

:class:`McpSession` speaks MCP over any :class:`~sark_sync.transports.MessageChannel` (a local
server's stdio pipes, Streamable HTTP, HTTP+SSE):

- the handshake: ``initialize`` offering protocol version ``2025-11-25`` or the one asked for
  (accepting the four versions listed in ``docs/gateway/STDIO_TRANSPORT.md``, refusing any
  other with :class:`ProtocolError`), then ``notifications/initialized``; or, at 2026-07-28
  over HTTP (no handshake), the ``server/discover`` result the negotiation adopts
  (:mod:`._mcp_modern`), after which ``ping()`` is a ``server/discover``;
- ``tools/list`` following ``nextCursor`` pages, ``tools/call`` returning the same
  :class:`ToolResult` as a gateway call, ``ping``;
- what the server sends unasked: it may ``ping`` us (answered), ask for anything else
  (answered -32601, method not found), and notify progress (to the call's ``progress``
  callback), log messages and list changes (to ``on_notification``).

A subclass owns the channel and its lifecycle (``LocalServer`` spawns a process). Callbacks run
on the channel's reader thread: keep them short; an exception in one is logged, never
propagated.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

from ..__version__ import __version__
from .._exceptions import ProtocolError, ValidationError
from .._models import ToolInfo, ToolResult
from .._validation import check_arguments
from ..wire import jsonrpc
from ._base import MessageChannel
from ._mcp_features import McpFeatures
from ._mcp_options import check_callback, check_seconds

__all__ = ["DEFAULT_CALL_TIMEOUT", "McpSession", "SUPPORTED_PROTOCOL_VERSIONS",
           "session_callback"]

log = logging.getLogger("sark_sync.mcp")

#: Protocol versions accepted in the handshake, newest first; the first is offered.
SUPPORTED_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Seconds a request may take when the caller gives no timeout.
DEFAULT_CALL_TIMEOUT = 30.0
#: Pages of ``tools/list`` followed at most (a server looping on one cursor ends here).
MAX_TOOL_PAGES = 1000

T = TypeVar("T")
NotificationHandler = Callable[[str, Mapping[str, Any]], None]
ProgressHandler = Callable[[float, Optional[float], Optional[str]], None]


class McpSession(McpFeatures):
    """An MCP client session with one server over a channel the subclass provides.

    ``kind`` names the server in messages (``"local MCP server"``); ``timeout`` is the
    default seconds per request.
    """

    kind = "MCP server"
    _channel: MessageChannel

    def __init__(self, name: str, *, timeout: float,
                 on_notification: NotificationHandler | None) -> None:
        self.name = name
        self.timeout = timeout
        self._on_notification = check_callback("on_notification", on_notification,
                                               error=ValidationError)
        self._progress: dict[str, ProgressHandler] = {}
        self._tokens = itertools.count(1)
        self.protocol_version: str | None = None
        self.server_info: Mapping[str, Any] = {}
        self.capabilities: Mapping[str, Any] = {}
        self.instructions: str | None = None
        self._ping_method = "ping"
        self._offer = SUPPORTED_PROTOCOL_VERSIONS[0]  # the version initialize offers

    def handshake(self, timeout: float, version: str | None = None) -> None:
        """``initialize`` offering ``version`` (None: the one offered last, at first the
        newest we speak), then ``notifications/initialized``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._offer = version or self._offer
        result = self._channel.request("initialize", {
            "protocolVersion": self._offer,
            "capabilities": {},
            "clientInfo": {"name": "sark-sync", "version": __version__},
        }, timeout)
        self._ping_method = "ping"
        self._accept_handshake(result)
        self._channel.notify("notifications/initialized",
                             timeout=max(0.0, deadline - time.monotonic()))
        log.debug("%s speaks MCP %s: %s", self.name, self.protocol_version, self.server_info)

    def _accept_handshake(self, result: Any) -> None:
        if not isinstance(result, Mapping):
            raise ProtocolError(f"{self.name!r} answered initialize with a non-object",
                                server=self.name)
        version = result.get("protocolVersion")
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ProtocolError(
                f"{self.kind} {self.name!r} speaks protocol version {version!r}; sark_sync "
                f"supports {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}", server=self.name)
        self.protocol_version = version
        info, caps = result.get("serverInfo"), result.get("capabilities")
        self.server_info = info if isinstance(info, Mapping) else {}
        self.capabilities = caps if isinstance(caps, Mapping) else {}
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None

    def adopt_discovery(self, result: Mapping[str, Any], version: str) -> None:
        """Take a ``server/discover`` result (2026-07-28: no handshake) as the session's
        version, capabilities, server info (in ``_meta``) and instructions."""
        self.protocol_version = version
        caps, meta = result.get("capabilities"), result.get("_meta")
        info = meta.get("io.modelcontextprotocol/serverInfo") if isinstance(meta, Mapping) \
            else None
        self.server_info = info if isinstance(info, Mapping) else {}
        self.capabilities = caps if isinstance(caps, Mapping) else {}
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None
        self._ping_method = "server/discover"
        log.debug("%s speaks MCP %s: %s", self.name, version, self.server_info)

    # -- operations ------------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> None:
        """Check that the server answers, within ``timeout``. 2026-07-28 removed ``ping``: at
        that version the check is a ``server/discover`` (answered by every modern server,
        cheap, without side effect)."""
        self._channel.request(self._ping_method, None, self._timeout(timeout))

    def list_tools(self, *, timeout: float | None = None) -> list[ToolInfo]:
        """Every tool of the server as a :class:`ToolInfo`, following ``nextCursor`` (one
        timeout for all pages). A malformed tool is skipped with a warning."""
        tools: list[ToolInfo] = []
        for item in self.list_mcp_tools(timeout=timeout):
            try:
                tools.append(_tool_info(item, self.name))
            except ValueError as exc:
                log.warning("skipping malformed tool of %s: %s", self.name, exc)
        return tools

    def list_mcp_tools(self, *, timeout: float | None = None) -> list[Mapping[str, Any]]:
        """Every tool of the server as the MCP ``Tool`` object it sent (``inputSchema``,
        ``outputSchema``, ``annotations``, ``_meta`` ... exactly as declared), following
        ``nextCursor`` (one timeout for all pages). For what :class:`ToolInfo` does not keep,
        e.g. to re-publish the tools (the LocalGateway does). Non-object items are skipped."""
        deadline = time.monotonic() + self._timeout(timeout)
        tools: list[Mapping[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            params = {"cursor": cursor} if cursor is not None else None
            page = self._channel.request("tools/list", params,
                                           max(0.0, deadline - time.monotonic()))
            items = page.get("tools") if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                raise ProtocolError(f"{self.name!r} answered tools/list without a tools list",
                                    server=self.name)
            for item in items:
                if isinstance(item, Mapping):
                    tools.append(item)
                else:
                    log.warning("skipping malformed tool of %s: a tool must be an object",
                                self.name)
            next_cursor = page.get("nextCursor")
            if not isinstance(next_cursor, str) or not next_cursor:
                return tools
            cursor = next_cursor
        raise ProtocolError(f"{self.name!r} returned more than {MAX_TOOL_PAGES} tools/list pages",
                            server=self.name)

    def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *,
        timeout: float | None = None, progress: ProgressHandler | None = None,
    ) -> ToolResult:
        """Call a tool and return its :class:`ToolResult` (a tool error is a result).

        ``progress(progress, total, message)`` receives the server's progress notifications
        for this call. On timeout the server is sent ``notifications/cancelled``.
        """
        if not isinstance(name, str) or not name:
            raise ValidationError("tool name must be a non-empty str")
        check_callback("progress", progress, error=ValidationError)
        params: dict[str, Any] = {"name": name, "arguments": check_arguments(arguments)}
        token = None
        if progress is not None:
            token = f"sark-{next(self._tokens)}"
            params["_meta"] = {"progressToken": token}
            self._progress[token] = progress
        started = time.perf_counter()
        try:
            result = self._channel.request("tools/call", params, self._timeout(timeout))
        finally:
            if token is not None:
                self._progress.pop(token, None)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            return ToolResult.from_call_result(result, server=self.name, tool=name,
                                               latency_ms=latency_ms)
        except ValueError as exc:
            raise ProtocolError(f"malformed tools/call result from {self.name!r}: {exc}",
                                server=self.name, tool=name) from None

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        seconds = check_seconds("timeout", timeout, error=ValidationError, allow_zero=True)
        assert seconds is not None
        return seconds

    # -- what the server sends unasked --------------------------------------------------------

    def _on_request(self, request: jsonrpc.Request) -> None:
        if request.method == "ping":
            self._channel.respond(request.id, {})
        else:
            self._channel.respond_error(request.id, jsonrpc.METHOD_NOT_FOUND,
                                          f"method not supported by sark-sync: {request.method}")

    def _on_notification_message(self, message: jsonrpc.Notification) -> None:
        params = message.params or {}
        if message.method == "notifications/progress":
            handler = self._progress.get(str(params.get("progressToken")))
            if handler is not None:
                total = params.get("total")
                note = params.get("message")
                handler(float(params.get("progress", 0)),
                        float(total) if isinstance(total, (int, float)) else None,
                        note if isinstance(note, str) else None)
            return
        if self._on_notification is not None:
            self._on_notification(message.method, params)



def session_callback(method: Callable[[T], None]) -> Callable[[T], None]:
    """A callback that calls ``method`` while its object lives, and does nothing after."""
    ref = weakref.WeakMethod(method)

    def call(argument: T) -> None:
        bound = ref()
        if bound is not None:
            bound(argument)

    return call


def _tool_info(item: object, server: str) -> ToolInfo:
    if not isinstance(item, Mapping):
        raise ValueError("a tool must be an object")
    return ToolInfo.from_dict({
        "tool_name": item.get("name"),
        "server_name": server,
        "description": item.get("description") or "",
        "input_schema": item.get("inputSchema"),
        "annotations": item.get("annotations"),
    })
