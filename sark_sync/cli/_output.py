"""How ``sark-sync`` prints: aligned tables for people, JSON for programs.

Design: each model has one JSON form here (:func:`server_json`, :func:`tool_json`,
:func:`result_json`, :func:`event_json`, :func:`health_json`), using the field names of the
SARK Gateway API v1's JSON (``server_name``, ``tool_name``, ``structuredContent`` ...) so that
``sark-sync ... --json`` reads like the gateway's own answers, and one table or line form for
people. Output goes to the stream given (standard output by default) and is flushed per line,
so a pipe sees each event as it comes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Callable, TextIO, TypeVar

from .._models import Event, Health, ServerInfo, ToolInfo, ToolResult
from .._redact import redact
from ._common import EXIT_OK, EXIT_TOOL_ERROR
from ._errors import tool_error_document

__all__ = [
    "dump_json",
    "event_json",
    "event_line",
    "finish_call",
    "health_json",
    "print_list",
    "print_result",
    "result_json",
    "server_json",
    "server_rows",
    "table",
    "tool_json",
    "tool_rows",
]

#: Columns between two columns of a table.
GUTTER = "  "
T = TypeVar("T")

#: Longest description shown in a table cell (the JSON form has all of it).
MAX_CELL = 60


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell; the last column is
    not padded (no trailing spaces)."""
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths)]
        lines.append(GUTTER.join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = " ".join(str(value).split())  # one line per row, whatever the value holds
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def dump_json(value: object, out: TextIO | None = None, *, indent: int | None = 2) -> None:
    """Write ``value`` as one JSON document (one line with ``indent=None``) and flush."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(value, indent=indent, ensure_ascii=False, default=_default) + "\n")
    stream.flush()


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (tuple, frozenset, set)):
        return list(value)
    return str(value)


def server_json(server: ServerInfo) -> dict[str, Any]:
    return {
        "server_name": server.server_name,
        "server_id": server.server_id,
        "server_url": server.server_url,
        "transport": server.transport,
        "sensitivity_level": server.sensitivity_level,
        "authorized_teams": list(server.authorized_teams),
        "health_status": server.health_status,
        "tools_count": server.tools_count,
        "created_at": server.created_at,
        "updated_at": server.updated_at,
    }


def server_rows(servers: Iterable[ServerInfo]) -> tuple[list[str], list[list[object]]]:
    headers = ["SERVER", "TRANSPORT", "SENSITIVITY", "TEAMS", "HEALTH", "TOOLS"]
    rows: list[list[object]] = [
        [s.server_name, s.transport, s.sensitivity_level,
         ",".join(s.authorized_teams) or "-", s.health_status, s.tools_count]
        for s in servers
    ]
    return headers, rows


def tool_json(tool: ToolInfo) -> dict[str, Any]:
    """The gateway form (:meth:`ToolInfo.to_dict`): title, output_schema, icons and meta
    appear when the tool declares them."""
    return tool.to_dict()


def tool_rows(tools: Iterable[ToolInfo], *, local: bool = False
              ) -> tuple[list[str], list[list[object]]]:
    """Table of tools; RETRY-SAFE says whether the tool is annotated read-only or idempotent
    (the client retries such calls even without an idempotency key); PARAMETERS lists the
    input schema's properties, optional ones in brackets. A local server's tools have no
    server column and no sensitivity (MCP has none; the gateway adds it)."""
    headers = ["TOOL", "RETRY-SAFE", "PARAMETERS", "DESCRIPTION"]
    if not local:
        headers[1:1] = ["SENSITIVITY"]
        headers.insert(0, "SERVER")
    rows: list[list[object]] = []
    for tool in tools:
        row: list[object] = [tool.tool_name, "yes" if tool.annotations.retry_safe else "no",
                             _parameter_names(tool) or "-", tool.description or "-"]
        if not local:
            row[1:1] = [tool.sensitivity_level]
            row.insert(0, tool.server_name)
        rows.append(row)
    return headers, rows


def _parameter_names(tool: ToolInfo) -> str:
    properties = tool.input_schema.get("properties")
    if not isinstance(properties, dict):
        return ""
    required = tool.input_schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    return ",".join(name if name in needed else f"[{name}]" for name in properties)


def result_json(result: ToolResult) -> dict[str, Any]:
    return {
        "server": result.server,
        "tool": result.tool,
        "request_id": result.request_id,
        "is_error": result.is_error,
        "content": [dict(block) for block in result.content],
        "structured": dict(result.structured) if result.structured is not None else None,
        "filtered": list(result.filtered),
        "latency_ms": round(result.latency_ms, 3),
        "attempts": result.attempts,
    }


def result_text(result: ToolResult) -> str:
    """What a person wants to see of a result: its text blocks, else its structured content
    as JSON; other blocks (images, resources) are named, not dumped."""
    parts = []
    for block in result.content:
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            parts.append(f"[{block.get('type', 'unknown')} block]")
    if not parts and result.structured is not None:
        parts.append(json.dumps(result.structured, ensure_ascii=False))
    return "\n".join(parts)


def print_result(result: ToolResult, as_json: bool, out: TextIO, err: TextIO) -> None:
    """Print a tool's result: the JSON form, or its text plus a note on standard error when
    the policy removed parameters (the note names keys, never values)."""
    if as_json:
        dump_json(result_json(result), out)
        return
    text = result_text(result)
    if text:
        out.write(text + ("" if text.endswith("\n") else "\n"))
        out.flush()
    if result.filtered:
        err.write("sark-sync: note: the policy removed these parameters before the tool ran: "
                  + ", ".join(result.filtered) + "\n")
        err.flush()


def finish_call(result: ToolResult, as_json: bool) -> int:
    """Print a tool's result on standard output; the exit status: 0, or 1 (with a line, or
    under ``--json`` an error document, on standard error) when the tool reported an error."""
    print_result(result, as_json, sys.stdout, sys.stderr)
    if not result.is_error:
        return EXIT_OK
    if as_json:
        dump_json(tool_error_document(result.server, result.tool, result.request_id,
                                      EXIT_TOOL_ERROR), sys.stderr, indent=None)
    else:
        sys.stderr.write(f"sark-sync: error: tool {result.server}/{result.tool} reported an "
                         "error (its output is above)\n")
    return EXIT_TOOL_ERROR


def print_list(items: Sequence[T], as_json: bool, to_json: Callable[[T], dict[str, Any]],
               to_rows: Callable[[Sequence[T]], tuple[list[str], list[list[object]]]],
               empty: str) -> None:
    """A JSON array of ``items`` on standard output, or their table (``empty`` when there
    are none)."""
    if as_json:
        dump_json([to_json(item) for item in items])
    else:
        sys.stdout.write((table(*to_rows(items)) if items else empty) + "\n")


def event_json(event: Event) -> dict[str, Any]:
    """The event, with the values of sensitive keys in its data hidden (as in its repr)."""
    return {"id": event.id, "type": event.type, "data": redact(event.data)}


def event_line(event: Event) -> str:
    """One line per event: id, type, then the data as compact JSON."""
    data = event.data if isinstance(event.data, str) else json.dumps(
        redact(event.data), ensure_ascii=False, separators=(", ", ": "), default=_default)
    return f"{event.id or '-':>5}  {event.type:<20}  {data}"


def health_json(health: Health) -> dict[str, Any]:
    return {"status": health.status, "version": health.version, "servers": health.servers}
