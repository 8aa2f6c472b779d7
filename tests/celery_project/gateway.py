"""The gateway the Celery tests' tasks call: ``demo`` with ``echo`` (its parameters back) and
``open_ticket`` (a new ticket number per run, so a second run shows)."""

from __future__ import annotations

import itertools
from typing import Any

from sark_sync.testing import LocalGateway

API_KEY = "celery-test-key"


def demo_gateway(**options: Any) -> LocalGateway:
    """A LocalGateway (not started) serving ``demo``."""
    options.setdefault("api_keys", (API_KEY,))
    gateway = LocalGateway(**options)
    gateway.add_server("demo")
    numbers = itertools.count(1)

    @gateway.tool("demo")
    def echo(parameters: dict[str, Any]) -> dict[str, Any]:
        return parameters

    @gateway.tool("demo")
    def open_ticket(parameters: dict[str, Any]) -> dict[str, Any]:
        return {"ticket": next(numbers), "title": parameters.get("title")}

    return gateway
