"""LocalServer: a blocking MCP client session with one local server over stdio.

The MCP layer (handshake, tools, progress, the server's own requests) is
:class:`~._mcp_client.McpSession`'s; this module adds what is local: a
:class:`~sark_sync.transports.stdio.StdioTransport` channel to a child process it spawns,
the handshake bounded by its own ``startup_timeout``, and the process's lifecycle (a bounded
stop, abandon, fork).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence

from .._exceptions import TransportTimeout, ValidationError
from .._validation import validate_command, validate_name
from ..wire import jsonrpc
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
from ._mcp_logging import LogHandler
from ._mcp_options import check_cwd, check_env, check_flag, check_line_cap, check_seconds
from .stdio import StdioTransport

__all__ = ["DEFAULT_CALL_TIMEOUT", "DEFAULT_STARTUP_TIMEOUT", "LocalServer",
           "SUPPORTED_PROTOCOL_VERSIONS"]

log = logging.getLogger("sark_sync.stdio")

#: Seconds a server may take from spawn to answering ``initialize``.
DEFAULT_STARTUP_TIMEOUT = 10.0

class LocalServer(McpSession):
    """A started local MCP server and the session with it. Thread-safe; a context manager.

    :param command: the server's command line, e.g. ``["python", "server.py"]``.
    :param name: how errors, logs and breakers name it (default: the program's file name).
    :param env: variables added to the child's environment, which otherwise holds only
        HOME, LOGNAME, PATH, SHELL, TERM, USER and LANG; ``inherit_env=True`` passes the
        whole environment of this process instead.
    :param timeout: default seconds per request. ``startup_timeout`` bounds the handshake.
    :param on_notification: ``callback(method, params)`` for notifications other than
        progress (``notifications/message``, ``notifications/tools/list_changed`` ...).
    :param sampling: ``handler(SamplingRequest) -> SamplingResult`` (or its dict): the
        server may ask the client's LLM; ``elicitation``: ``handler(ElicitationRequest) ->
        ElicitationResult``: it may ask the user; ``roots``: the ``file://`` roots it may
        work in (a sequence, or ``callable(RootsRequest)`` asked each time). Only those given
        are declared; each handler runs on a thread of its own for at most
        ``handler_timeout`` seconds (see :mod:`._mcp_handlers`).
    :param on_log: ``callback(LogMessage)`` for the server's log messages (see
        ``set_logging_level``), on the session's callbacks thread; without it they go to
        the Python logger ``sark_sync.mcp.<name>``.

    >>> with LocalServer([sys.executable, "-m", "sark_sync.testing.demo_server"]) as server:
    ...     server.call_tool("echo", {"text": "hi"}).text                   # doctest: +SKIP
    'hi'

    Raises :class:`ProcessStartError` if the command cannot run, :class:`ProcessExitedError`
    if the server exits, :class:`TransportTimeout` if it does not answer in time,
    :class:`ProtocolError` for an unsupported protocol version or a malformed answer, and
    :class:`RPCError` for JSON-RPC errors.
    """

    kind = "local MCP server"

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
        sampling: SamplingHandler | None = None,
        elicitation: ElicitationHandler | None = None,
        roots: RootsSource | None = None,
        handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
        on_log: LogHandler | None = None,
    ) -> None:
        command = validate_command(command)
        if name is not None:
            validate_name(name, "local server")
        name = name or default_name(command)
        handlers = ClientHandlers(name, sampling=sampling, elicitation=elicitation, roots=roots,
                                  handler_timeout=handler_timeout, error=ValidationError)
        super().__init__(name, timeout=_seconds("timeout", timeout),
                         on_notification=on_notification, handlers=handlers, on_log=on_log)
        self.startup_timeout = _seconds("startup_timeout", startup_timeout)
        # The reader thread holds the transport; weak callbacks let this session be garbage
        # collected anyway, and the finalizer then stops the process (no orphan, no zombie).
        self._transport = StdioTransport(
            command, name=self.name, env=check_env("env", env, error=ValidationError),
            inherit_env=check_flag("inherit_env", inherit_env, error=ValidationError),
            cwd=check_cwd("cwd", cwd, error=ValidationError),
            max_line_bytes=check_line_cap("max_line_bytes", max_line_bytes,
                                          error=ValidationError),
            on_request=session_callback(self._on_request),
            on_notification=session_callback(self._on_notification_message),
        )
        self._channel = self._transport
        self._finalizer = weakref.finalize(self, self._transport.release)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalServer:
        """Spawn the server and complete the MCP handshake within ``startup_timeout``."""

        self._transport.start()
        try:
            self.handshake(self.startup_timeout)
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
        return self

    def close(self) -> None:
        """Stop the server (bounded: stdin close, SIGTERM, SIGKILL). Idempotent. A session
        that is garbage-collected, or still open at interpreter exit, is closed too. After a
        failed ``start()`` or ``abandon()``, waits for the background shutdown to end."""
        self._stop_callbacks()  # joined first: a callback may still call the server
        self._finalizer()
        self._transport.close()
        self._handlers.close()  # after the transport: a handler's call to the server ends

    def abandon(self) -> None:
        """Give the server up without waiting: pending calls fail at once, and the shutdown
        ladder (stdin close, SIGTERM, SIGKILL, reap) goes on in the background."""
        self._transport.abandon()

    def forget_after_fork(self) -> None:
        self._transport.forget_after_fork()
        self._handlers.forget_after_fork()

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


#: Programs whose first non-option argument names the server better than they do.
_LAUNCHERS = ("python", "python3", "node", "uv", "uvx", "npx", "deno", "bun", "ruby", "java")


def _seconds(what: str, value: object) -> float:
    seconds = check_seconds(what, value, error=ValidationError)
    assert seconds is not None
    return seconds


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
