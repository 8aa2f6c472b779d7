"""Fixtures of the end-to-end suite: one LocalGateway per module, enforcing the shipped
gateway.rego through the real OPA engine, and hosting two real stdio MCP servers.

``hosted`` (module scope) is set up before the ``no_leaks`` baseline of the first test that
requests it (directly or through ``gateway``), so its threads, sockets and the two server processes
are part of every baseline. It serves:

- ``demo``: the demo MCP server (stdio), low, any team;
- ``sdk``: the official MCP SDK server (stdio, from the tools venv), low, any team;
- ``records``: Python tools ``store`` and ``fail``, low, any team;
- ``warehouse``: Python tool ``query`` (``dsn`` declared sensitive), medium, team data;
- ``vault``: Python tool ``read`` (read-only), high, team security.

The Python tools append the parameters they received to ``hosted.received`` and return them,
so a test sees exactly what a tool got. ``gateway`` (overriding the integration conftest's) is
the same gateway for one test: it clears the faults, the request log and the received
parameters first, and the faults again after. Clients come from the integration conftest's
``make_client`` (of ``gateway`` unless given another URL) and are closed after the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from realcomp.fixtures import OpaServer
from support import API_KEY, FAST_RETRY, JWT_SECRET, child_env, demo_server_command

import sark_sync
from sark_sync.governance import OPAAuthorizer
from sark_sync.testing import LocalGateway, ToolFailure

#: Event stream reconnects in milliseconds, not the default second.
EVENT_RETRY = 0.01
#: Seconds a hosted stdio server may take for one call before the gateway answers 504.
CALL_TIMEOUT = 5.0


class Hosted(LocalGateway):
    """The module's LocalGateway, with what its Python tools received and its policy."""

    received: list[dict[str, Any]]
    received_lock: threading.Lock
    #: The gateway's OPAAuthorizer: ``close()`` releases its keep-alive connections to OPA.
    policy_engine: OPAAuthorizer


def _record(gw: Hosted) -> Callable[[dict[str, Any]], Any]:
    def record(parameters: dict[str, Any]) -> Any:
        with gw.received_lock:
            gw.received.append(parameters)
        return parameters

    return record


def _fail(parameters: dict[str, Any]) -> Any:
    raise ToolFailure("the record was refused on purpose")


def build_hosted(opa_url: str, sdk_command: list[str] | None = None,
                 **options: Any) -> Hosted:
    """The gateway described in the module docstring, enforcing gateway.rego on the OPA
    server at ``opa_url``, not yet started (``sdk_command`` None: without the ``sdk``
    server)."""
    options.setdefault("event_retry", EVENT_RETRY)
    engine = OPAAuthorizer(opa_url)
    gw = Hosted(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, policy=engine, **options)
    gw.received, gw.received_lock, gw.policy_engine = [], threading.Lock(), engine
    gw.add_stdio_server("demo", demo_server_command(), env=child_env(), sensitivity_level="low",
                        call_timeout=CALL_TIMEOUT)
    if sdk_command is not None:
        gw.add_stdio_server("sdk", list(sdk_command), sensitivity_level="low",
                            call_timeout=CALL_TIMEOUT)
    gw.add_server("records", sensitivity_level="low")
    gw.add_tool("records", "store", _record(gw), description="Store the parameters.")
    gw.add_tool("records", "fail", _fail)
    gw.add_server("warehouse", sensitivity_level="medium", authorized_teams=("data",))
    gw.add_tool("warehouse", "query", _record(gw), sensitive_params=("dsn",))
    gw.add_server("vault", sensitivity_level="high", authorized_teams=("security",))
    gw.add_tool("vault", "read", _record(gw), annotations={"readOnlyHint": True})
    return gw


@pytest.fixture(scope="module")
def hosted(gateway_opa_server: OpaServer, mcp_sdk_server_command: list[str]
           ) -> Iterator[Hosted]:
    with build_hosted(gateway_opa_server.url, mcp_sdk_server_command) as gw:
        yield gw


@pytest.fixture
def gateway(hosted: Hosted) -> Iterator[Hosted]:
    """The module's gateway, with no faults, requests or received parameters left over."""
    hosted.clear_faults()
    hosted.clear_requests()
    with hosted.received_lock:
        hosted.received.clear()
    yield hosted
    hosted.clear_faults()
    # The gateway's connections to OPA are opened by calls during the test: release them,
    # or the leak guard would count them.
    hosted.policy_engine.close()


@pytest.fixture(scope="module")
def two_routes(hosted: Hosted, mcp_sdk_server_command: list[str]
               ) -> Iterator[sark_sync.GatewayClient]:
    """A client that reaches the demo and SDK servers two ways: through the module's gateway
    (``demo``, ``sdk``) and as its own stdio children (``demo-local``, ``sdk-local``), with the
    same environment. Both children and the client's keep-alive connection to the gateway are
    started here, before the leak guard's baseline."""
    local = {
        "demo-local": {"command": demo_server_command(), "env": child_env()},
        "sdk-local": {"command": list(mcp_sdk_server_command)},
    }
    with sark_sync.GatewayClient(hosted.url, api_key=API_KEY, retry=FAST_RETRY,
                                 local_servers=local) as client:
        for name in local:
            client.list_tools(name)
        client.health()
        yield client
