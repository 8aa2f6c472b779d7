"""LocalServer: a blocking MCP client session with one local server over stdio.

This is the MCP layer on top of :class:`~sark_sync.transports.stdio.StdioTransport`:

- the handshake: ``initialize`` offering protocol version ``2025-11-25`` (accepting the four
  versions listed in ``docs/gateway/STDIO_TRANSPORT.md``, refusing any other with
  :class:`ProtocolError`), bounded by its own ``startup_timeout``, then
  ``notifications/initialized``;
- ``tools/list`` following ``nextCursor`` pages, ``tools/call`` returning the same
  :class:`ToolResult` as a gateway call, ``ping``;
- what the server sends unasked: it may ``ping`` us (answered), ask for anything else
  (answered -32601, method not found), and notify progress (to the call's ``progress``
  callback), log messages and list changes (to ``on_notification``).

Callbacks run on the transport's reader thread: keep them short; an exception in one is
logged, never propagated.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, TypeVar

from ..__version__ import __version__
from .._exceptions import ProtocolError, TransportTimeout, ValidationError
from .._models import ToolInfo, ToolResult
from .._validation import check_arguments, validate_command, validate_name
from ..wire import jsonrpc
from ._mcp_options import (
    check_callback,
    check_cwd,
    check_env,
    check_flag,
    check_line_cap,
    check_seconds,
)
from .stdio import StdioTransport

__all__ = ["LocalServer", "SUPPORTED_PROTOCOL_VERSIONS"]

log = logging.getLogger("sark_sync.stdio")

#: Protocol versions accepted in the handshake, newest first; the first is offered.
SUPPORTED_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Seconds a server may take from spawn to answering ``initialize``.
DEFAULT_STARTUP_TIMEOUT = 10.0
#: Seconds a request may take when the caller gives no timeout.
DEFAULT_CALL_TIMEOUT = 30.0
#: Pages of ``tools/list`` followed at most (a server looping on one cursor ends here).
MAX_TOOL_PAGES = 1000

T = TypeVar("T")
NotificationHandler = Callable[[str, Mapping[str, Any]], None]
ProgressHandler = Callable[[float, Optional[float], Optional[str]], None]


class LocalServer:
    """A started local MCP server and the session with it. Thread-safe; a context manager.

    :param command: the server's command line, e.g. ``["python", "server.py"]``.
    :param name: how errors, logs and breakers name it (default: the program's file name).
    :param env: variables added to the child's environment, which otherwise holds only
        HOME, LOGNAME, PATH, SHELL, TERM, USER and LANG; ``inherit_env=True`` passes the
        whole environment of this process instead.
    :param timeout: default seconds per request. ``startup_timeout`` bounds the handshake.
    :param on_notification: ``callback(method, params)`` for notifications other than
        progress (``notifications/message``, ``notifications/tools/list_changed`` ...).

    >>> with LocalServer([sys.executable, "-m", "sark_sync.testing.demo_server"]) as server:
    ...     server.call_tool("echo", {"text": "hi"}).text                   # doctest: +SKIP
    'hi'

    Raises :class:`ProcessStartError` if the command cannot run, :class:`ProcessExitedError`
    if the server exits, :class:`TransportTimeout` if it does not answer in time,
    :class:`ProtocolError` for an unsupported protocol version or a malformed answer, and
    :class:`RPCError` for JSON-RPC errors.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        max_line_bytes: int = jsonrpc.DEFAULT_MAX_LINE_BYTES,
        on_notification: NotificationHandler | None = None,
    ) -> None:
        command = validate_command(command)
        if name is not None:
            validate_name(name, "local server")
        self.name = name or default_name(command)
        self.timeout = _seconds("timeout", timeout)
        self.startup_timeout = _seconds("startup_timeout", startup_timeout)
        self._on_notification = check_callback("on_notification", on_notification,
                                               error=ValidationError)
        # The reader thread holds the transport; weak callbacks let this session be garbage
        # collected anyway, and the finalizer then stops the process (no orphan, no zombie).
        self._transport = StdioTransport(
            command, name=self.name, env=check_env("env", env, error=ValidationError),
            inherit_env=check_flag("inherit_env", inherit_env, error=ValidationError),
            cwd=check_cwd("cwd", cwd, error=ValidationError),
            max_line_bytes=check_line_cap("max_line_bytes", max_line_bytes,
                                          error=ValidationError),
            on_request=_weak(self._on_request),
            on_notification=_weak(self._on_notification_message),
        )
        self._finalizer = weakref.finalize(self, self._transport.release)
        self._progress: dict[str, ProgressHandler] = {}
        self._tokens = itertools.count(1)
        self.protocol_version: str | None = None
        self.server_info: Mapping[str, Any] = {}
        self.capabilities: Mapping[str, Any] = {}
        self.instructions: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalServer:
        """Spawn the server and complete the MCP handshake within ``startup_timeout``."""

        deadline = time.monotonic() + self.startup_timeout
        self._transport.start()
        try:
            result = self._transport.request("initialize", {
                "protocolVersion": SUPPORTED_PROTOCOL_VERSIONS[0],
                "capabilities": {},
                "clientInfo": {"name": "sark-sync", "version": __version__},
            }, self.startup_timeout)
            self._accept_handshake(result)
            self._transport.notify("notifications/initialized",
                                   timeout=max(0.0, deadline - time.monotonic()))
        except TransportTimeout:
            # The shutdown ladder may take seconds: it goes on in the background, so the
            # failed start costs its caller no more than startup_timeout.
            self._transport.abandon()
            raise TransportTimeout(
                f"local MCP server {self.name!r} did not complete the MCP handshake within "
                f"startup_timeout={self.startup_timeout:g}s", server=self.name) from None
        except BaseException:
            self._transport.abandon()
            raise
        log.debug("%s speaks MCP %s: %s", self.name, self.protocol_version, self.server_info)
        return self

    def _accept_handshake(self, result: Any) -> None:
        if not isinstance(result, Mapping):
            raise ProtocolError(f"{self.name!r} answered initialize with a non-object",
                                server=self.name)
        version = result.get("protocolVersion")
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ProtocolError(
                f"local MCP server {self.name!r} speaks protocol version {version!r}; sark_sync "
                f"supports {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}", server=self.name)
        self.protocol_version = version
        info, caps = result.get("serverInfo"), result.get("capabilities")
        self.server_info = info if isinstance(info, Mapping) else {}
        self.capabilities = caps if isinstance(caps, Mapping) else {}
        instructions = result.get("instructions")
        self.instructions = instructions if isinstance(instructions, str) else None

    def close(self) -> None:
        """Stop the server (bounded: stdin close, SIGTERM, SIGKILL). Idempotent. A session
        that is garbage-collected, or still open at interpreter exit, is closed too. After a
        failed ``start()`` or ``abandon()``, waits for the background shutdown to end."""
        self._finalizer()
        self._transport.close()

    def abandon(self) -> None:
        """Give the server up without waiting: pending calls fail at once, and the shutdown
        ladder (stdin close, SIGTERM, SIGKILL, reap) goes on in the background."""
        self._transport.abandon()

    def forget_after_fork(self) -> None:
        self._transport.forget_after_fork()

    def __enter__(self) -> LocalServer:
        if self.protocol_version is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"<LocalServer {self.name!r} pid={self.pid} {state}>"

    @property
    def pid(self) -> int | None:
        return self._transport.pid

    @property
    def returncode(self) -> int | None:
        return self._transport.returncode

    @property
    def alive(self) -> bool:
        return self._transport.alive

    @property
    def stderr_tail(self) -> str:
        """The last lines the server wrote to its stderr."""
        return self._transport.stderr_tail

    # -- operations ------------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> None:
        self._transport.request("ping", None, self._timeout(timeout))

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
            page = self._transport.request("tools/list", params,
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
            result = self._transport.request("tools/call", params, self._timeout(timeout))
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
            self._transport.respond(request.id, {})
        else:
            self._transport.respond_error(request.id, jsonrpc.METHOD_NOT_FOUND,
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


#: Programs whose first non-option argument names the server better than they do.
_LAUNCHERS = ("python", "python3", "node", "uv", "uvx", "npx", "deno", "bun", "ruby", "java")


def _seconds(what: str, value: object) -> float:
    seconds = check_seconds(what, value, error=ValidationError)
    assert seconds is not None
    return seconds


def _weak(method: Callable[[T], None]) -> Callable[[T], None]:
    """A callback that calls ``method`` while its object lives, and does nothing after."""
    ref = weakref.WeakMethod(method)

    def call(argument: T) -> None:
        bound = ref()
        if bound is not None:
            bound(argument)

    return call


def default_name(command: Sequence[str]) -> str:
    """A readable name for a command: ``["python", "-m", "pkg.server"]`` is ``pkg.server``,
    ``["node", "build/index.js"]`` is ``index.js``, ``["/usr/bin/mcp-git"]`` is ``mcp-git``."""
    program = os.path.basename(str(command[0])) if command else "server"
    if not any(program == launcher or program.startswith(launcher + ".")
               or (launcher == "python" and program.startswith("python"))
               for launcher in _LAUNCHERS):
        return program
    args = list(command[1:])
    if "-m" in args and args.index("-m") + 1 < len(args):
        return str(args[args.index("-m") + 1])
    for arg in args:
        if not str(arg).startswith("-"):
            return os.path.basename(str(arg))
    return program


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
