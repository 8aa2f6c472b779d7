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
- resources, prompts and completion, each sent only if the server declared it
  (:mod:`._mcp_features`, a mixin of the session);
- what the server sends unasked: it may ``ping`` us (answered), ask for sampling, elicitation
  or roots (answered by the session's handlers, off the reader: :mod:`._mcp_handlers`; at
  2026-07-28 in ``input_required`` results: :mod:`._mcp_input`), ask for anything else
  (answered -32601, method not found), and notify progress (to the call's ``progress``
  callback, on the session's callbacks thread: :mod:`._mcp_progress`), log messages (to
  ``on_log`` on that thread, or to Python logging: :mod:`._mcp_logging`), resource updates
  (to the ``subscribe_resource`` callback on that thread: :mod:`._mcp_subscriptions`); every
  notification but progress also goes to ``on_notification``, list changes included.

A subclass owns the channel and its lifecycle (``LocalServer`` spawns a process).
``on_notification`` runs on the thread reading the channel (its reader thread, or a caller
reading its own answer): keep it short; an exception in any
callback is logged, never propagated.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import weakref
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from ..__version__ import __version__
from .._exceptions import (
    DeadlineExceeded,
    GatewayError,
    ProtocolError,
    RPCError,
    TransportTimeout,
    ValidationError,
)
from .._models import ToolInfo, ToolResult
from .._validation import check_arguments
from ..resilience import (
    CancelToken,
    cancellable,
    check_token,
    current_cancellation,
    mark_unsent,
    raise_if_cancelled,
)
from ..wire import jsonrpc
from ._base import MessageChannel
from ._mcp_callbacks import CallbackRunner
from ._mcp_features import McpFeatures
from ._mcp_handlers import ClientHandlers
from ._mcp_logging import LogHandler, LogRouter
from ._mcp_options import check_callback, check_seconds
from ._mcp_output import check_output
from ._mcp_progress import ProgressHandler, ProgressRelay
from ._mcp_subscriptions import ACKNOWLEDGED, Subscriptions, UpdateHandler
from ._mcp_tools import ToolCache

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


class McpSession(McpFeatures):
    """An MCP client session with one server over a channel the subclass provides.

    ``kind`` names the server in messages (``"local MCP server"``); ``timeout`` is the
    default seconds per request.
    """

    kind = "MCP server"
    _channel: MessageChannel

    def __init__(self, name: str, *, timeout: float,
                 on_notification: NotificationHandler | None,
                 handlers: ClientHandlers | None = None,
                 on_log: LogHandler | None = None) -> None:
        self.name = name
        self._handlers = handlers or ClientHandlers(name)  # sampling, elicitation, roots
        self.timeout = timeout
        self._on_notification = check_callback("on_notification", on_notification,
                                               error=ValidationError)
        #: The session's callbacks thread: user callbacks never run on a reader thread.
        self._callbacks = CallbackRunner(name)
        self._progress = ProgressRelay(name, self._callbacks)
        self._log = LogRouter(name, check_callback("on_log", on_log, error=ValidationError),
                              self._callbacks)  # notifications/message: _mcp_logging
        self._subscriptions = Subscriptions(self, self._callbacks)  # level, resource updates
        self.protocol_version: str | None = None
        self.server_info: Mapping[str, Any] = {}
        self.capabilities: Mapping[str, Any] = {}
        self.instructions: str | None = None
        self._ping_method = "ping"
        self._offer = SUPPORTED_PROTOCOL_VERSIONS[0]  # the version initialize offers
        self._tool_cache = ToolCache(name)  # what call_tool checks results against

    def handshake(self, timeout: float, version: str | None = None) -> None:
        """``initialize`` offering ``version`` (None: the one offered last, at first the
        newest we speak), then ``notifications/initialized``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._offer = version or self._offer
        result = self._channel.request("initialize", {
            "protocolVersion": self._offer,
            "capabilities": self._handlers.capabilities(self._offer),
            "clientInfo": {"name": "sark-sync", "version": __version__},
        }, timeout)
        self._ping_method = "ping"
        self._accept_handshake(result)
        self._channel.notify("notifications/initialized",
                             timeout=max(0.0, deadline - time.monotonic()))
        log.debug("%s speaks MCP %s: %s", self.name, self.protocol_version, self.server_info)
        self._subscriptions.after_handshake()  # a renewed session: level, subscriptions again
        # ... and its tools may differ, and a list change sent meanwhile was lost: relist.
        self._tool_cache.notified("notifications/tools/list_changed")

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
        # List changes come only on subscriptions/listen: without it the cached tools (and
        # the retry-safety their annotations give) would never go stale at this version.
        self._subscriptions.listen_for_changes()

    # -- operations ------------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> None:
        """Check that the server answers, within ``timeout``. 2026-07-28 removed ``ping``: at
        that version the check is a ``server/discover`` (answered by every modern server,
        cheap, without side effect)."""
        self._channel.request(self._ping_method, None, self._timeout(timeout))

    def list_tools(self, *, timeout: float | None = None) -> list[ToolInfo]:
        """Every tool of the server as a :class:`ToolInfo`, following ``nextCursor`` (one
        timeout for all pages). A malformed tool is skipped with a warning. The listing is
        kept: calls check their results against it (``outputSchema``)."""
        return self._list_tools(self._timeout(timeout))[0]

    def list_mcp_tools(self, *, timeout: float | None = None) -> list[Mapping[str, Any]]:
        """Every tool of the server as the MCP ``Tool`` object it sent (``inputSchema``,
        ``outputSchema``, ``annotations``, ``_meta`` ... exactly as declared), following
        ``nextCursor`` (one timeout for all pages). For what :class:`ToolInfo` does not keep,
        e.g. to re-publish the tools (the LocalGateway does). Non-object items are skipped."""
        return self._list_tools(self._timeout(timeout))[1]

    def tool_retry_safe(self, name: str) -> bool | None:
        """Whether tool ``name`` is annotated read-only or idempotent, as last listed (None:
        not listed). The client's pools ask this to decide whether a call is tried again."""
        return self._tool_cache.retry_safe(name)

    def _list_tools(self, timeout: float) -> tuple[list[ToolInfo], list[Mapping[str, Any]]]:
        generation = self._tool_cache.generation()
        deadline = time.monotonic() + timeout
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
                return self._tool_cache.store(tools, generation), tools
            cursor = next_cursor
        raise ProtocolError(f"{self.name!r} returned more than {MAX_TOOL_PAGES} tools/list pages",
                            server=self.name)

    def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, *,
        timeout: float | None = None, progress: ProgressHandler | None = None,
        cancel: CancelToken | None = None,
    ) -> ToolResult:
        """Call a tool and return its :class:`ToolResult` (a tool error is a result).

        ``progress(progress, total, message)`` receives the server's progress notifications
        for this call, in order, on the session's callbacks thread (all of them before a
        result is returned: :mod:`._mcp_progress`). On timeout the server is sent
        ``notifications/cancelled``, and so it is when ``cancel`` (a
        :class:`~sark_sync.CancelToken`) is cancelled: the call then raises
        :class:`~sark_sync.CallCancelled` at once (before anything is sent if it was
        cancelled already). A tool not listed yet, or listed before the server said its tools
        changed, is listed first (within ``timeout``): a result must keep the ``outputSchema``
        its tool declares, else :class:`ProtocolError` (:mod:`._mcp_output`).
        """
        if not isinstance(name, str) or not name:
            raise ValidationError("tool name must be a non-empty str")
        if progress is not None:
            check_callback("progress", progress, error=ValidationError)
        token = None if cancel is None else check_token(cancel)
        params: dict[str, Any] = {"name": name, "arguments": check_arguments(arguments)}
        started = time.perf_counter()
        seconds = self.timeout if timeout is None else self._timeout(timeout)
        listed, tool = self._tool_cache.lookup(name)
        if token is None and progress is None:  # both blocks below would do nothing
            result = self._send_call(name, params, seconds, started, listed)
        else:
            with cancellable(token), self._progress.tracking(params, progress):
                result = self._send_call(name, params, seconds, started, listed)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            answer = ToolResult.from_call_result(result, server=self.name, tool=name,
                                                 latency_ms=latency_ms)
        except ValueError as exc:
            raise ProtocolError(f"malformed tools/call result from {self.name!r}: {exc}",
                                server=self.name, tool=name) from None
        if listed:
            tool = self._tool_cache.get(name)
        if tool is None or tool.info.output_schema is None:
            return answer  # nothing to check: check_output's first rule, without the call
        return check_output(answer, tool, kind=self.kind)

    def _send_call(self, name: str, params: dict[str, Any], seconds: float, started: float,
                   listed: bool) -> Any:
        """The ``tools/call`` request of :meth:`call_tool`, listing the tools first if
        ``listed``: its result."""
        try:
            scope = current_cancellation()
            if scope is not None and scope.cancelled:
                raise_if_cancelled("before it was sent", server=self.name, tool=name)
            left = seconds  # exactly the caller's, unless a listing took some of it
            if listed:
                self._refresh_tools(seconds)
                raise_if_cancelled("before it was sent", server=self.name, tool=name)
                left = max(0.0, seconds - (time.perf_counter() - started))
            return self._channel.request("tools/call", params, left)
        except (TransportTimeout, DeadlineExceeded) as exc:
            if not listed:
                raise
            raise _caller_timeout(exc, seconds) from None

    def _refresh_tools(self, timeout: float) -> None:
        """List the tools before a call (see :meth:`call_tool`). A server that cannot list
        them is called all the same, unchecked; a listing cut off never ran the tool.
        Concurrent calls wait for one listing (within their timeout) instead of each making
        one."""
        started = time.monotonic()
        lock = self._tool_cache.refresh_lock
        if not lock.acquire(timeout=timeout):
            raise mark_unsent(TransportTimeout(
                f"{self.kind} {self.name!r} did not answer tools/list within {timeout:.3g}s",
                server=self.name))
        try:
            if not self._tool_cache.stale:
                return  # listed by the call we waited for
            generation = self._tool_cache.generation()
            self._list_tools(max(0.0, timeout - (time.monotonic() - started)))
        except (RPCError, ProtocolError) as exc:
            log.warning("%s: could not list the tools before a call (%s): results are not "
                        "checked against their outputSchema", self.name, type(exc).__name__)
            self._tool_cache.store([], generation)
        except GatewayError as exc:
            raise mark_unsent(exc) from None
        finally:
            lock.release()

    def notify_roots_changed(self, *, timeout: float | None = None) -> None:
        """Tell the server that the roots changed (it asks for them again). Only a session
        whose ``roots=`` is a callable declares that they may: else :class:`ValidationError`.
        At 2026-07-28 nothing is sent: the server asks for the roots in each request."""
        self._handlers.check_roots_change()
        if self._ping_method != "server/discover":
            self._channel.notify("notifications/roots/list_changed", None,
                                 self._timeout(timeout))

    def set_logging_level(self, level: str, *, timeout: float | None = None) -> None:
        """Ask for the server's log messages of ``level`` and above (``debug``, ``info``,
        ``notice``, ``warning``, ``error``, ``critical``, ``alert``, ``emergency``; else
        :class:`ValidationError`); they go to ``on_log`` or to the Python logger
        ``sark_sync.mcp.<name>``. :class:`CapabilityNotSupported` if the server did not
        declare ``logging``. At 2026-07-28 nothing is sent: every later request asks for it."""
        self._subscriptions.set_level(level, self._timeout(timeout))

    def subscribe_resource(self, uri: str, callback: UpdateHandler, *,
                           timeout: float | None = None) -> None:
        """Call ``callback(uri)`` (on the session's callbacks thread) each time the server
        says the resource ``uri`` changed; read it again there to see how.
        :class:`CapabilityNotSupported` unless the server declared ``resources.subscribe``."""
        self._subscriptions.subscribe(uri, callback, self._timeout(timeout))

    def unsubscribe_resource(self, uri: str, *, timeout: float | None = None) -> None:
        """Stop the updates of ``uri`` (never subscribed: nothing is sent)."""
        self._subscriptions.unsubscribe(uri, self._timeout(timeout))

    def _stop_callbacks(self) -> None:
        """Close the listening stream of 2026-07-28 and join the callbacks thread (bounded)."""
        self._subscriptions.close()
        self._callbacks.close()

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
        elif not self._handlers.dispatch(request, self._channel):  # on a handler thread
            self._channel.respond_error(request.id, jsonrpc.METHOD_NOT_FOUND,
                                          f"method not supported by sark-sync: {request.method}")

    def _on_notification_message(self, message: jsonrpc.Notification) -> None:
        params = message.params or {}
        self._tool_cache.notified(message.method)  # a list_changed: relist before next use
        if message.method == "notifications/progress":
            self._progress.deliver(params)
            return
        if message.method == "notifications/message":
            self._log.handle(params)
        elif message.method == "notifications/resources/updated":
            self._subscriptions.updated(params)
        elif message.method == ACKNOWLEDGED:
            self._subscriptions.acknowledged(params)
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


def _caller_timeout(exc: GatewayError, seconds: float) -> GatewayError:
    """``exc`` reporting the caller's timeout for the call (tools were listed first within
    it: the channel only knew what was left of it)."""
    error = copy.copy(exc)
    error.message = re.sub(r"did not answer \S+ within \S+s\b",
                           f"did not answer tools/call within {seconds:.3g}s", exc.message)
    error.args = (error.message,)
    if isinstance(error, DeadlineExceeded) and error.timeout is not None:
        error.timeout = seconds
    return error
