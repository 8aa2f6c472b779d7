"""Built-in demo tools, so that a gateway started by ``sark-sync serve`` is useful at once.

Each tool is a plain function with the LocalGateway's tool contract (parameters dict in,
result or :class:`~sark_sync.testing.ToolFailure` out), its JSON Schema and its MCP
annotations. Both are pure and read-only, so clients may retry them freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..testing import ToolFailure, ToolFunction

__all__ = ["BUILTIN_TOOLS", "BuiltinTool"]

_READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}


def echo(parameters: dict[str, Any]) -> object:
    """Return the given text unchanged."""
    text = parameters.get("text")
    if not isinstance(text, str):
        raise ToolFailure("parameter 'text' must be a string")
    return text


def add(parameters: dict[str, Any]) -> object:
    """Add two numbers."""
    a, b = parameters.get("a"), parameters.get("b")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (a, b)):
        raise ToolFailure("parameters 'a' and 'b' must be numbers")
    assert isinstance(a, (int, float)) and isinstance(b, (int, float))
    return {"sum": a + b}


@dataclass(frozen=True)
class BuiltinTool:
    func: ToolFunction
    input_schema: Mapping[str, Any]
    annotations: Mapping[str, Any] = field(default_factory=lambda: dict(_READ_ONLY))


#: Tool name -> definition.
BUILTIN_TOOLS: Mapping[str, BuiltinTool] = {
    "echo": BuiltinTool(
        echo,
        {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    ),
    "add": BuiltinTool(
        add,
        {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    ),
}
