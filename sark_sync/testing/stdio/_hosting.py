"""Stdio MCP servers hosted by a LocalGateway, through sark_sync's own stdio client.

Design: one :class:`StdioHost` per hosted server holds how to start it (command, environment,
working directory, timeouts) and the running :class:`~sark_sync.LocalServer`. It is the
server's :class:`~..gateway._tool_calls.Upstream`: the registry forwards every invoke of the
server to :meth:`StdioHost.call` and reads :meth:`StdioHost.health` on every listing, so a
crash shows as ``"unhealthy"`` at once, without a watcher thread. :class:`StdioHosting` holds
the hosts of one gateway and starts and closes them with it.

Contract of a call, as the gateway answers it:

- the server's ``CallToolResult`` (``content``, ``structuredContent``, ``isError``), a tool
  error included, is the result of a 200;
- the process exited → 502 ``upstream_error`` naming the exit code (never its stderr, which is
  the server's business and may hold anything; it goes to the ``sark_sync.stdio`` log);
- no answer within ``call_timeout`` → 504 ``upstream_timeout`` (the server is sent
  ``notifications/cancelled`` and stays up);
- a tool the server does not list → 404 ``not_found`` before anything is sent, as for any
  server's unknown tool (:meth:`StdioHost.has_tool`, by a :class:`~._tool_list.ToolList`);
- a JSON-RPC error -32602 (Invalid params) → 400 (the arguments were refused), or 404 if the
  tool left the list meanwhile; any other JSON-RPC error or an unreadable answer → 502.

A crashed server is started again by the next call for it, at most :data:`MAX_RESTARTS` times
in :data:`RESTART_WINDOW` seconds; past that the call answers 502 without restarting, until
the window moves on. One lock per host makes concurrent callers share a single restart. An
idle server is never stopped. Closing is bounded by the stdio transport's shutdown (stdin
close, SIGTERM, SIGKILL, each bounded); a closed host never restarts.

Health changes are reported to ``on_health(name, status)`` (the gateway publishes them as
``server_health`` events), once per change and in order: ``"healthy"`` when the server
(re)starts, ``"unhealthy"`` when the gateway notices it is down: a call finds it exited, a
restart fails, or a listing reads its health. Without a watcher thread, a server that dies
while idle is noticed at the next call or listing, not at the moment it dies. ``"unknown"``
(not started, closed) is never reported: a closed host reports nothing.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..._exceptions import (
    GatewayError,
    ProcessExitedError,
    RPCError,
    TransportTimeout,
)
from ..._validation import validate_command, validate_env
from ...transports import LocalServer
from ..gateway._tool_calls import UpstreamFailure
from ._tool_list import ToolList

__all__ = ["CALL_TIMEOUT", "MAX_RESTARTS", "RESTART_WINDOW", "STARTUP_TIMEOUT", "StdioHost",
           "StdioHosting"]

log = logging.getLogger("sark_sync.testing")

#: JSON-RPC "Invalid params": what an MCP server answers to arguments it refuses.
INVALID_PARAMS = -32602
#: Restarts of a crashed hosted server allowed within ``RESTART_WINDOW`` seconds.
MAX_RESTARTS = 3
#: The window, in seconds, in which restarts are counted.
RESTART_WINDOW = 60.0
#: Default seconds a hosted server may take from spawn to the end of the MCP handshake.
STARTUP_TIMEOUT = 10.0
#: Default seconds a hosted server may take to answer one tool call (then 504).
CALL_TIMEOUT = 30.0


ToolsListed = Callable[[str, Sequence[Mapping[str, Any]]], object]
HealthChanged = Callable[[str, str], object]


class StdioHost:
    """One hosted stdio server: how to start it, the running process, its restart budget.

    :param on_tools: ``on_tools(name, tools)`` receives the MCP tool objects each time the
        server (re)starts, to put them in the catalogue.
    :param on_health: ``on_health(name, status)`` is called on each change of health (see
        the module docstring), under a lock of this host: it must not call back into it.
    :param clock: monotonic seconds, injectable so restart windows can be tested.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        inherit_env: bool,
        startup_timeout: float,
        call_timeout: float,
        on_tools: ToolsListed,
        on_health: HealthChanged | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        command, env = validate_command(command), validate_env(env)
        for what, seconds in (("startup_timeout", startup_timeout), ("call_timeout", call_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ValueError(f"{what} must be a number of seconds > 0, got {seconds!r}")
        self.name = name
        self.command = command
        self.env = env
        self.cwd = cwd
        self.inherit_env = inherit_env
        self.startup_timeout = float(startup_timeout)
        self.call_timeout = float(call_timeout)
        self._on_tools = on_tools
        self._on_health = on_health
        self._clock = clock
        self._health_lock = threading.Lock()  # reports changes one at a time, in order
        self._reported = "unknown"
        self._restart_lock = threading.Lock()  # one start or restart at a time
        self._state_lock = threading.Lock()  # guards _server and _closed, held briefly
        self._server: LocalServer | None = None
        self._tools = ToolList()  # what the server last listed: an unknown tool is a 404
        self._closed = False
        self._failed = False
        self._restarts: collections.deque[float] = collections.deque()
        self._abandoned: list[LocalServer] = []  # dead servers shut down in the background

    def __repr__(self) -> str:
        return f"<StdioHost {self.name!r} {self.health()}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and list its tools; raise what :class:`LocalServer` raises
        (:class:`ProcessStartError`, :class:`TransportTimeout`, :class:`ProtocolError` ...)."""
        with self._restart_lock:
            self._launch()

    def close(self) -> None:
        """Stop the server for good (bounded); idempotent."""
        with self._state_lock:
            self._closed = True
            server, self._server = self._server, None
            abandoned, self._abandoned = self._abandoned, []
        if server is not None:
            server.close()
        for dead in abandoned:  # waits (bounded) for their ladders: no zombie outlives us
            dead.close()

    def health(self) -> str:
        """``"healthy"`` while the process runs, ``"unhealthy"`` once it exited or failed to
        start, ``"unknown"`` before it started and after it was closed."""
        server = self._server
        if server is None:
            status = "unhealthy" if self._failed and not self._closed else "unknown"
        else:
            status = "healthy" if server.alive else "unhealthy"
        self._report(status)
        return status

    def _report(self, status: str) -> None:
        with self._health_lock:
            if status == "unknown" or status == self._reported or self._closed:
                return
            self._reported = status
            if self._on_health is not None:
                self._on_health(self.name, status)

    @property
    def pid(self) -> int | None:
        server = self._server
        return server.pid if server is not None else None

    def _launch(self) -> None:
        """Start a new process (the caller holds the restart lock) and publish it."""
        server = LocalServer(
            self.command, name=self.name, env=self.env, inherit_env=self.inherit_env,
            cwd=self.cwd, timeout=self.call_timeout, startup_timeout=self.startup_timeout,
            on_notification=self._tools.notified,
        )
        try:
            server.start()
            generation = self._tools.generation()
            tools = server.list_mcp_tools(timeout=self.startup_timeout)
        except BaseException:
            server.close()
            self._failed = True
            self._report("unhealthy")
            raise
        with self._state_lock:
            closed = self._closed
            if not closed:
                self._server, self._failed = server, False
                self._tools.store(tools, generation)
        if closed:
            server.close()
            raise UpstreamFailure(502, f"stdio server {self.name!r} is stopped")
        self._report("healthy")
        try:
            self._on_tools(self.name, tools)
        except KeyError:  # unregistered meanwhile; remove_server() closes it next
            log.debug("stdio server %s started after it was removed", self.name)

    def _running(self) -> LocalServer:
        """The live server, restarted if it crashed and the restart budget allows."""
        server = self._server
        if server is not None and server.alive:
            return server
        with self._restart_lock:
            with self._state_lock:
                if self._closed:
                    raise UpstreamFailure(502, f"stdio server {self.name!r} is stopped")
                dead = self._server
            if dead is not None and dead.alive:
                return dead  # another caller restarted it meanwhile
            code = dead.returncode if dead is not None else None
            self._report("unhealthy")
            if dead is not None:
                # Its shutdown ladder (a server that ignores SIGTERM takes seconds) goes on in
                # the background: the caller only waits for the new start.
                dead.abandon()
                with self._state_lock:
                    self._abandoned = [s for s in self._abandoned if s.returncode is None]
                    self._abandoned.append(dead)
            now = self._clock()
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                raise UpstreamFailure(
                    502,
                    f"stdio server {self.name!r} exited (code {code}) and was restarted "
                    f"{len(self._restarts)} times in {RESTART_WINDOW:g}s: not restarting it "
                    "again yet",
                )
            self._restarts.append(now)
            log.warning("restarting stdio server %s (exit code %s)", self.name, code)
            try:
                self._launch()
            except GatewayError as exc:
                raise UpstreamFailure(
                    502, f"stdio server {self.name!r} could not be restarted: {exc.message}"
                ) from None
            server = self._server
            assert server is not None
            return server

    # -- the list of tools -----------------------------------------------------------------

    def has_tool(self, tool: str) -> bool:
        """Whether the server lists ``tool`` (:meth:`ToolList.has`); a listing made for it
        restarts a crashed server, as a call would. :class:`UpstreamFailure` (not
        ``reached``) if it cannot be listed."""
        return self._tools.has(tool, self._list_again)

    def _list_again(self) -> None:
        """List the tools again and give them to ``on_tools`` too: the catalogue shows what
        a 404 was decided by."""
        server = self._running()
        generation = self._tools.generation()
        try:
            tools = server.list_mcp_tools(timeout=self.call_timeout)
        except ProcessExitedError as exc:
            log.debug("stdio server %s: %s", self.name, exc)  # the stderr tail, for the log
            self._report("unhealthy")
            raise UpstreamFailure(502, exc.message) from None
        except TransportTimeout:
            raise UpstreamFailure(504, f"stdio server {self.name!r} did not list its tools "
                                  f"within {self.call_timeout:g}s") from None
        except GatewayError as exc:  # RPCError, ProtocolError
            raise UpstreamFailure(502, f"stdio server {self.name!r} could not list its tools: "
                                  f"{exc.message}") from None
        with self._state_lock:
            if self._server is not server:  # restarted meanwhile: its own listing is newer
                return
            self._tools.store(tools, generation)
        try:
            self._on_tools(self.name, tools)
        except KeyError:  # unregistered meanwhile
            log.debug("stdio server %s listed after it was removed", self.name)

    # -- calls -----------------------------------------------------------------------------

    def call(self, tool: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Call ``tool`` and return its CallToolResult; :class:`UpstreamFailure` otherwise."""
        server = self._running()
        try:
            result = server.call_tool(tool, parameters, timeout=self.call_timeout)
        except ProcessExitedError as exc:
            log.debug("stdio server %s: %s", self.name, exc)  # the stderr tail, for the log
            self._report("unhealthy")
            raise UpstreamFailure(502, exc.message, reached=True) from None
        except TransportTimeout:
            raise UpstreamFailure(
                504, f"stdio server {self.name!r} did not answer {tool} within "
                f"{self.call_timeout:g}s", reached=True
            ) from None
        except RPCError as exc:
            # -32602 Invalid params: the caller's arguments, not the upstream, are at fault;
            # some servers answer it to an unknown tool too: one that left the list since
            # has_tool() is a 404.
            if exc.code == INVALID_PARAMS and tool not in self._tools:
                raise UpstreamFailure(404, f"tool {tool!r} not found on server {self.name!r}",
                                      reached=True) from None
            status = 400 if exc.code == INVALID_PARAMS else 502
            raise UpstreamFailure(
                status, f"stdio server {self.name!r} answered JSON-RPC error {exc.code}: "
                f"{exc.rpc_message}", reached=True
            ) from None
        except GatewayError as exc:  # ProtocolError: an answer came, unreadable
            raise UpstreamFailure(502, exc.message, reached=True) from None
        answer: dict[str, Any] = {"content": [dict(block) for block in result.content]}
        if result.structured is not None:
            answer["structuredContent"] = dict(result.structured)
        answer["isError"] = result.is_error
        return answer


class StdioHosting:
    """The stdio hosts of one gateway: started with it, closed with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, StdioHost] = {}

    def add(self, host: StdioHost) -> None:
        with self._lock:
            self._hosts[host.name] = host

    def pop(self, name: str) -> StdioHost | None:
        with self._lock:
            return self._hosts.pop(name, None)

    def get(self, name: str) -> StdioHost | None:
        with self._lock:
            return self._hosts.get(name)

    def start_all(self) -> None:
        """Start every host in turn; if one fails, close those started and re-raise."""
        with self._lock:
            hosts = list(self._hosts.values())
        started: list[StdioHost] = []
        try:
            for host in hosts:
                host.start()
                started.append(host)
        except BaseException:
            self._close(started)
            raise

    def close_all(self) -> None:
        """Close every host, in parallel so that stop() waits for the slowest one only."""
        with self._lock:
            hosts = list(self._hosts.values())
        self._close(hosts)

    @staticmethod
    def _close(hosts: list[StdioHost]) -> None:
        if len(hosts) <= 1:
            for host in hosts:
                host.close()
            return
        threads = [
            threading.Thread(target=host.close, name=f"sark-local-gateway-close-{host.name}")
            for host in hosts
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each close is bounded by the transport's shutdown
