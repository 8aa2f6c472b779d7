"""A hosted stdio server's unknown tool is a 404 decided by its list of tools, before the call.

Servers answer an unknown tool their own ways: the demo server with JSON-RPC -32602, the
official MCP Python SDK's (and stdio_servers/tool_catalog.py here) with an ``isError`` tool
result, which the gateway would pass on as a 200. So the gateway refuses a tool the server
does not list, as for any other server, and never sends the call. A list can be out of date:
pinned here that a tool added later is not refused (the list is read again on a miss, whether
or not the server said its tools changed) and that a tool removed with
``notifications/tools/list_changed`` is refused.

The server is tool_catalog.py (stdlib only), whose list is its state file's: the test writes
that file to change the list without the server saying so. An added tool listed in the state's
``crashed`` runs (see its docstring: else its first call exits the process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import AUTH, error_of, invoke
from support import child_env

from sark_sync.testing import LocalGateway

CATALOG = Path(__file__).resolve().parent.parent / "stdio_servers" / "tool_catalog.py"
BASE_TOOLS = ["measure", "plain", "grow"]


def write_state(path: Path, *added: str) -> None:
    """The catalog's state: tools ``added`` to its base tools, each one that runs."""
    path.write_text(json.dumps({"added": [{"name": n, "safe": True} for n in added],
                                "crashed": list(added)}))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "catalog.json"


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway], state: Path) -> LocalGateway:
    """A gateway hosting tool_catalog.py as ``catalog``, started with the tool ``old``."""
    write_state(state, "old")

    def catalogue(gw: LocalGateway) -> None:
        gw.add_stdio_server("catalog", [sys.executable, str(CATALOG), str(state)],
                            env=child_env(), call_timeout=10.0)

    return make_gateway(catalogue)


def call(http: requests.Session, gw: LocalGateway, tool: str,
         parameters: Any = None) -> requests.Response:
    return invoke(http, gw, tool, parameters, server="catalog")


def listed(http: requests.Session, gw: LocalGateway) -> list[str]:
    answer = http.get(f"{gw.url}/api/v1/tools", params={"server": "catalog"}, headers=AUTH)
    return [tool["tool_name"] for tool in answer.json()["tools"]]


def test_an_unknown_tool_answered_as_a_result_by_the_server_is_a_404_never_sent(
    gateway: LocalGateway, http: requests.Session
) -> None:
    error = error_of(call(http, gateway, "nosuch"), 404, "not_found")
    assert error["message"] == "tool 'nosuch' not found on server 'catalog'"
    assert gateway.tool_runs("catalog", "nosuch") == 0
    response = call(http, gateway, "old")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"] == [{"type": "text", "text": "old ran"}]


def test_a_tool_added_without_a_list_changed_is_found_by_listing_again_on_the_miss(
    gateway: LocalGateway, http: requests.Session, state: Path
) -> None:
    assert call(http, gateway, "late").status_code == 404
    write_state(state, "old", "late")  # the server lists it from now on, and says nothing
    response = call(http, gateway, "late")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"] == [{"type": "text", "text": "late ran"}]
    assert listed(http, gateway) == [*BASE_TOOLS, "old", "late"]


def test_a_tool_removed_with_a_list_changed_is_a_404_and_the_catalogue_drops_it(
    gateway: LocalGateway, http: requests.Session, state: Path
) -> None:
    assert listed(http, gateway) == [*BASE_TOOLS, "old"]
    write_state(state)  # "old" is gone; grow adds "new" and sends tools/list_changed
    response = call(http, gateway, "grow", {"name": "new", "safe": True})
    assert response.status_code == 200, response.text
    error_of(call(http, gateway, "old"), 404, "not_found")
    assert gateway.tool_runs("catalog", "old") == 0
    assert listed(http, gateway) == [*BASE_TOOLS, "new"]
