"""The tools a session listed, kept so that a call knows its tool's ``outputSchema``.

:class:`McpSession` fills a :class:`ToolCache` from every ``tools/list`` it makes. A call
looks its tool up here to check the ``structuredContent`` of the result (:mod:`._mcp_output`)
and the client's pools ask it whether a tool is annotated read-only or idempotent (only such
calls are tried again after a broken exchange). ``notifications/tools/list_changed`` marks the
cache stale: the next call lists the tools again before it is sent, so a tool the server added
is checked, and retried, by its own declaration. The resources and prompts ``list_changed``
notifications bump a counter per list, for whoever keeps those lists.

A listing made while a ``list_changed`` arrived stays stale (a generation number tells), so a
change is never lost between the answer and the notification. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .._models import ToolInfo

__all__ = ["CachedTool", "LIST_CHANGED", "ToolCache", "tool_info"]

log = logging.getLogger("sark_sync.mcp")

#: The ``list_changed`` notifications and the list each one is about.
LIST_CHANGED = {"notifications/tools/list_changed": "tools",
                "notifications/resources/list_changed": "resources",
                "notifications/prompts/list_changed": "prompts"}

#: A compiled output check: the first violation of ``structuredContent``, or None.
OutputCheck = Callable[[Any], Optional[str]]


class CachedTool:
    """One listed tool: its :class:`ToolInfo`, the MCP ``Tool`` as sent, and its output check
    once compiled (by the first call that needs it)."""

    __slots__ = ("check", "info", "raw")

    def __init__(self, info: ToolInfo, raw: Mapping[str, Any]) -> None:
        self.info = info
        self.raw = raw
        self.check: OutputCheck | None = None


class ToolCache:
    """The tools of one server, as last listed; fresh until a ``list_changed``."""

    def __init__(self, server: str) -> None:
        self._server = server
        self._lock = threading.Lock()  # guards the changes; a call reads without it
        self._generation = 0  # bumped by every tools/list_changed
        #: The listing and the generation it was made at, as one attribute: a call reads the
        #: pair in one step, without the lock (a listing or a change a moment later is one
        #: it could have missed with the lock as well).
        self._listing: tuple[dict[str, CachedTool], int] | None = None
        self._changes = {"resources": 0, "prompts": 0}
        #: Held by the call that lists before calling: concurrent calls share its listing.
        self.refresh_lock = threading.Lock()

    def generation(self) -> int:
        """Take before listing, give to :meth:`store`: a change meanwhile keeps it stale."""
        return self._generation

    def store(self, raw_tools: list[Mapping[str, Any]], generation: int) -> list[ToolInfo]:
        """Keep a complete listing; return its tools as :class:`ToolInfo` (a malformed tool
        is skipped with a warning, as :meth:`McpSession.list_tools` always did)."""
        tools: dict[str, CachedTool] = {}
        for raw in raw_tools:
            try:
                info = tool_info(raw, self._server)
            except ValueError as exc:
                log.warning("skipping malformed tool of %s: %s", self._server, exc)
                continue
            tools.setdefault(info.tool_name, CachedTool(info, raw))
        self._listing = (tools, generation)
        return [tool.info for tool in tools.values()]

    @property
    def stale(self) -> bool:
        """True until a listing made since the last ``tools/list_changed`` was stored."""
        listing = self._listing
        return listing is None or listing[1] != self._generation

    def lookup(self, name: str) -> tuple[bool, CachedTool | None]:
        """``(stale, get(name))`` in one look: what a call needs before it is sent."""
        listing = self._listing
        if listing is None:
            return True, None
        return listing[1] != self._generation, listing[0].get(name)

    def get(self, name: str) -> CachedTool | None:
        listing = self._listing
        return None if listing is None else listing[0].get(name)

    def retry_safe(self, name: str) -> bool | None:
        """The tool's annotations say read-only or idempotent; None if it was never listed."""
        tool = self.get(name)
        return None if tool is None else tool.info.annotations.retry_safe

    def changes(self, kind: str) -> int:
        """How many ``list_changed`` of ``kind`` (``"resources"``, ``"prompts"``) came."""
        with self._lock:
            return self._changes.get(kind, 0)

    def notified(self, method: str) -> bool:
        """Note a ``list_changed`` notification; True if ``method`` was one."""
        kind = LIST_CHANGED.get(method)
        if kind is None:
            return False
        with self._lock:
            if kind == "tools":
                self._generation += 1
            else:
                self._changes[kind] += 1
        log.debug("%s: the %s list changed", self._server, kind)
        return True


def tool_info(item: object, server: str) -> ToolInfo:
    """An MCP ``Tool`` as a :class:`ToolInfo`; ``ValueError`` if a field has the wrong type."""
    if not isinstance(item, Mapping):
        raise ValueError("a tool must be an object")
    return ToolInfo.from_dict({
        "tool_name": item.get("name"),
        "server_name": server,
        "description": item.get("description") or "",
        "input_schema": item.get("inputSchema"),
        "annotations": item.get("annotations"),
        "title": item.get("title"),
        "output_schema": item.get("outputSchema"),
        "icons": item.get("icons"),
        "meta": item.get("_meta"),
    })
