"""``sark-sync demo``: a guided tour of the client against an embedded, governed gateway.

Everything runs in this process and its children, on 127.0.0.1, with no configuration: the
tour starts the demo :class:`~sark_sync.testing.LocalGateway` (:mod:`._demo_gateway`: the
shipped policy's rules, the demo MCP server hosted over stdio) and walks through discovery,
an allowed call, a denied call, parameter filtering, the events of those calls, a local stdio
server, then resilience (:mod:`._demo_resilience`), explaining each step in a sentence or two.
It finishes in a few seconds and returns 0, or 1 with a one-line reason if a step did not
behave as shown (a :class:`~._tour.DemoError`, an ``AssertionError`` or a
:class:`~sark_sync.GatewayError`); it never prints a traceback.
"""

from __future__ import annotations

import time
from typing import TextIO

from .._config import RetryPolicy
from .._exceptions import AuthorizationDenied, GatewayError
from ..client import GatewayClient
from ..testing import LocalGateway
from ._demo_gateway import (
    API_KEY,
    DemoUsers,
    build_gateway,
    demo_server_command,
    demo_server_env,
    issue_users,
)
from ._demo_resilience import RESILIENCE_STEPS
from ._output import server_rows
from ._tour import DemoError, Tour

__all__ = ["run_demo"]

#: Seconds without a byte before the events step gives up (the events are already there).
EVENTS_IDLE_TIMEOUT = 3.0


def run_demo(out: TextIO) -> int:
    """Run the tour, writing to ``out``; return the exit status (0, or 1 with a reason)."""
    started = time.monotonic()
    tour = Tour(out)
    out.write("sark_sync demo: governed MCP tool calls that block, never hang, and say why\n")
    try:
        with build_gateway() as gateway:
            users = issue_users(gateway)
            client = GatewayClient(gateway.url, api_key=API_KEY, timeout=10,
                                   retry=RetryPolicy(backoff_base=0.05), audit=[])
            with client:
                _gateway(tour, gateway)
                _discovery(tour, client)
                _allowed(tour, client, users)
                _denied(tour, client, users)
                filtered_request_id = _filtering(tour, client, users)
                _events(tour, client, filtered_request_id)
                _local(tour, client)
                for resilience in RESILIENCE_STEPS:
                    resilience(tour, client, gateway, users)
    except (DemoError, AssertionError, GatewayError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        out.write(f"\ndemo failed at step {tour.step}: {type(exc).__name__}: {reason}\n")
        return 1
    out.write(f"\nDone in {time.monotonic() - started:.1f} s. Next: docs/quickstart.md shows "
              "these calls in code;\ndocs/CLI.md the same from a shell: sark-sync servers, "
              "tools, invoke, events, local.\n")
    return 0


def _gateway(tour: Tour, gateway: LocalGateway) -> None:
    tour.title("A SARK gateway on loopback, enforcing the shipped policy")
    tour.say(f"LocalGateway at {gateway.url}, policy='builtin' (the rules of gateway.rego).")
    tour.say("Server 'demo' is a real MCP server: a child process the gateway talks to over "
             "stdio.")
    tour.say("Users: alice (developer, team finance) and bob (viewer, team finance).")


def _discovery(tour: Tour, client: GatewayClient) -> None:
    tour.title("Discovery: what can this application call?")
    health = client.health()
    tour.code("client.health()")
    tour.say(f"{health.status}, gateway {health.version}, {health.servers} servers")
    tour.code("client.list_servers()")
    tour.table(*server_rows(client.iter_servers()))
    tour.code("client.list_tools()")
    rows = []
    for tool in client.iter_tools():
        if tool.server_name != "demo" or tool.tool_name in ("echo", "add", "fail"):
            rows.append([f"{tool.server_name}/{tool.tool_name}", tool.sensitivity_level,
                         "yes" if tool.annotations.retry_safe else "no", tool.description])
    tour.table(["TOOL", "SENSITIVITY", "RETRY-SAFE", "DESCRIPTION"], rows)
    tour.say("(and more tools of demo: `sark-sync tools --server demo` lists them all)")


def _allowed(tour: Tour, client: GatewayClient, users: DemoUsers) -> None:
    tour.title("An allowed call: invoke_tool blocks until the result")
    tour.say("The app's API key travels as X-API-Key, the end user's JWT as a Bearer token;")
    tour.say("the policy clears alice (developer) for demo (low). The tool runs in the child.")
    tour.code('client.invoke_tool("demo", "add", {"a": 2, "b": 3}, user_token=alice)')
    tour.result(client.invoke_tool("demo", "add", {"a": 2, "b": 3}, user_token=users.alice))
    tour.say("A tool that fails is a result (is_error), not an exception:")
    tour.code('client.invoke_tool("demo", "fail", {"message": "disk full"}, user_token=alice)')
    failed = client.invoke_tool("demo", "fail", {"message": "disk full"},
                                user_token=users.alice)
    if not failed.is_error:
        raise DemoError("demo/fail did not report a tool error")
    tour.result(failed)


def _denied(tour: Tour, client: GatewayClient, users: DemoUsers) -> None:
    tour.title("A denied call: the policy says no, and why")
    tour.say("payroll is 'medium'; a viewer clears 'low' only. The tool never runs, nothing is")
    tour.say("retried, and AuthorizationDenied (a PermissionError) carries the policy's reason.")
    tour.code('client.invoke_tool("payroll", "salary_report", {"dept": "sales"}, '
              'user_token=bob)')
    try:
        client.invoke_tool("payroll", "salary_report", {"dept": "sales"}, user_token=users.bob)
    except AuthorizationDenied as exc:
        tour.say(f"AuthorizationDenied: {exc.reason}")
    else:
        raise DemoError("bob's call to payroll was not denied")


def _filtering(tour: Tour, client: GatewayClient, users: DemoUsers) -> str | None:
    """Show the password filtered out; return the call's request id (its event ends step 6)."""
    tour.title("Parameter filtering: secrets never reach the tool")
    tour.say("The policy removes sensitive keys (password, token, api_key ...) at any depth")
    tour.say("before the call runs; result.filtered names them, never their values.")
    tour.code('client.invoke_tool("payroll", "connect_db", {"host": "db.internal",',
              '                   "user": "alice", "password": "hunter2"}, user_token=alice)')
    result = client.invoke_tool("payroll", "connect_db", {
        "host": "db.internal", "user": "alice", "password": "hunter2"}, user_token=users.alice)
    received = (result.structured or {}).get("parameters_received")
    if received != ["host", "user"] or result.filtered != ("password",):
        raise DemoError(f"filtering did not happen: the tool got {received}")
    tour.say(f"the tool received: {', '.join(received)}   result.filtered: "
             f"{list(result.filtered)}")
    return result.request_id


def _events(tour: Tour, client: GatewayClient, last_request_id: str | None) -> None:
    tour.title("Events: the gateway's own record of those calls")
    tour.say("stream_events() is a blocking iterator over the gateway's server-sent events;")
    tour.say("last_event_id=0 replays what the gateway still holds, then follows live ones.")
    tour.code('client.stream_events(["tool_invoked", "authorization_denied"], '
              'last_event_id=0)')
    rows: list[list[object]] = []
    with client.stream_events(["tool_invoked", "authorization_denied"], last_event_id=0,
                              idle_timeout=EVENTS_IDLE_TIMEOUT, max_reconnects=0) as stream:
        for event in stream:
            data = event.data if isinstance(event.data, dict) else {}
            detail = data.get("outcome") if event.type == "tool_invoked" else data.get("reason")
            rows.append([event.id, event.type, f"{data.get('server')}/{data.get('tool')}",
                         data.get("principal"), detail])
            if data.get("request_id") == last_request_id:
                break
    if not any(row[1] == "authorization_denied" for row in rows):
        raise DemoError("the denied call has no authorization_denied event")
    tour.table(["ID", "TYPE", "SERVER/TOOL", "PRINCIPAL", "OUTCOME / REASON"], rows)
    tour.say("(`sark-sync events` prints the same stream from a shell)")


def _local(tour: Tour, client: GatewayClient) -> None:
    tour.title("A local MCP server: same client, same pipeline, no gateway")
    tour.say("connect_local_server() starts an MCP server as a child process (stdio); then")
    tour.say("invoke_tool() reaches it by name, with the same deadline, breaker and retries.")
    tour.code('client.connect_local_server(',
              '    ["python", "-m", "sark_sync.testing.demo_server"], name="calc")')
    with client.connect_local_server(demo_server_command(), env=demo_server_env(),
                                     name="calc") as local:
        names = [tool.tool_name for tool in local.list_tools()]
        tour.say(f"pid {local.pid}, {len(names)} tools: {', '.join(names[:4])}, ...")
        tour.code('client.invoke_tool("calc", "add", {"a": 20, "b": 22})')
        result = client.invoke_tool("calc", "add", {"a": 20, "b": 22})
        tour.result(result)
        if result.structured != {"sum": 42}:
            raise DemoError(f"calc/add answered {result.structured!r}")
    tour.say("Leaving the with-block stops the server: no orphan process, no zombie.")
