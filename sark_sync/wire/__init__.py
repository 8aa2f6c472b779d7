"""Wire codecs: SSE framing, JSON-RPC 2.0 and pagination. Pure: no I/O, no threads.

This is the face other packages import from (docs/ARCHITECTURE.md, "What may import what"):
the modules behind it are private. JSON-RPC is re-exported as the namespace ``jsonrpc``
(``jsonrpc.Request``, ``jsonrpc.parse_line``), because its message names (``Request``,
``Response``) would read as the transports' own if imported bare.
"""

from __future__ import annotations

from . import _jsonrpc as jsonrpc
from ._pagination import MAX_BARREN_PAGES, MAX_PAGES, paginate, parse_page
from ._sse import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_RESUME_ID_BYTES,
    MAX_RETRY_MS,
    EventReader,
    EventTooLarge,
    SSEFramer,
    resume_header,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EventReader",
    "EventTooLarge",
    "MAX_BARREN_PAGES",
    "MAX_PAGES",
    "MAX_RESUME_ID_BYTES",
    "MAX_RETRY_MS",
    "SSEFramer",
    "jsonrpc",
    "paginate",
    "parse_page",
    "resume_header",
]
