"""The client's local MCP servers: started on first use, restarted within a policy.

A :class:`GatewayClient` routes calls for a name in ``local_servers`` (or a server attached
with ``connect_local_server``) here. Each entry keeps its command, so a server that crashed is
started again by the next call that needs it, within the :class:`RestartPolicy` and the
call's deadline; one lock per entry makes concurrent callers share a single restart. An idle
server is never stopped. After ``fork()`` the child forgets the parent's processes (never
signalling or waiting on them) and starts its own on first use.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .._config import RestartPolicy
from .._deadline import Deadline
from .._exceptions import (
    ClientClosedError,
    ConfigurationError,
    ProcessExitedError,
    ValidationError,
)
from .._models import ToolInfo, ToolResult
from .._validation import validate_command, validate_name
from ._mcp_handlers import HANDLER_OPTIONS, ClientHandlers, check_handler_options
from ._mcp_options import (
    check_callback,
    check_cwd,
    check_env,
    check_flag,
    check_local_servers,
    check_restart,
    check_seconds,
)
from ._mcp_progress import ProgressHandler
from ._mcp_session import LocalServer

__all__ = ["LocalServerPool", "ServerSpec"]

log = logging.getLogger("sark_sync.stdio")


class ServerSpec:
    """How to start one local server: command, environment, working directory.

    Every argument is checked here, where it is given: :class:`ConfigurationError` names the
    argument and the rule (``where`` says which server, e.g. ``local_servers['files']``) and
    never quotes an environment value."""

    __slots__ = ("command", "cwd", "env", "handlers", "inherit_env", "on_log",
                 "startup_timeout")

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: str | None = None, inherit_env: bool = False,
                 startup_timeout: float | None = None, *, where: str = "ServerSpec",
                 on_log: Callable[[Any], None] | None = None, **handlers: Any) -> None:
        try:
            self.command = validate_command(command)
        except ValidationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        self.env = check_env(f"{where}.env", env)
        self.cwd = check_cwd(f"{where}.cwd", cwd)
        self.inherit_env = check_flag(f"{where}.inherit_env", inherit_env)
        self.startup_timeout = check_seconds(f"{where}.startup_timeout", startup_timeout,
                                             allow_none=True)
        self.on_log = check_callback(f"{where}.on_log", on_log)  # the server's log messages
        #: sampling, elicitation, roots, handler_timeout: checked now, given to each session.
        self.handlers = check_handler_options(handlers, where=where, error=ConfigurationError)
        try:
            ClientHandlers(where, **self.handlers)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}.{exc.message}") from None

    @classmethod
    def coerce(cls, name: str, value: object) -> ServerSpec:
        """A spec from a command list or a mapping ``{"command": [...], "env": {...}, ...}``."""
        where = f"local_servers[{name!r}]"
        if isinstance(value, ServerSpec):
            return value
        if isinstance(value, Mapping):
            unknown = {str(key) for key in value} - {
                "command", "env", "cwd", "inherit_env", "startup_timeout", "on_log",
                *HANDLER_OPTIONS}
            if unknown or "command" not in value:
                raise ConfigurationError(
                    f"{where} needs 'command' and may have env, cwd, inherit_env, "
                    f"startup_timeout, on_log, {', '.join(HANDLER_OPTIONS)} (unknown: "
                    f"{sorted(unknown)})")
            options = dict(value)
            return cls(options.pop("command"), **options, where=where)
        if isinstance(value, (list, tuple)) and value and all(isinstance(p, str) for p in value):
            return cls(value, where=where)
        raise ConfigurationError(
            f"{where} must be a command list like ['python', 'server.py'] or a "
            "mapping with 'command'")


class _Entry:
    __slots__ = ("lock", "managed", "restarts", "retry_safe", "server", "spawned", "spec")

    def __init__(self, spec: ServerSpec, managed: bool) -> None:
        self.spec = spec
        self.managed = managed  # from local_servers (restartable), not a user-held session
        self.server: LocalServer | None = None  # the last one spawned, alive or not
        self.spawned = False  # every spawn after the first is a restart, failed or not
        self.lock = threading.Lock()
        self.restarts: collections.deque[float] = collections.deque()
        self.retry_safe: dict[str, bool] = {}


class LocalServerPool:
    """Local servers by name. Thread-safe."""

    def __init__(self, specs: Mapping[str, object] | None, restart: RestartPolicy,
                 *, startup_timeout: float, on_notification: Callable[..., None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._restart = check_restart(restart)
        startup = check_seconds("startup_timeout", startup_timeout)
        assert startup is not None
        self.startup_timeout = startup
        self._on_notification = check_callback("on_notification", on_notification)
        self._clock = clock
        #: How the retry loop waits between attempts at a tool (injectable for tests).
        self.sleep = sleep
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._abandoned: list[LocalServer] = []  # given up on; close() waits for their end
        self._closed = False
        for name, value in check_local_servers(specs).items():
            try:
                validate_name(name, "local server")
            except ValidationError as exc:
                raise ConfigurationError(f"local_servers: {exc}") from None
            self._entries[name] = _Entry(ServerSpec.coerce(name, value), managed=True)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def attach(self, server: LocalServer) -> None:
        """Route calls for ``server.name`` to a session the caller started."""
        validate_name(server.name, "local server")
        with self._lock:
            if self._closed:
                raise ClientClosedError("this GatewayClient is closed")
            current = self._entries.get(server.name)
            taken = current is not None and (current.managed or (
                current.server is not None and current.server.alive
                and current.server is not server))
            if taken:
                raise ConfigurationError(
                    f"a local server named {server.name!r} exists already: pass name=")
            entry = _Entry(ServerSpec(["<attached>"]), managed=False)
            entry.server = server
            self._entries[server.name] = entry

    def connect(
        self, command: Sequence[str], *, name: str | None, env: Mapping[str, str] | None,
        cwd: str | None, inherit_env: bool, timeout: float, startup_timeout: float | None,
        on_notification: Callable[[str, Mapping[str, Any]], None] | None,
        on_log: Callable[[Any], None] | None = None,
        handlers: Mapping[str, Any] | None = None,
    ) -> LocalServer:
        """Start a session the caller holds, and route calls for its name to it."""
        if name is not None:
            validate_name(name, "local server")
        check_env("env", env, error=ValidationError)
        check_cwd("cwd", cwd, error=ValidationError)
        check_flag("inherit_env", inherit_env, error=ValidationError)
        check_seconds("timeout", timeout, error=ValidationError)
        check_seconds("startup_timeout", startup_timeout, error=ValidationError,
                      allow_none=True)
        check_callback("on_notification", on_notification, error=ValidationError)
        check_callback("on_log", on_log, error=ValidationError)
        server = LocalServer(
            command, name=name, env=env, cwd=cwd, inherit_env=inherit_env, timeout=timeout,
            startup_timeout=self.startup_timeout if startup_timeout is None else startup_timeout,
            on_notification=on_notification, on_log=on_log, **(handlers or {}),
        )
        server.start()
        try:
            self.attach(server)
        except BaseException:
            server.close()
            raise
        return server

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
        """One attempt at ``tool`` on ``name`` (started or restarted first, as the restart
        policy allows), within the deadline; the client's pipeline retries."""
        server = self.get(name, deadline)
        timeouts = deadline.timeouts
        budget = deadline.remaining() if timeouts is None else deadline.bound(timeouts.read)
        if budget <= 0:
            raise deadline.exceeded(f"before calling {name}/{tool}", attempts=0, server=name,
                                    tool=tool)
        return server.call_tool(tool, arguments, timeout=budget, progress=progress)

    def list_tools(self, name: str, deadline: Deadline) -> list[ToolInfo]:
        tools = self.get(name, deadline).list_tools(timeout=max(deadline.remaining(), 0.001))
        self._entries[name].retry_safe = {t.name: t.annotations.retry_safe for t in tools}
        return tools

    def get(self, name: str, deadline: Deadline) -> LocalServer:
        """The running server ``name``, started or restarted as the policy allows."""
        entry = self._entries[name]
        server = entry.server
        if server is not None and server.alive:
            return server
        if not entry.lock.acquire(timeout=deadline.remaining()):
            raise deadline.exceeded(f"waiting for local server {name!r} to start", attempts=0,
                                    server=name)
        try:
            if self._closed:
                raise ClientClosedError("this GatewayClient is closed")
            server = entry.server
            if server is not None and server.alive:
                return server
            if not entry.managed:
                raise ProcessExitedError(
                    f"local MCP server {name!r} (attached with connect_local_server) is not "
                    "running; connect it again", server=name,
                    returncode=server.returncode if server else None,
                    stderr_tail=server.stderr_tail if server else "")
            if entry.spawned:
                self._before_restart(name, entry, server, deadline)
            return self._start(name, entry, deadline)
        finally:
            entry.lock.release()

    def _before_restart(self, name: str, entry: _Entry, dead: LocalServer | None,
                        deadline: Deadline) -> None:
        if dead is not None:
            self._abandon(dead)  # reaped in the background, within the shutdown ladder
        now = self._clock()
        while entry.restarts and now - entry.restarts[0] > self._restart.window:
            entry.restarts.popleft()
        if len(entry.restarts) >= self._restart.max_restarts:
            raise ProcessExitedError(
                f"local MCP server {name!r} exited and was restarted {len(entry.restarts)} "
                f"times in {self._restart.window:g}s: not restarting it again yet",
                server=name, returncode=dead.returncode if dead else None,
                stderr_tail=dead.stderr_tail if dead else "")
        wait = self._restart.backoff * 2 ** len(entry.restarts)
        if wait >= deadline.remaining():
            raise deadline.exceeded(f"before restarting local server {name!r}", attempts=0,
                                    server=name)
        self.sleep(wait)
        entry.restarts.append(self._clock())
        log.warning("restarting local MCP server %s (exit code %s)", name,
                    dead.returncode if dead else None)

    def _start(self, name: str, entry: _Entry, deadline: Deadline) -> LocalServer:
        """Spawn and initialize within the deadline. The spawn counts as soon as it is tried:
        a server that dies in its handshake uses up the restart policy like any other."""
        spec = entry.spec
        startup = self.startup_timeout if spec.startup_timeout is None else spec.startup_timeout
        if deadline.remaining() <= 0:
            raise deadline.exceeded(f"before starting local server {name!r}", attempts=0,
                                    server=name)
        server = LocalServer(
            spec.command, name=name, env=spec.env, inherit_env=spec.inherit_env, cwd=spec.cwd,
            startup_timeout=min(startup, deadline.remaining()),
            on_notification=self._notify(name), on_log=spec.on_log, **spec.handlers,
        )
        entry.spawned, entry.server = True, server
        server.start()
        try:
            tools = server.list_tools(timeout=max(deadline.remaining(), 0.001))
            entry.retry_safe = {t.name: t.annotations.retry_safe for t in tools}
        except Exception as exc:  # annotations only make retries possible; calls still work
            log.warning("could not list the tools of %s: %s", name, exc)
        return server

    def _notify(self, name: str) -> Callable[[str, Mapping[str, Any]], None] | None:
        handler = self._on_notification
        if handler is None:
            return None
        return lambda method, params: handler(name, method, params)

    def _abandon(self, server: LocalServer) -> None:
        server.abandon()
        with self._lock:
            self._abandoned = [s for s in self._abandoned if s.returncode is None]
            self._abandoned.append(server)

    def close(self) -> None:
        """Stop every server (each within the shutdown ladder), and wait for those given up
        on earlier to be reaped: nothing of the pool outlives it."""
        with self._lock:
            self._closed = True
            servers = [e.server for e in self._entries.values() if e.server is not None]
            servers += self._abandoned
            self._abandoned = []
        for server in servers:
            server.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's processes; keep the specs to start our own."""
        self._lock = threading.Lock()
        for server in self._abandoned:
            server.forget_after_fork()
        self._abandoned = []
        for entry in self._entries.values():
            if entry.server is not None:
                entry.server.forget_after_fork()
            if not entry.managed:
                # Kept, forgotten: a call for its name must fail here, not go to the gateway.
                entry.lock = threading.Lock()
                continue
            entry.server = None
            entry.spawned = False
            entry.lock = threading.Lock()
            entry.restarts.clear()
