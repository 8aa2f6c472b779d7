"""The gateway of ``sark-sync demo`` (and of ``sark-sync serve --demo``): its catalogue,
its policy and its users.

One :class:`~sark_sync.testing.LocalGateway` with the shipped policy's rules
(``policy="builtin"``) and three servers chosen so that each rule shows once:

- ``demo`` (low): the demo MCP server, a real child process the gateway hosts over stdio;
- ``tickets`` (low): a built-in tool with a side effect (``create_ticket``), for retries;
- ``payroll`` (medium, team ``finance``): a viewer is denied it, and its ``connect_db`` tool
  reports which parameters reached it, to show a password filtered out.

Two users: ``alice`` (developer, team finance) and ``bob`` (viewer, team finance). The
credentials are the demo's own, valid only for this loopback gateway.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..testing import LocalGateway, ToolFailure

__all__ = ["API_KEY", "DemoUsers", "build_gateway", "demo_server_command", "demo_server_env",
           "demo_variables", "issue_users"]

#: The X-API-Key the demo gateway accepts.
API_KEY = "demo-api-key"
#: The HS256 secret of the demo users' tokens.
JWT_SECRET = "demo-jwt-secret-for-loopback-only"


def demo_server_command() -> list[str]:
    """The demo MCP server, run by this interpreter."""
    return [sys.executable, "-m", "sark_sync.testing.demo_server"]


def demo_server_env() -> dict[str, str]:
    """What the demo server's environment needs beyond the allow-list: this sark_sync on its
    path, so it runs from a checkout as from an installed package."""
    return {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


@dataclass(frozen=True)
class DemoUsers:
    """User JWTs issued by the demo gateway."""

    alice: str  # developer, team finance: clears low and medium
    bob: str  # viewer, team finance: clears low only


def build_gateway(*, port: int = 0) -> LocalGateway:
    """The demo gateway, not yet started (``start()`` starts the stdio server too)."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, policy="builtin",
                           port=port)
    gateway.add_stdio_server("demo", demo_server_command(), env=demo_server_env(),
                             sensitivity_level="low")
    gateway.add_server("tickets", sensitivity_level="low")
    numbers = itertools.count(1001)
    gateway.add_tool("tickets", "create_ticket", lambda p: {"ticket": f"T-{next(numbers)}"},
                     description="Open a ticket (a side effect: not idempotent).",
                     input_schema={"type": "object", "properties": {"title": {"type": "string"}},
                                   "required": ["title"]})
    gateway.add_server("payroll", sensitivity_level="medium", authorized_teams=("finance",))
    gateway.add_tool("payroll", "salary_report", _salary_report,
                     description="Total salaries of a department.",
                     input_schema={"type": "object", "properties": {"dept": {"type": "string"}},
                                   "required": ["dept"]},
                     annotations={"readOnlyHint": True})
    gateway.add_tool("payroll", "connect_db", _connect_db,
                     description="Open a database session; reports the parameters it got.",
                     input_schema={"type": "object", "properties": {
                         "host": {"type": "string"}, "user": {"type": "string"},
                         "password": {"type": "string"}}, "required": ["host", "user"]})
    return gateway


def issue_users(gateway: LocalGateway) -> DemoUsers:
    return DemoUsers(
        alice=gateway.issue_token("alice", roles=("developer",), teams=("finance",)),
        bob=gateway.issue_token("bob", roles=("viewer",), teams=("finance",)),
    )


def demo_variables(gateway: LocalGateway, users: DemoUsers) -> dict[str, str]:
    """The environment that points the CLI at the demo gateway as alice, with bob's token in
    ``VIEWER_TOKEN`` (what ``sark-sync serve --demo`` prints for a second shell)."""
    return {"SARK_GATEWAY_URL": gateway.url, "SARK_API_KEY": API_KEY,
            "SARK_USER_TOKEN": users.alice, "VIEWER_TOKEN": users.bob}


def _salary_report(parameters: dict[str, Any]) -> object:
    dept = parameters.get("dept")
    if not isinstance(dept, str):
        raise ToolFailure("parameter 'dept' must be a string")
    return {"dept": dept, "employees": 12, "total": 1_150_000}


def _connect_db(parameters: dict[str, Any]) -> object:
    return {"session": "db-7", "parameters_received": sorted(parameters)}

