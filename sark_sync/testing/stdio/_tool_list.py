"""The tools a hosted stdio server last listed: what the gateway's 404 for a tool is decided by.

Why a list at all: servers answer an unknown tool their own ways (the demo server with JSON-RPC
-32602, those built on the official MCP Python SDK with an ``isError`` tool result, which the
gateway would pass on as a 200), so the gateway refuses a tool the server does not list before
sending the call, as it does for any other server's unknown tool.

Why it is listed again: the list may be out of date. The server's
``notifications/tools/list_changed`` makes it stale (a generation count: a change that comes
while a listing is under way leaves that listing stale, so no change is lost), and a tool
missing from it is looked up in a new listing before it is refused, since a server may add a
tool without saying so. Concurrent lookups that need a listing share one. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..gateway._tool_calls import UpstreamFailure

__all__ = ["ToolList"]

TOOLS_CHANGED = "notifications/tools/list_changed"


class ToolList:
    """The names of a server's last listing, and whether a change came since it began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._changes = 0  # the server's tools/list_changed so far
        self._listed_at = 0  # the count when the stored listing began: fresh while equal
        self._listings = 0  # listings stored: a waiting lookup sees that one came meanwhile
        self._relist_lock = threading.Lock()

    def notified(self, method: str, params: Mapping[str, Any]) -> None:
        """The session's ``on_notification``: a tools ``list_changed`` makes the list stale.
        It runs on the session's reader thread, so before any answer written after it."""
        if method == TOOLS_CHANGED:
            with self._lock:
                self._changes += 1

    def generation(self) -> int:
        """Take before listing, give to :meth:`store`."""
        with self._lock:
            return self._changes

    def store(self, tools: Sequence[Mapping[str, Any]], generation: int) -> None:
        with self._lock:
            self._names = frozenset(str(tool.get("name")) for tool in tools)
            self._listed_at, self._listings = generation, self._listings + 1

    def __contains__(self, tool: object) -> bool:
        with self._lock:
            return tool in self._names

    def has(self, tool: str, relist: Callable[[], None]) -> bool:
        """Whether the server lists ``tool``: the stored listing if fresh and holding it,
        else one ``relist()`` makes now (it calls :meth:`store`). If that raises
        :class:`UpstreamFailure`, the failure, or True when the stored listing held the tool
        (the call then meets the failure itself)."""
        with self._lock:
            known, fresh = tool in self._names, self._listed_at == self._changes
            listings = self._listings
        if known and fresh:
            return True
        with self._relist_lock:
            with self._lock:
                if self._listings != listings and self._listed_at == self._changes:
                    return tool in self._names  # listed by a lookup we waited for
            try:
                relist()
            except UpstreamFailure:
                if known:
                    return True
                raise
        return tool in self
