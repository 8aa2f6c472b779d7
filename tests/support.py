"""Helpers shared by the integration tests (imported as ``support``; tests/ is on sys.path)."""

from __future__ import annotations

from typing import Any

import sark_sync
from sark_sync.testing import LocalGateway, ToolFailure

API_KEY = "itest-api-key-0123456789"
JWT_SECRET = "itest-jwt-secret"

#: Fast retries: the behaviour under test is which requests are retried, not how long apart.
FAST_RETRY = sark_sync.RetryPolicy(backoff_base=0.01, backoff_max=0.05)


def build_gateway(**options: Any) -> LocalGateway:
    """A gateway with two servers and a few tools, not yet started."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, **options)
    gateway.add_server("demo", sensitivity_level="low")
    gateway.add_server("other", sensitivity_level="medium", authorized_teams=("data",))

    @gateway.tool("demo", description="Echo the parameters back.")
    def echo(parameters: dict[str, Any]) -> Any:
        return parameters

    @gateway.tool("demo", annotations={"readOnlyHint": True})
    def read_only(parameters: dict[str, Any]) -> Any:
        return {"ok": True}

    @gateway.tool("demo")
    def fail(parameters: dict[str, Any]) -> Any:
        raise ToolFailure("the tool failed on purpose")

    @gateway.tool("other")
    def ping(parameters: dict[str, Any]) -> Any:
        return "pong"

    return gateway


def paths(gateway: LocalGateway, prefix: str = "/api/v1/") -> list[str]:
    """The method and path of the requests the gateway received, in order."""
    return [r.method + " " + r.path for r in gateway.requests if r.path.startswith(prefix)]


def demo_server_command(*args: str) -> list[str]:
    """The command of the demo MCP server shipped in sark_sync.testing."""
    import sys

    return [sys.executable, "-m", "sark_sync.testing.demo_server", *args]


def child_env(**extra: str) -> dict[str, str]:
    """What a test passes as a child's extra environment: PYTHONPATH when the tests run
    against a checkout (a tox run installs the package, and needs nothing)."""
    import os

    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    env.update(extra)
    return env
