"""Transports: how a call reaches its peer, behind small Protocols (see :mod:`._base`).

- :mod:`.http`: the gateway's REST API over a ``requests`` session (one attempt per request);
- :mod:`.sse`: the gateway's event stream over ``sseclient``-style short reads;
- :mod:`.stdio`: JSON-RPC 2.0 over a child process's pipes, with the MCP session that runs
  over it (``LocalServer``) and the client's pool of local servers;
- :mod:`.mcp_sse`: MCP's legacy HTTP+SSE transport (2024-11-05), a ``MessageChannel`` that
  ``RemoteServer`` uses on request or as the fallback of Streamable HTTP.

Every HTTP client of the package (these transports, the OPA and SARK authorizers, the audit
sink) builds its session with :func:`new_session` and a :class:`GuardedAdapter`, so the
deadline watchdog bounds every exchange. Other packages import from here, never from the
private modules.
"""

from ._base import EventSource, GatewayTransport, MessageChannel, Request, Response
from ._common import (
    READ_FAILURES,
    call_headers,
    close_session,
    error_from_answer,
    new_session,
    socket_of,
)
from ._guarded import Exchange, GuardedAdapter, guarded, guarded_for
from ._mcp_handlers import HANDLER_OPTIONS, check_handler_options
from ._mcp_logging import LogMessage
from ._mcp_pool import LocalServerPool
from ._mcp_remote import RemoteServer
from ._mcp_remote_pool import RemoteServerPool
from ._mcp_session import DEFAULT_STARTUP_TIMEOUT, LocalServer
from .http import DEFAULT_MAX_RESPONSE_BYTES, HTTPTransport
from .mcp_sse import LegacySSEChannel
from .sse import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RECONNECTS, EventStream
from .stdio import StdioTransport

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_RECONNECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_STARTUP_TIMEOUT",
    "HANDLER_OPTIONS",
    "READ_FAILURES",
    "EventSource",
    "EventStream",
    "Exchange",
    "GatewayTransport",
    "GuardedAdapter",
    "HTTPTransport",
    "LegacySSEChannel",
    "LocalServer",
    "LocalServerPool",
    "LogMessage",
    "MessageChannel",
    "RemoteServer",
    "RemoteServerPool",
    "Request",
    "Response",
    "StdioTransport",
    "call_headers",
    "check_handler_options",
    "close_session",
    "error_from_answer",
    "guarded",
    "guarded_for",
    "new_session",
    "socket_of",
]
