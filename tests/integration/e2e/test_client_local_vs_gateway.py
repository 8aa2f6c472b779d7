"""``invoke_tool`` on a ``local_servers`` entry and on a gateway server give equal ToolResults.

One GatewayClient reaches each stdio server by two routes: hosted by a LocalGateway (HTTP,
``POST /api/v1/invoke``, the gateway calling the server through its own LocalServer), and as a
``local_servers`` entry of the client (stdio, no gateway). Both the demo server and the
official MCP SDK server are used, with the same environment on both routes. The routes need two
names, ``<kind>-gw`` and ``<kind>-local``: a local entry would shadow a gateway server of the
same name.

Fields of :class:`~sark_sync.ToolResult`:

- compared, since they depend on the tool and its arguments only: ``content``, ``structured``,
  ``is_error``, ``tool`` and ``filtered`` (the gateway's policy removes nothing here). They are
  compared as values and as JSON too, so that ``5`` against ``5.0`` is a difference;
- not compared, since they describe the route: ``server`` (the name the call was addressed
  to), ``request_id`` (the gateway's request id; None over stdio), ``latency_ms`` and
  ``attempts``.

Of :class:`~sark_sync.ToolInfo`, every field but ``server_name`` is compared.

Failures that are not results differ by route by design and are not compared: over stdio a
JSON-RPC error is an :class:`RPCError` and a crash a :class:`ProcessExitedError`; through the
gateway both are a 502 :class:`UpstreamError`. So does an unknown tool of the SDK server: over
stdio the server's own answer, an ``isError`` result; through the gateway a 404
:class:`NotFoundError`, since the gateway refuses a tool the server does not list, as for any
of its servers (pinned by the last test).

The gateway, the client, the four servers and the client's one keep-alive connection are shared
by the module and set up before the ``no_leaks`` guard takes its first baseline.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support import API_KEY, FAST_RETRY, build_gateway, child_env, demo_server_command

import sark_sync
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.realcomp

KINDS = ("demo", "sdk")
#: SARK_TEST_MARKER, given to every server on both routes.
MARKER = "same-marker-on-both-routes"
DEMO_TOOLS = ["echo", "add", "slow", "fail", "log", "crash", "env", "big",
              "notify_list_changed", "ask_client", "ping_client", "count"]
SDK_TOOLS = ["echo", "add", "fail", "slow", "whoami"]

#: (server kind, tool, arguments, expected is_error, expected start of the text).
CASES = [
    pytest.param("sdk", "echo", {"text": "héllo\nwörld ☃ \u2028 \u0000 🙂"}, False, "héllo",
                 id="sdk-echo-unicode"),
    pytest.param("sdk", "add", {"a": 2, "b": 3}, False, '{\n  "sum": 5.0', id="sdk-add-ints"),
    pytest.param("sdk", "add", {"a": 0.1, "b": 0.2}, False, '{\n  "sum": 0.30000000000000004',
                 id="sdk-add-floats"),
    pytest.param("sdk", "fail", {"message": "boom"}, True, "Error executing tool fail: boom",
                 id="sdk-fail"),
    pytest.param("sdk", "add", {"a": "x"}, True, "Error executing tool add: 2 validation",
                 id="sdk-add-bad-arguments"),
    pytest.param("sdk", "whoami", None, False, MARKER, id="sdk-whoami-no-arguments"),
    pytest.param("sdk", "slow", {"seconds": 0.01}, False, "slept 0.01", id="sdk-slow"),
    pytest.param("demo", "echo", {"text": "héllo\nwörld ☃ \u2028 \u0000 🙂"}, False, "héllo",
                 id="demo-echo-unicode"),
    pytest.param("demo", "add", {"a": 2, "b": 3}, False, "5", id="demo-add-ints"),
    pytest.param("demo", "add", {"a": 1.5, "b": 2}, False, "3.5", id="demo-add-floats"),
    pytest.param("demo", "add", {"a": 2**53 + 1, "b": 0}, False, "9007199254740993",
                 id="demo-add-big-int"),
    pytest.param("demo", "fail", {"message": "boom"}, True, "boom", id="demo-fail"),
    pytest.param("demo", "fail", None, True, "the tool failed on purpose",
                 id="demo-fail-no-arguments"),
    pytest.param("demo", "env", {"name": "SARK_TEST_MARKER"}, False, MARKER, id="demo-env"),
    pytest.param("demo", "env", {"name": "SARK_TEST_NEVER_SET"}, False, "null",
                 id="demo-env-null"),
    pytest.param("demo", "big", {"bytes": 100_000}, False, "xxxx", id="demo-big"),
    pytest.param("demo", "slow", {"seconds": 0.02, "steps": 2}, False, "done", id="demo-slow"),
    pytest.param("demo", "log", {"level": "info", "message": "hi"}, False, "logged",
                 id="demo-log"),
    pytest.param("demo", "count", None, False, "12", id="demo-count"),
    pytest.param("demo", "ask_client", {}, False, "error -32601", id="demo-ask-client"),
    pytest.param("demo", "ping_client", {}, False, "pong received", id="demo-ping-client"),
    pytest.param("demo", "notify_list_changed", {}, False, "ok", id="demo-list-changed"),
]


def _servers(sdk_command: list[str]) -> dict[str, dict[str, Any]]:
    """Command and environment of each kind of server (PYTHONPATH only for the demo server:
    the SDK server runs on the tools venv's interpreter)."""
    return {
        "demo": {"command": demo_server_command(), "env": child_env(SARK_TEST_MARKER=MARKER)},
        "sdk": {"command": list(sdk_command), "env": {"SARK_TEST_MARKER": MARKER}},
    }


@pytest.fixture(scope="module")
def gateway(mcp_sdk_server_command: list[str]) -> Iterator[LocalGateway]:
    """The conftest's ``gateway``, made for the whole module: ``support.build_gateway`` with
    a catalogue of the ``<kind>-gw`` stdio servers (``make_gateway`` is per test)."""

    def stdio_servers(gateway: LocalGateway) -> None:
        for kind, spec in _servers(mcp_sdk_server_command).items():
            gateway.add_stdio_server(f"{kind}-gw", spec["command"], env=spec["env"])

    # idle_timeout=None: the client's keep-alive connection lasts as long as the module.
    with build_gateway(stdio_servers, idle_timeout=None) as started:
        yield started


@pytest.fixture(scope="module")
def client(gateway: LocalGateway, mcp_sdk_server_command: list[str]
           ) -> Iterator[sark_sync.GatewayClient]:
    """The conftest's ``client`` (``support.API_KEY``, fast retries), made for the whole
    module, with a ``<kind>-local`` entry of ``local_servers`` for each kind of server."""
    local = {f"{kind}-local": spec for kind, spec in _servers(mcp_sdk_server_command).items()}
    with sark_sync.GatewayClient(gateway.url, api_key=API_KEY, retry=FAST_RETRY,
                                 local_servers=local) as gateway_client:
        for kind in KINDS:  # start every route now, before the leak guard's baseline
            gateway_client.list_tools(f"{kind}-gw")
            gateway_client.list_tools(f"{kind}-local")
        yield gateway_client


def _route_independent(result: sark_sync.ToolResult) -> dict[str, Any]:
    return {"content": result.content, "structured": result.structured,
            "is_error": result.is_error, "tool": result.tool, "filtered": result.filtered}


def _as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


@pytest.mark.parametrize(("kind", "tool", "arguments", "is_error", "text"), CASES)
def test_invoke_tool_gives_equal_results_on_both_routes(
    client: sark_sync.GatewayClient, kind: str, tool: str, arguments: dict[str, Any] | None,
    is_error: bool, text: str,
) -> None:
    via_gateway = client.invoke_tool(f"{kind}-gw", tool, arguments)
    via_stdio = client.invoke_tool(f"{kind}-local", tool, arguments)

    assert _route_independent(via_gateway) == _route_independent(via_stdio)
    assert _as_json(_route_independent(via_gateway)) == _as_json(_route_independent(via_stdio))
    # Not vacuous: the call did what the tool does.
    assert via_stdio.is_error is is_error
    assert via_stdio.text.startswith(text), via_stdio.text[:200]
    # The route-dependent fields are what each route promises.
    assert (via_gateway.server, via_stdio.server) == (f"{kind}-gw", f"{kind}-local")
    assert via_gateway.request_id is not None and via_stdio.request_id is None


def test_structured_numbers_keep_their_json_type_on_both_routes(
    client: sark_sync.GatewayClient,
) -> None:
    expected = {"sdk": '{"sum": 5.0}',  # the SDK's model of the sum is a float
                "demo": '{"sum": 5}'}  # the demo server adds ints as ints
    for kind, sum_json in expected.items():
        for server in (f"{kind}-gw", f"{kind}-local"):
            result = client.invoke_tool(server, "add", {"a": 2, "b": 3})
            assert _as_json(result.structured) == sum_json, server


@pytest.mark.parametrize(("kind", "names"), [("demo", DEMO_TOOLS), ("sdk", SDK_TOOLS)],
                         ids=KINDS)
def test_list_tools_is_equal_on_both_routes(
    client: sark_sync.GatewayClient, kind: str, names: list[str]
) -> None:
    via_gateway = client.list_tools(f"{kind}-gw")
    via_stdio = client.list_tools(f"{kind}-local")

    assert [tool.name for tool in via_stdio] == names
    assert {tool.server_name for tool in via_gateway} == {f"{kind}-gw"}
    assert {tool.server_name for tool in via_stdio} == {f"{kind}-local"}

    def comparable(tools: list[sark_sync.ToolInfo]) -> list[sark_sync.ToolInfo]:
        return [dataclasses.replace(tool, server_name="") for tool in tools]

    assert comparable(via_gateway) == comparable(via_stdio)
    assert _as_json([dataclasses.asdict(t) for t in comparable(via_gateway)]) == \
        _as_json([dataclasses.asdict(t) for t in comparable(via_stdio)])
    echo = next(tool for tool in via_gateway if tool.name == "echo")
    assert echo.input_schema["required"] == ["text"] and echo.annotations.read_only_hint


def test_an_unknown_sdk_tool_is_the_servers_result_over_stdio_and_a_404_through_the_gateway(
    client: sark_sync.GatewayClient,
) -> None:
    via_stdio = client.invoke_tool("sdk-local", "no-such-tool", {})
    assert (via_stdio.is_error, via_stdio.text) == (True, "Unknown tool: no-such-tool")
    with pytest.raises(sark_sync.NotFoundError) as refused:
        client.invoke_tool("sdk-gw", "no-such-tool", {})
    assert (refused.value.status_code, refused.value.attempts) == (404, 1)
