"""A tool's result against the ``outputSchema`` it declared (MCP 2025-06-18 and later).

A tool that declares an ``outputSchema`` promises ``structuredContent`` conforming to it in
every result that is not an error. :func:`check_output` holds the server to it: a missing
``structuredContent``, or one that violates the schema, raises :class:`ProtocolError` naming
the server, the tool and the first violation (its place in the value and the keyword, never a
value: it may echo an argument that is a secret). The check is compiled once per listed tool
(kept on its :class:`~._mcp_tools.CachedTool`) and bounded against hostile schemas
(:mod:`._mcp_schema`).

With ``jsonschema`` installed (the ``jsonschema`` extra) the value is validated;
without it, only that ``structuredContent`` is present and is an object.
"""

from __future__ import annotations

import logging
from typing import Any

from .._exceptions import ProtocolError
from .._models import ToolResult
from . import _mcp_schema
from ._mcp_tools import CachedTool

__all__ = ["check_output", "jsonschema_available"]

log = logging.getLogger("sark_sync.mcp")

_warned: list[bool] = []


def _import_jsonschema() -> Any | None:
    """The ``jsonschema`` module, or None (tests replace this to run without it)."""
    return _mcp_schema.load_jsonschema()


def jsonschema_available() -> bool:
    """Whether results are validated against their tools' output schemas (else only their
    presence and their being an object is checked)."""
    return _import_jsonschema() is not None


def check_output(result: ToolResult, tool: CachedTool | None, *, kind: str) -> ToolResult:
    """``result`` if it keeps its tool's ``outputSchema`` (or the tool declares none, or the
    result is a tool error); else :class:`ProtocolError`."""
    schema = tool.info.output_schema if tool is not None else None
    if tool is None or schema is None or result.is_error:
        return result
    where = f"{kind} {result.server!r} returned a result of tool {result.tool!r}"
    if result.structured is None:
        raise ProtocolError(f"{where} without structuredContent, but the tool declares an "
                            "outputSchema", server=result.server, tool=result.tool)
    check = tool.check
    if check is None:
        jsonschema = _import_jsonschema()
        if jsonschema is None:
            if not _warned:
                _warned.append(True)
                log.info("jsonschema is not installed: structuredContent is checked only for "
                         "being an object (install jsonschema, or the jsonschema extra)")
            check = _present
        else:
            check = _mcp_schema.compile_check(schema, jsonschema)
        tool.check = check
    violation = check(result.structured)
    if violation is not None:
        raise ProtocolError(f"{where} whose structuredContent does not match its outputSchema: "
                            f"{violation}", server=result.server, tool=result.tool)
    return result


def _present(value: Any) -> str | None:
    return None  # ToolResult already holds structuredContent only as an object
