"""The servers and tools a LocalGateway exposes: its catalogue.

Design: one :class:`Registry` per gateway, guarded by one lock that is held only while the
catalogue is read or changed, never while a tool function runs (functions run in the HTTP
handler thread and may block). Listings are built from a snapshot, in insertion order, so
pagination is stable while the catalogue does not change.

A server added with ``add_server`` holds Python tool functions; how a call of one becomes a
``CallToolResult`` is :mod:`._tool_calls`.

A server may instead be backed by an :class:`~._tool_calls.Upstream` (a hosted stdio MCP
server): its tools are what the upstream listed, a call is forwarded to it, and its health is
read from it on every listing. Whether it has a tool is the upstream's answer
(:meth:`Registry.require` asks it, outside the lock, since it may list the tools again): an
unlisted tool is a 404 before anything is sent, as on any other server, whatever the server
itself would have answered.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._tool_calls import ToolFunction, Upstream, call_tool_result, forwarder

__all__ = [
    "NAME_PATTERN",
    "Registry",
    "UnknownName",
    "valid_name",
]

logger = logging.getLogger("sark_sync.testing")

#: Server and tool names accepted on the wire: the pattern the client checks before it sends
#: (``sark_sync._validation.NAME_PATTERN``), so no name can inject a path.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
TRANSPORTS = ("http", "sse", "stdio")
SENSITIVITY_LEVELS = ("low", "medium", "high", "critical")
HEALTH_STATUSES = ("healthy", "degraded", "unhealthy", "unknown")


class UnknownName(LookupError):
    """A server or tool that the registry does not hold; ``str()`` is the 404 message."""


def valid_name(name: object) -> bool:
    """Return whether ``name`` is a legal server or tool name."""
    return isinstance(name, str) and NAME_PATTERN.match(name) is not None


def _check_name(name: str, what: str) -> None:
    if not valid_name(name):
        raise ValueError(f"invalid {what} name {name!r}: must match {NAME_PATTERN.pattern}")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Tool:
    name: str
    func: ToolFunction
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any]
    sensitivity_level: str
    sensitive_params: list[str]
    #: What an upstream MCP tool declared besides: title, output_schema, icons, meta.
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self, server: str) -> dict[str, Any]:
        return {
            "tool_name": self.name,
            "server_name": server,
            "description": self.description,
            "sensitivity_level": self.sensitivity_level,
            "input_schema": copy.deepcopy(self.input_schema),
            "annotations": copy.deepcopy(self.annotations),
            "sensitive_params": list(self.sensitive_params),
            **copy.deepcopy(self.extra),
        }


@dataclass
class _Server:
    name: str
    server_url: str
    transport: str
    sensitivity_level: str
    authorized_teams: list[str]
    health_status: str
    server_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=_now_rfc3339)
    tools: dict[str, _Tool] = field(default_factory=dict)
    upstream: Upstream | None = None

    def info(self) -> dict[str, Any]:
        health = self.upstream.health() if self.upstream is not None else self.health_status
        return {
            "server_id": self.server_id,
            "server_name": self.name,
            "server_url": self.server_url,
            "transport": self.transport,
            "sensitivity_level": self.sensitivity_level,
            "authorized_teams": list(self.authorized_teams),
            "health_status": health,
            "tools_count": len(self.tools),
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass(frozen=True)
class _Raw:
    value: object


class Registry:
    """The thread-safe catalogue of servers (real and raw) and their tools."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Server | _Raw] = []
        self._servers: dict[str, _Server] = {}
        self._runs: Counter[tuple[str, str]] = Counter()

    def add_server(
        self,
        name: str,
        *,
        transport: str,
        sensitivity_level: str,
        authorized_teams: Iterable[str],
        health_status: str,
        server_url: str | None,
        upstream: Upstream | None = None,
    ) -> dict[str, Any]:
        _check_name(name, "server")
        _check_choice(transport, TRANSPORTS, "transport")
        _check_choice(sensitivity_level, SENSITIVITY_LEVELS, "sensitivity_level")
        _check_choice(health_status, HEALTH_STATUSES, "health_status")
        teams = [authorized_teams] if isinstance(authorized_teams, str) else list(authorized_teams)
        server = _Server(
            name=name,
            server_url=server_url or f"{transport}://local/{name}",
            transport=transport,
            sensitivity_level=sensitivity_level,
            authorized_teams=teams,
            health_status=health_status,
            upstream=upstream,
        )
        with self._lock:
            if name in self._servers:
                raise ValueError(f"server {name!r} already exists")
            self._servers[name] = server
            self._entries.append(server)
            return server.info()

    def remove_server(self, name: str) -> None:
        with self._lock:
            server = self._servers.pop(name, None)
            if server is None:
                raise KeyError(name)
            self._entries.remove(server)

    def set_health(self, name: str, status: str) -> bool:
        """Set the health of a server without upstream; return whether it changed."""
        _check_choice(status, HEALTH_STATUSES, "health_status")
        with self._lock:
            server = self._servers.get(name)
            if server is None:
                raise KeyError(name)
            if server.upstream is not None:
                raise ValueError(f"server {name!r} reports the health of its process")
            changed = server.health_status != status
            server.health_status = status
            return changed

    def add_raw(self, value: object) -> None:
        with self._lock:
            self._entries.append(_Raw(copy.deepcopy(value)))

    def add_tool(
        self,
        server: str,
        name: str,
        func: ToolFunction,
        *,
        description: str,
        input_schema: Mapping[str, Any] | None,
        annotations: Mapping[str, Any] | None,
        sensitivity_level: str,
        sensitive_params: Iterable[str],
    ) -> dict[str, Any]:
        _check_name(name, "tool")
        _check_choice(sensitivity_level, SENSITIVITY_LEVELS, "sensitivity_level")
        if not callable(func):
            raise TypeError("a tool function must be callable")
        doc = inspect.getdoc(func) or ""
        tool = _Tool(
            name=name,
            func=func,
            description=description or (doc.splitlines()[0] if doc else ""),
            input_schema=copy.deepcopy(dict(input_schema or {"type": "object"})),
            annotations=copy.deepcopy(dict(annotations or {})),
            sensitivity_level=sensitivity_level,
            sensitive_params=list(sensitive_params),
        )
        with self._lock:
            target = self._servers.get(server)
            if target is None:
                raise KeyError(server)
            if name in target.tools:
                raise ValueError(f"tool {name!r} already exists on server {server!r}")
            target.tools[name] = tool
            return tool.info(server)

    def set_upstream_tools(self, server: str, tools: Iterable[Mapping[str, Any]]) -> int:
        """Replace the tools of upstream-backed ``server`` with MCP tool objects (``name``,
        ``description``, ``inputSchema``, ``annotations``), keeping the MCP keys as they are;
        return how many were taken. A tool whose name the gateway API cannot carry is skipped.
        """
        with self._lock:
            target = self._servers.get(server)
            if target is None or target.upstream is None:
                raise KeyError(server)
            upstream, level = target.upstream, target.sensitivity_level
        taken: dict[str, _Tool] = {}
        for item in tools:
            name = item.get("name")
            if not isinstance(name, str) or not valid_name(name) or name in taken:
                logger.warning("server %s: skipping tool %r (invalid or repeated name)",
                               server, name)
                continue
            schema, annotations = item.get("inputSchema"), item.get("annotations")
            description = item.get("description")
            taken[name] = _Tool(
                name=name,
                func=forwarder(upstream, name),
                description=description if isinstance(description, str) else "",
                input_schema=copy.deepcopy(schema) if isinstance(schema, dict) else {},
                annotations=copy.deepcopy(annotations) if isinstance(annotations, dict) else {},
                sensitivity_level=level,
                sensitive_params=[],
                extra=_mcp_extra(item),
            )
        with self._lock:
            if self._servers.get(server) is target:
                target.tools = taken
        return len(taken)

    def server_count(self) -> int:
        with self._lock:
            return len(self._entries)

    def list_servers(self, offset: int, limit: int) -> tuple[list[object], int]:
        """Return one page of server items (raw values as they were added) and the total."""
        with self._lock:
            page = self._entries[offset : offset + limit]
            items = [e.info() if isinstance(e, _Server) else copy.deepcopy(e.value) for e in page]
            return items, len(self._entries)

    def get_server(self, name: str) -> dict[str, Any]:
        with self._lock:
            server = self._servers.get(name)
            if server is None:
                raise UnknownName(f"server {name!r} not found")
            return server.info()

    def list_tools(
        self, server: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Return one page of ToolInfo dicts, for one server or all of them, and the total."""
        with self._lock:
            if server is None:
                servers = [e for e in self._entries if isinstance(e, _Server)]
            elif server in self._servers:
                servers = [self._servers[server]]
            else:
                raise UnknownName(f"server {server!r} not found")
            tools = [(s.name, t) for s in servers for t in s.tools.values()]
            return [t.info(s) for s, t in tools[offset : offset + limit]], len(tools)

    def tool_info(self, server: str, tool: str) -> dict[str, Any] | None:
        """The ToolInfo dict of ``server``/``tool``, or None if the server does not list it
        (a hosted server's tool may leave its list after require()); :class:`UnknownName`
        for an unknown server."""
        with self._lock:
            target = self._servers.get(server)
            if target is None:
                raise UnknownName(f"server {server!r} not found")
            found = target.tools.get(tool)
            return found.info(server) if found is not None else None

    def resolve(self, server: str, tool: str) -> ToolFunction:
        """Return the function of ``server``/``tool``; raise :class:`UnknownName` if absent."""
        with self._lock:
            target = self._servers.get(server)
            if target is None:
                raise UnknownName(f"server {server!r} not found")
            found = target.tools.get(tool)
            if found is None:
                raise UnknownName(f"tool {tool!r} not found on server {server!r}")
            return found.func

    def require(self, server: str, tool: str) -> None:
        """Raise :class:`UnknownName` unless the server exists and holds the tool: its own,
        or one its upstream lists (which may list again first, restarting a crashed server:
        :class:`UpstreamFailure` if it cannot, the call not sent)."""
        with self._lock:
            target = self._servers.get(server)
            if target is None:
                raise UnknownName(f"server {server!r} not found")
            upstream = target.upstream
            known = tool in target.tools
        if not (known if upstream is None else upstream.has_tool(tool)):
            raise UnknownName(f"tool {tool!r} not found on server {server!r}")

    def call(self, server: str, tool: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Run the tool (counting the run) and return its CallToolResult; an upstream's
        failure propagates as :class:`UpstreamFailure`."""
        with self._lock:
            target = self._servers.get(server)
            upstream = target.upstream if target is not None else None
            if upstream is not None:
                self._runs[(server, tool)] += 1
        if upstream is not None:
            return upstream.call(tool, parameters)
        func = self.resolve(server, tool)
        with self._lock:
            self._runs[(server, tool)] += 1
        return call_tool_result(func, parameters)

    def runs(self, server: str, tool: str) -> int:
        with self._lock:
            return self._runs[(server, tool)]


def _mcp_extra(item: Mapping[str, Any]) -> dict[str, Any]:
    """An upstream tool's title, outputSchema, icons and _meta in the gateway's field names,
    each kept only if of the type ToolInfo reads (a client would otherwise skip the tool)."""
    extra: dict[str, Any] = {}
    title, schema, icons, meta = (item.get(key) for key in ("title", "outputSchema", "icons",
                                                             "_meta"))
    if isinstance(title, str):
        extra["title"] = title
    if isinstance(schema, dict):
        extra["output_schema"] = copy.deepcopy(schema)
    if isinstance(icons, list) and all(isinstance(i, dict) and isinstance(i.get("src"), str)
                                       for i in icons):
        extra["icons"] = copy.deepcopy(icons)
    if isinstance(meta, dict):
        extra["meta"] = copy.deepcopy(meta)
    return extra
