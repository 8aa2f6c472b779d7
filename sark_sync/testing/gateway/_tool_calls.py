"""How the LocalGateway runs one tool call: a local function, or a call forwarded upstream.

A tool of a server added with ``add_server`` is a Python function. Contract for tool
functions: they take the ``parameters`` dict and return

- a dict with a ``"content"`` key: an MCP ``CallToolResult``, used as is;
- a ``str``: one text block, ``isError: false``;
- any other JSON value: one text block holding its JSON, plus ``structuredContent`` when it
  is a dict.

Raising :class:`ToolFailure` (or any exception) yields a text block with the message and
``isError: true``: a tool error is a result, not an HTTP error.

A tool of a server backed by an :class:`Upstream` (a hosted stdio MCP server) is a call
forwarded to it; a failure to reach it is :class:`UpstreamFailure`, an HTTP error (502/504),
not a result.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Protocol

__all__ = [
    "ToolFailure",
    "ToolFunction",
    "Upstream",
    "UpstreamFailure",
    "call_tool_result",
    "forwarder",
]

logger = logging.getLogger("sark_sync.testing")

ToolFunction = Callable[[dict[str, Any]], object]


class ToolFailure(Exception):
    """Raise from a tool function to answer an MCP tool error (``isError: true``)."""


class UpstreamFailure(Exception):
    """The upstream of a server could not answer a call: ``status`` is 502 (it failed or
    exited), 504 (it did not answer in time), 400 (it refused the arguments) or 404 (it has no
    such tool); ``str()`` is the message for the client.

    ``reached``: the call reached the upstream, so its tool may have run (a crash mid-call, a
    timeout) or it gave its final answer (a JSON-RPC error). Such an answer is stored under
    the request's Idempotency-Key and replayed to a retry, which must never run the tool a
    second time. A call that never reached it (the server could not be started) is not
    stored: a retry with the same key may run it.
    """

    def __init__(self, status: int, message: str, *, reached: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.reached = reached


class Upstream(Protocol):
    """What backs a server whose tools run elsewhere (see :mod:`..stdio._hosting`)."""

    def has_tool(self, tool: str) -> bool:
        """Whether the upstream lists ``tool`` (asked before each call: an unlisted tool is
        a 404); raise :class:`UpstreamFailure` if that cannot be known."""

    def call(self, tool: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Return the CallToolResult of ``tool``; raise :class:`UpstreamFailure`."""

    def health(self) -> str:
        """One of the registry's ``HEALTH_STATUSES``, read at the time of the call."""


def _text_result(text: str, *, is_error: bool) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def call_tool_result(func: ToolFunction, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run ``func(parameters)`` and shape what it returns or raises as a CallToolResult."""
    try:
        value = func(parameters)
    except Exception as exc:  # any failure of user code is a tool error, by contract
        logger.debug("tool function %r raised", getattr(func, "__name__", func), exc_info=True)
        return _text_result(str(exc) or type(exc).__name__, is_error=True)
    if isinstance(value, dict) and "content" in value:
        return value
    if isinstance(value, str):
        return _text_result(value, is_error=False)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        return _text_result(f"tool returned a value that is not JSON: {exc}", is_error=True)
    result = _text_result(text, is_error=False)
    if isinstance(value, dict):
        result["structuredContent"] = value
    return result


def forwarder(upstream: Upstream, tool: str) -> ToolFunction:
    """The function of an upstream tool: the call goes to the upstream."""

    def forward(parameters: dict[str, Any]) -> object:
        return upstream.call(tool, parameters)

    forward.__name__ = tool
    return forward
