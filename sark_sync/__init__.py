"""sark_sync: a synchronous client for governed MCP tool calls through the SARK gateway."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
