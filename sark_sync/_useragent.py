"""The ``User-Agent`` every HTTP client of the package sends: a leaf of the values layer, so
that the gateway transport, the event stream, the OPA client and the audit sink all name
themselves the same way without importing each other."""

from __future__ import annotations

import platform

from .__version__ import __version__

__all__ = ["user_agent"]


def user_agent(role: str | None = None) -> str:
    """``sark-sync/<version> python/<version>``, or ``sark-sync/<version> <role>`` for a
    client with its own role (the audit sink says ``audit``, so a receiver can tell them apart)."""
    if role is not None:
        return f"sark-sync/{__version__} {role}"
    return f"sark-sync/{__version__} python/{platform.python_version()}"
