"""End to end: sark_sync's public API against a LocalGateway hosting real stdio MCP servers
(the demo server and the official MCP SDK server) and enforcing the shipped gateway.rego
through the real OPA engine, over HTTP, SSE and stdio.

Each test is one scenario; its name and docstring give the steps. Only public names are used
(``sark_sync``, ``sark_sync.testing``, ``sark_sync.governance``). Most tests share the module's
gateway (see conftest.py) and make their own clients; tests that stop, restart or crash
something start their own gateway or server.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

import pytest
from support import (
    API_KEY,
    FAST_RETRY,
    JWT_SECRET,
    child_env,
    demo_server_command,
    in_child,
    token_of,
    wait_for,
)

import sark_sync
from sark_sync.governance import (
    AuditEvent,
    CallableSink,
    JSONLinesSink,
    LoggingSink,
    OPAAuthorizer,
)
from sark_sync.testing import BuiltinPolicy, Fault, LocalGateway

if TYPE_CHECKING:  # the module gateway's type, from this folder's conftest.py
    from conftest import Hosted

Make = Callable[..., sark_sync.GatewayClient]

#: Bound for anything that should happen at once on a loaded 2-core machine.
PROMPT = 5.0
#: Slack allowed past a deadline (scheduling on a loaded machine).
SLACK = 0.5
#: Parameter values that must never appear in an event, a log line or an error message.
SECRETS = ("hunter2-pw", "sk-live-4242", "tok-abcdef", "nested-pw-77", "listed-tok-99")
#: The servers of the module's gateway, in registration order.
SERVERS = ["demo", "sdk", "records", "warehouse", "vault"]


def alice(gateway: LocalGateway) -> str:
    """A developer of team data: clears low and medium, may use warehouse."""
    return token_of(gateway, "alice")


def bob(gateway: LocalGateway) -> str:
    """A viewer of team ml: clears low only."""
    return token_of(gateway, "bob")


def invokes(gateway: LocalGateway) -> list[dict[str, Any]]:
    """The bodies of the POST /api/v1/invoke requests the gateway received, in order."""
    return [json.loads(r.body) for r in gateway.requests if r.path == "/api/v1/invoke"]


def paths(gateway: LocalGateway) -> list[str]:
    return [f"{r.method} {r.path}" for r in gateway.requests]


# =============================================================================================
# HTTP: API key, user JWT, discovery, health
# =============================================================================================


def test_health_with_the_api_key_reports_healthy_and_counts_every_server(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: GET /health with the API key -> healthy, the gateway's version, 5 servers; the
    request carried X-API-Key and a User-Agent naming sark-sync."""
    health = make_client(gateway.url).health()
    assert (health.status, health.healthy, health.servers) == ("healthy", True, len(SERVERS))
    assert health.version == "0.1.0-local"
    (request,) = gateway.requests
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["User-Agent"].startswith(f"sark-sync/{sark_sync.__version__} ")


def test_list_servers_shows_the_hosted_stdio_servers_with_their_metadata(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: list_servers() -> the five servers in order; the two stdio ones are healthy,
    transport stdio, with their tools counted; warehouse is medium and limited to data."""
    servers = {s.name: s for s in make_client(gateway.url).list_servers()}
    assert list(servers) == SERVERS
    demo, sdk = servers["demo"], servers["sdk"]
    assert (demo.transport, demo.health_status, demo.sensitivity_level) == (
        "stdio", "healthy", "low")
    assert demo.tools_count == 12 and sdk.tools_count == 5
    assert servers["warehouse"].authorized_teams == ("data",)
    assert servers["vault"].sensitivity_level == "high"


def test_iter_servers_with_pages_of_two_walks_three_pages_and_yields_each_server_once(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: iter_servers(page_size=2) -> all five servers, once each, in order; the gateway
    saw exactly three page requests with offsets 0, 2, 4 and limit 2."""
    names = [s.name for s in make_client(gateway.url).iter_servers(page_size=2)]
    assert names == SERVERS
    pages = [r.query for r in gateway.requests if r.path == "/api/v1/servers"]
    assert pages == [{"offset": "0", "limit": "2"}, {"offset": "2", "limit": "2"},
                     {"offset": "4", "limit": "2"}]


def test_list_servers_page_two_of_size_two_is_the_middle_page(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: list_servers(page=2, page_size=2) -> records and warehouse only."""
    page = make_client(gateway.url).list_servers(page=2, page_size=2)
    assert [s.name for s in page] == ["records", "warehouse"]


def test_get_server_returns_one_server_and_an_unknown_name_is_not_found(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: get_server("sdk") -> the SDK server, stdio; get_server("nope") -> NotFoundError
    (404) after one request, not retried."""
    client = make_client(gateway.url)
    assert (client.get_server("sdk").name, client.get_server("sdk").transport) == (
        "sdk", "stdio")
    gateway.clear_requests()
    with pytest.raises(sark_sync.NotFoundError) as info:
        client.get_server("nope")
    assert (info.value.status_code, info.value.attempts) == (404, 1)
    assert paths(gateway) == ["GET /api/v1/servers/nope"]


def test_list_tools_of_the_hosted_demo_server_carry_its_schema_and_annotations(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: list_tools("demo") -> the demo server's 12 tools, its own inputSchema and MCP
    annotations (echo read-only, crash destructive)."""
    tools = {t.name: t for t in make_client(gateway.url).list_tools("demo")}
    assert len(tools) == 12
    echo, crash = tools["echo"], tools["crash"]
    assert echo.input_schema["required"] == ["text"]
    assert echo.annotations.read_only_hint is True
    assert crash.annotations.destructive_hint is True
    assert echo.server_name == "demo"


def test_iter_tools_of_every_server_in_pages_of_five_has_no_duplicate(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: iter_tools(page_size=5) over all servers -> 12 + 5 + 2 + 1 + 1 = 21 tools, each
    (server, tool) once; the gateway saw ceil(21 / 5) = 5 page requests."""
    tools = [(t.server_name, t.name) for t in make_client(gateway.url).iter_tools(page_size=5)]
    assert len(tools) == len(set(tools)) == 21
    assert {server for server, _ in tools} == set(SERVERS)
    assert len([r for r in gateway.requests if r.path == "/api/v1/tools"]) == 5


def test_an_unhealthy_gateway_is_reported_as_a_health_result_not_an_error(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the gateway reports itself unhealthy (503 with a health body) -> health() returns
    Health(status="unhealthy"), healthy False, after one request (not retried); healthy
    again afterwards."""
    client = make_client(gateway.url)
    gateway.set_health("unhealthy")
    try:
        health = client.health()
    finally:
        gateway.set_health("healthy")
    assert (health.status, health.healthy) == ("unhealthy", False)
    assert paths(gateway) == ["GET /health"]
    assert client.health().healthy is True


def test_a_wrong_api_key_is_an_authentication_error_after_one_request(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: list_servers() with a wrong key -> AuthenticationError (401), one request, and the
    key appears in neither the message nor the repr of the client."""
    client = make_client(gateway.url, api_key="wrong-key-31337")
    with pytest.raises(sark_sync.AuthenticationError) as info:
        client.list_servers()
    assert info.value.status_code == 401
    assert len(gateway.requests) == 1
    assert "wrong-key-31337" not in str(info.value) + repr(client)


def test_invoke_with_api_key_and_user_jwt_sends_both_and_runs_the_hosted_tool(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke demo/add with alice's JWT -> 5 with structured {"sum": 5}; the one POST
    carried X-API-Key, the Bearer JWT, an X-Request-ID equal to the result's request id and
    an Idempotency-Key."""
    token = alice(gateway)
    result = make_client(gateway.url).invoke_tool("demo", "add", {"a": 2, "b": 3}, user_token=token)
    assert (result.text, result.structured, result.is_error) == ("5", {"sum": 5}, False)
    assert (result.server, result.tool, result.attempts) == ("demo", "add", 1)
    (request,) = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert request.headers["X-Request-ID"] == result.request_id
    assert request.headers["Idempotency-Key"]
    assert json.loads(request.body) == {"server": "demo", "tool": "add",
                                        "parameters": {"a": 2, "b": 3}}


def test_an_expired_user_jwt_is_an_authentication_error_and_the_tool_never_runs(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke records/store with a JWT expired a minute ago -> AuthenticationError
    (401), not retried; the tool received nothing."""
    expired = gateway.issue_token("alice", ("developer",), ("data",), ttl=-60)
    with pytest.raises(sark_sync.AuthenticationError) as info:
        make_client(gateway.url).invoke_tool("records", "store", {"n": 1}, user_token=expired)
    assert (info.value.status_code, info.value.attempts) == (401, 1)
    assert gateway.received == []


def test_a_jwt_signed_with_another_secret_is_rejected(gateway: Hosted, make_client: Make) -> None:
    """Steps: a token from a gateway with another secret -> AuthenticationError, no tool run."""
    forged = LocalGateway(jwt_secret="not-" + JWT_SECRET).issue_token("mallory", ("admin",))
    with pytest.raises(sark_sync.AuthenticationError):
        make_client(gateway.url).invoke_tool("vault", "read", {}, user_token=forged)
    assert gateway.received == []


# =============================================================================================
# A denied user: the gateway's 403 and the client's pre-check
# =============================================================================================


def test_the_gateway_denies_a_viewer_on_a_high_server_with_the_policy_reason(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: bob (viewer) invokes vault/read -> one POST answered 403 -> AuthorizationDenied
    (a PermissionError) with the OPA policy's reason and an audit id; not retried, not
    counted by the breaker; the tool never ran."""
    client = make_client(gateway.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gateway))
    denied = info.value
    assert isinstance(denied, PermissionError)
    assert (denied.status_code, denied.code, denied.attempts) == (403, "policy_denied", 1)
    assert denied.reason.startswith("denied: ")
    assert "insufficient clearance: high sensitivity" in denied.reason
    assert "principal bob clears low" in denied.reason
    assert denied.audit_id
    assert len(invokes(gateway)) == 1 and gateway.received == []
    assert client.breaker_for("vault").failure_count == 0


def test_the_gateway_denies_a_user_outside_the_authorized_teams(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: carol (developer, team ml) invokes warehouse/query -> AuthorizationDenied naming
    the team restriction; alice (team data) then gets through."""
    carol = gateway.issue_token("carol", ("developer",), ("ml",))
    client = make_client(gateway.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"}, user_token=carol)
    assert "team restriction: server warehouse is limited to teams" in info.value.reason
    result = client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"},
                                user_token=alice(gateway))
    assert result.json() == {"sql": "SELECT 1"}
    assert gateway.received == [{"sql": "SELECT 1"}]


def test_the_gateway_denies_a_call_without_a_user_jwt(gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke demo/echo with the API key only -> AuthorizationDenied: the policy has no
    authenticated principal; the stdio tool never ran."""
    runs = gateway.tool_runs("demo", "echo")
    with pytest.raises(sark_sync.AuthorizationDenied, match="no authenticated principal"):
        make_client(gateway.url).invoke_tool("demo", "echo", {"text": "hi"})
    assert gateway.tool_runs("demo", "echo") == runs


def test_destructive_sql_hidden_after_a_select_is_denied_even_for_an_admin(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: an admin sends "SELECT 1; drop table users" nested in the parameters -> denied
    with DROP named; the same admin's harmless query passes."""
    admin = gateway.issue_token("root", ("admin",), ())
    client = make_client(gateway.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"q": {"sql": "SELECT 1; drop table users"}},
                           user_token=admin)
    assert "destructive SQL (DROP) in parameter q.sql" in info.value.reason
    assert client.invoke_tool("warehouse", "query", {"sql": "SELECT 2"},
                              user_token=admin).json() == {"sql": "SELECT 2"}


def test_the_client_pre_check_on_opa_denies_before_anything_is_sent_to_invoke(
        gateway: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: a client with OPAAuthorizer(OPA url) invokes vault/read for bob ->
    AuthorizationDenied with the same reason the gateway gives; gateway.requests holds discovery
    lookups only, no POST /api/v1/invoke; the tool never ran."""
    client = make_client(gateway.url, authorizer=OPAAuthorizer(gateway_opa_server.url))
    with pytest.raises(sark_sync.AuthorizationDenied) as pre:
        client.invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gateway))
    assert invokes(gateway) == [] and gateway.received == []
    assert all(r.method == "GET" for r in gateway.requests)
    with pytest.raises(sark_sync.AuthorizationDenied) as remote:
        make_client(gateway.url).invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gateway))
    assert pre.value.reason == remote.value.reason
    assert pre.value.status_code is None  # decided in the process, no HTTP answer


def test_the_builtin_policy_as_pre_check_decides_like_the_opa_engine(
        gateway: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: the same four calls through a client with BuiltinPolicy() and one with
    OPAAuthorizer -> the same allow/deny and the same reasons."""
    calls = [("vault", "read", bob(gateway)), ("warehouse", "query", alice(gateway)),
             ("warehouse", "query", gateway.issue_token("carol", ("developer",), ("ml",))),
             ("records", "store", bob(gateway))]
    outcomes = []
    for authorizer in (BuiltinPolicy(), OPAAuthorizer(gateway_opa_server.url)):
        client = make_client(gateway.url, authorizer=authorizer)
        seen = []
        for server, tool, token in calls:
            try:
                seen.append(("allow", client.invoke_tool(server, tool, {"n": 1},
                                                         user_token=token).json()))
            except sark_sync.AuthorizationDenied as exc:
                seen.append(("deny", exc.reason))
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert [kind for kind, _ in outcomes[0]] == ["deny", "allow", "deny", "allow"]


def test_six_denials_in_a_row_leave_the_breaker_closed(gateway: Hosted, make_client: Make) -> None:
    """Steps: bob is denied six times (more than the breaker's threshold of 5) -> each one
    request, the breaker still closed; bob's allowed call on records then succeeds."""
    client = make_client(gateway.url)
    for _ in range(6):
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("vault", "read", {}, user_token=bob(gateway))
    assert len(invokes(gateway)) == 6
    assert client.breaker_for("vault").state == "closed"
    assert client.invoke_tool("records", "store", {"ok": 1}, user_token=bob(gateway)).json() == {
        "ok": 1}


# =============================================================================================
# Parameter filtering
# =============================================================================================


def test_the_gateway_removes_top_level_password_api_key_and_token_before_the_tool_runs(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: store {"user", "password", "api_key", "token", "max_tokens"} -> the tool
    received exactly {"user", "max_tokens"}; the result lists the removed keys."""
    result = make_client(gateway.url).invoke_tool(
        "records", "store", {"user": "ada", "password": SECRETS[0], "api_key": SECRETS[1],
                             "token": SECRETS[2], "max_tokens": 5}, user_token=alice(gateway))
    assert gateway.received == [{"user": "ada", "max_tokens": 5}]
    assert result.json() == {"user": "ada", "max_tokens": 5}
    assert set(result.filtered) == {"password", "api_key", "token"}


def test_the_gateway_removes_nested_secrets_in_objects_and_arrays(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: store a nested db.password, items[1].refresh_token and a tool-declared
    sensitive parameter (warehouse's dsn) -> the tool gets the rest, unchanged."""
    parameters = {"db": {"host": "h", "password": SECRETS[3]},
                  "items": [{"id": 1}, {"id": 2, "refresh_token": SECRETS[4]}],
                  "dsn": "postgres://u:p@h/db", "sql": "SELECT 1"}
    make_client(gateway.url).invoke_tool("warehouse", "query", parameters,
                                         user_token=alice(gateway))
    assert gateway.received == [{"db": {"host": "h"}, "items": [{"id": 1}, {"id": 2}],
                            "sql": "SELECT 1"}]


def test_a_call_whose_every_parameter_is_filtered_sends_an_empty_object_to_the_tool(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: store {"password", "secret"} -> the tool runs with {} (not with the original,
    not skipped)."""
    result = make_client(gateway.url).invoke_tool(
        "records", "store", {"password": SECRETS[0], "secret": SECRETS[1]},
        user_token=alice(gateway))
    assert gateway.received == [{}]
    assert result.json() == {}


def test_the_client_pre_check_filters_so_the_secret_never_leaves_the_process(
        gateway: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: with OPAAuthorizer, store {"user", "password", "nested": {"api_key"}} -> the
    POST body the gateway received already lacks both secrets; the tool got the same."""
    client = make_client(gateway.url, authorizer=OPAAuthorizer(gateway_opa_server.url))
    result = client.invoke_tool("records", "store", {
        "user": "ada", "password": SECRETS[0], "nested": {"api_key": SECRETS[1], "x": 1}},
        user_token=alice(gateway))
    (body,) = invokes(gateway)
    assert body["parameters"] == {"user": "ada", "nested": {"x": 1}}
    assert gateway.received == [{"user": "ada", "nested": {"x": 1}}]
    assert not any(secret.encode() in r.body for r in gateway.requests for secret in SECRETS)
    assert set(result.filtered) >= {"password", "nested.api_key"}


# =============================================================================================
# SSE: the events of parallel workers
# =============================================================================================


def read_until(stream: sark_sync.EventStream, stop: Callable[[sark_sync.Event], bool],
               limit: int) -> list[sark_sync.Event]:
    """Events until (and with) the first one ``stop`` accepts; fail after ``limit`` events."""
    events = []
    for event in stream:
        events.append(event)
        if stop(event):
            return events
        assert len(events) < limit, f"no end in sight after {limit} events"
    raise AssertionError(f"the stream ended after {len(events)} events")


@pytest.mark.stress
def test_a_stream_sees_every_tool_invoked_of_eight_workers_exactly_once(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: open stream_events(types=["tool_invoked"]); 8 threads share one client and make
    10 calls each to the hosted demo server; then one marker call. The stream yields, before
    the marker, exactly the 80 request ids of the workers, each once, in increasing event ids,
    each with server, tool, principal and outcome."""
    client = make_client(gateway.url, max_workers=8)
    token = alice(gateway)

    def work(worker: int) -> list[str]:
        return [client.invoke_tool("demo", "add", {"a": worker, "b": n}, user_token=token)
                .request_id or "" for n in range(10)]

    with client.stream_events(types=["tool_invoked"], idle_timeout=PROMPT) as stream:
        with ThreadPoolExecutor(8) as pool:
            made = [rid for ids in pool.map(work, range(8)) for rid in ids]
        marker = client.invoke_tool("records", "store", {"marker": 1}, user_token=token)
        events = read_until(stream, lambda e: e.data["request_id"] == marker.request_id, 200)
    seen = [e.data["request_id"] for e in events[:-1]]
    assert len(made) == len(set(made)) == 80
    assert sorted(seen) == sorted(made)
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids))
    assert {(e.type, e.data["server"], e.data["tool"], e.data["principal"], e.data["outcome"])
            for e in events[:-1]} == {("tool_invoked", "demo", "add", "alice", "success")}


def test_a_stream_sees_authorization_denied_with_the_policy_reason(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: open stream_events(types=["authorization_denied"]); bob is denied on vault and
    carol on warehouse -> two events, in order, with principal and the reasons the callers
    got; no tool_invoked event comes through the type filter."""
    client = make_client(gateway.url)
    carol = gateway.issue_token("carol", ("developer",), ("ml",))
    reasons = []
    with client.stream_events(types=["authorization_denied"], idle_timeout=PROMPT) as stream:
        client.invoke_tool("records", "store", {}, user_token=alice(gateway))  # not wanted
        for server, tool, token in (("vault", "read", bob(gateway)),
                                    ("warehouse", "query", carol)):
            with pytest.raises(sark_sync.AuthorizationDenied) as info:
                client.invoke_tool(server, tool, {}, user_token=token)
            reasons.append(info.value.reason)
        events = [next(stream), next(stream)]
    assert [e.type for e in events] == ["authorization_denied"] * 2
    assert [(e.data["server"], e.data["tool"], e.data["principal"]) for e in events] == [
        ("vault", "read", "bob"), ("warehouse", "query", "carol")]
    assert [e.data["reason"] for e in events] == reasons


def test_transport_mode_http_refuses_an_event_stream_before_connecting(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: a client restricted to transport_mode="http" asks for an event stream ->
    TransportNotAvailableError, and the gateway saw no request."""
    with pytest.raises(sark_sync.TransportNotAvailableError):
        make_client(gateway.url, transport_mode="http").stream_events()
    assert gateway.requests == []


# =============================================================================================
# stdio: local servers through the client's pipeline
# =============================================================================================


def local_demo(**entry: Any) -> dict[str, Any]:
    return {"command": demo_server_command(), "env": child_env(), **entry}


def test_a_local_servers_entry_is_served_over_stdio_without_touching_the_gateway(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: a client with local_servers={"tools": demo}; list_tools, invoke add, invoke a
    failing tool -> 12 tools, 42 with {"sum": 42}, a tool-error result; the gateway saw no
    request at all."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()})
    assert [t.name for t in client.list_tools("tools")][:3] == ["echo", "add", "slow"]
    result = client.invoke_tool("tools", "add", {"a": 2, "b": 40})
    assert (result.text, result.structured, result.server, result.attempts) == (
        "42", {"sum": 42}, "tools", 1)
    failed = client.invoke_tool("tools", "fail", {"message": "no such order"})
    assert (failed.is_error, failed.text) == (True, "no such order")
    with pytest.raises(sark_sync.ToolExecutionError) as info:
        failed.raise_for_error()
    assert info.value.result is failed
    assert gateway.requests == []


def test_submit_and_invoke_many_reach_a_local_server_concurrently(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: a slow call (1 s) is submitted, then invoke_many of 20 echoes to the same
    local server -> the echoes come back in order while the slow one still runs (the server
    answers out of order), then the slow one completes."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()}, max_workers=4)
    client.list_tools("tools")  # started: the slow call's time is the tool's own
    slow = client.submit("tools", "slow", {"seconds": 1.0, "steps": 1})
    results = client.invoke_many([sark_sync.ToolCall("tools", "echo", {"text": f"m{i}"})
                                  for i in range(20)])
    assert [r.text for r in results] == [f"m{i}" for i in range(20)]
    assert not slow.done()
    assert slow.result(timeout=PROMPT).is_error is False


def test_a_local_name_shadows_a_gateway_server_of_the_same_name(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: local_servers={"records": demo}; invoke records/echo -> answered by the local
    demo server; no POST reached the gateway, whose records server has no echo tool."""
    client = make_client(gateway.url, local_servers={"records": local_demo()})
    assert client.invoke_tool("records", "echo", {"text": "local"}).text == "local"
    assert invokes(gateway) == [] and gateway.received == []


def test_transport_mode_stdio_serves_local_servers_and_refuses_the_gateway(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: transport_mode="stdio" -> a local call works; list_servers() and a gateway
    invoke raise TransportNotAvailableError; nothing reached the gateway."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()},
                         transport_mode="stdio")
    assert client.invoke_tool("tools", "echo", {"text": "ok"}).text == "ok"
    with pytest.raises(sark_sync.TransportNotAvailableError):
        client.list_servers()
    with pytest.raises(sark_sync.TransportNotAvailableError):
        client.invoke_tool("records", "store", {}, user_token=alice(gateway))
    assert gateway.requests == []


def test_a_connected_session_is_routed_by_name_until_it_is_closed(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: connect_local_server(demo, name="scratch"); call it directly and by name through
    the client; close it -> alive is False and the next call by name raises
    ProcessExitedError."""
    client = make_client(gateway.url)
    with client.connect_local_server(demo_server_command(), env=child_env(),
                                     name="scratch") as session:
        assert session.server_info["name"] == "sark-sync-demo"
        assert session.call_tool("echo", {"text": "direct"}).text == "direct"
        assert client.invoke_tool("scratch", "echo", {"text": "routed"}).text == "routed"
    assert session.alive is False
    with pytest.raises(sark_sync.ProcessExitedError):
        client.invoke_tool("scratch", "echo", {"text": "too late"})


def test_the_client_pre_check_on_opa_governs_a_local_server_too(
        gateway: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: a client with OPAAuthorizer and a local demo server (medium by default): alice's
    echo with a password -> answered, the password filtered before it reached the server;
    bob (viewer) -> AuthorizationDenied for medium sensitivity; alice with "DROP TABLE" in a
    parameter -> denied; the gateway saw no request at all."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()},
                         authorizer=OPAAuthorizer(gateway_opa_server.url))
    result = client.invoke_tool("tools", "echo", {"text": "hi", "password": SECRETS[0]},
                                user_token=alice(gateway))
    assert (result.text, result.filtered) == ("hi", ("password",))
    with pytest.raises(sark_sync.AuthorizationDenied, match="insufficient clearance: medium"):
        client.invoke_tool("tools", "echo", {"text": "hi"}, user_token=bob(gateway))
    with pytest.raises(sark_sync.AuthorizationDenied, match=r"destructive SQL \(DROP\)"):
        client.invoke_tool("tools", "echo", {"text": "drop table users"}, user_token=alice(gateway))
    assert gateway.requests == []


# =============================================================================================
# The same tool through the gateway and locally
# =============================================================================================


@pytest.mark.realcomp
@pytest.mark.parametrize(("kind", "tool", "arguments"), [
    pytest.param("demo", "echo", {"text": "h\u00e9llo \u2603 \U0001f642"}, id="demo-echo"),
    pytest.param("demo", "add", {"a": 2, "b": 40}, id="demo-add"),
    pytest.param("demo", "fail", {"message": "no such order"}, id="demo-fail"),
    pytest.param("sdk", "echo", {"text": "h\u00e9llo \u2603 \U0001f642"}, id="sdk-echo"),
    pytest.param("sdk", "add", {"a": 0.1, "b": 0.2}, id="sdk-add"),
    pytest.param("sdk", "fail", {"message": "boom"}, id="sdk-fail"),
])
def test_the_same_tool_through_the_gateway_and_locally_gives_equal_results(
        kind: str, tool: str, arguments: dict[str, Any], gateway: Hosted,
        two_routes: sark_sync.GatewayClient) -> None:
    """Steps: invoke <kind>/<tool> through the gateway (HTTP, hosted over stdio there) and
    <kind>-local/<tool> over the client's own stdio -> equal content, structured and
    is_error, as values and as JSON; the gateway route has a request id, the local none."""
    token = alice(gateway)
    remote = two_routes.invoke_tool(kind, tool, arguments, user_token=token)
    local = two_routes.invoke_tool(f"{kind}-local", tool, arguments, user_token=token)
    assert (remote.content, remote.structured, remote.is_error) == (
        local.content, local.structured, local.is_error)
    assert json.dumps([remote.content, remote.structured], sort_keys=True) == json.dumps(
        [local.content, local.structured], sort_keys=True)
    assert remote.is_error is (tool == "fail")
    assert remote.request_id and local.request_id is None
    assert (remote.server, local.server) == (kind, f"{kind}-local")


# =============================================================================================
# The official MCP SDK server, hosted and local
# =============================================================================================


@pytest.mark.realcomp
def test_the_hosted_sdk_server_lists_its_tools_like_the_local_one(
        gateway: Hosted, two_routes: sark_sync.GatewayClient) -> None:
    """Steps: list_tools("sdk") through the gateway and list_tools("sdk-local") over stdio ->
    the same five tools with the same schemas and annotations (echo read-only and
    idempotent)."""
    remote = {t.name: t for t in two_routes.list_tools("sdk")}
    local = {t.name: t for t in two_routes.list_tools("sdk-local")}
    assert sorted(remote) == ["add", "echo", "fail", "slow", "whoami"]
    assert sorted(local) == sorted(remote)
    for name, info in remote.items():
        assert (info.input_schema, info.annotations) == (
            local[name].input_schema, local[name].annotations)
    echo = remote["echo"].annotations
    assert (echo.read_only_hint, echo.idempotent_hint) == (True, True)


@pytest.mark.realcomp
def test_an_sdk_tool_error_through_the_gateway_is_a_result_that_raises_on_demand(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke sdk/fail through the gateway -> a result with is_error and the SDK's
    message, not an exception, not retried; raise_for_error() raises ToolExecutionError
    naming the server and tool; the breaker counted nothing."""
    client = make_client(gateway.url)
    result = client.invoke_tool("sdk", "fail", {"message": "boom"}, user_token=alice(gateway))
    assert (result.is_error, result.text, result.attempts) == (
        True, "Error executing tool fail: boom", 1)
    with pytest.raises(sark_sync.ToolExecutionError) as info:
        result.raise_for_error()
    assert (info.value.server, info.value.tool) == ("sdk", "fail")
    assert client.breaker_for("sdk").failure_count == 0
    assert len(invokes(gateway)) == 1


# =============================================================================================
# A gateway outage: the breaker opens, fails fast, recovers with one probe
# =============================================================================================

#: One request per call: each failed call is one breaker failure and one request.
NO_RETRY = sark_sync.RetryPolicy(attempts=1)


def fail_five_times(client: sark_sync.GatewayClient, gateway: LocalGateway, status: int,
                    token: str) -> None:
    gateway.add_fault(Fault(status=status, times=5, server="records"))
    for _ in range(5):
        with pytest.raises(sark_sync.ServerError):
            client.invoke_tool("records", "store", {}, user_token=token)


def half_open_breaker(gateway: Hosted, make_client: Make, status: int, recovery_timeout: float
                      ) -> tuple[sark_sync.GatewayClient, str, sark_sync.Breaker]:
    """A client (no retries) whose ``records`` breaker five ``status`` answers opened and
    that has turned half-open since; its user token; that breaker."""
    client = make_client(gateway.url, retry=NO_RETRY,
                         breaker=sark_sync.BreakerPolicy(recovery_timeout=recovery_timeout))
    token = alice(gateway)
    fail_five_times(client, gateway, status, token)
    breaker = client.breaker_for("records")
    wait_for(lambda: breaker.state == "half_open", PROMPT, what="the breaker to half-open")
    return client, token, breaker


def test_five_502s_open_the_breaker_and_the_sixth_call_fails_fast_without_a_request(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the gateway answers 502 five times (attempts=1) -> UpstreamError x5, breaker
    open; the sixth call -> CircuitOpenError naming the server, 5 failures and a probe time 30
    s after opening, and no request reached the gateway; other servers and discovery still
    work."""
    client = make_client(gateway.url, retry=NO_RETRY)
    token = alice(gateway)
    fail_five_times(client, gateway, 502, token)
    assert client.breaker_for("records").state == "open"
    sent = len(gateway.requests)
    with pytest.raises(sark_sync.CircuitOpenError) as info:
        client.invoke_tool("records", "store", {}, user_token=token)
    opened = info.value
    assert (opened.server, opened.failures) == ("records", 5)
    assert round((opened.probe_at - opened.opened_at).total_seconds()) == 30
    assert len(gateway.requests) == sent and gateway.received == []
    assert client.invoke_tool("demo", "echo", {"text": "other"}, user_token=token).text == "other"
    assert [s.name for s in client.list_servers()] == SERVERS


def test_an_open_breaker_admits_exactly_one_probe_and_closes_when_it_succeeds(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: 5 x 503 open the breaker (recovery 0.3 s); once half-open, a probe is sent and
    held 0.5 s by the gateway; five calls made meanwhile fail fast with CircuitOpenError and
    send nothing; the probe succeeds, the breaker closes, the next call goes through: the
    gateway saw exactly two invokes after the outage."""
    client, token, breaker = half_open_breaker(gateway, make_client, 503, 0.3)
    gateway.clear_requests()
    gateway.add_fault(Fault(delay=0.5, server="records"))
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(client.invoke_tool, "records", "store", {"probe": 1},
                            user_token=token)
        wait_for(lambda: invokes(gateway), PROMPT, what="the probe to reach the gateway")
        for _ in range(5):
            with pytest.raises(sark_sync.CircuitOpenError):
                client.invoke_tool("records", "store", {"meanwhile": 1}, user_token=token)
        assert probe.result(timeout=PROMPT).json() == {"probe": 1}
    assert breaker.state == "closed"
    assert client.invoke_tool("records", "store", {"after": 1}, user_token=token).json() == {
        "after": 1}
    assert [b["parameters"] for b in invokes(gateway)] == [{"probe": 1}, {"after": 1}]


def test_a_failed_probe_opens_the_breaker_again(gateway: Hosted, make_client: Make) -> None:
    """Steps: 5 x 502 open the breaker (recovery 0.2 s); half-open, the probe gets a sixth
    502 -> UpstreamError and the breaker is open again: the next call fails fast."""
    client, token, breaker = half_open_breaker(gateway, make_client, 502, 0.2)
    gateway.add_fault(Fault(status=502, server="records"))
    with pytest.raises(sark_sync.UpstreamError):
        client.invoke_tool("records", "store", {}, user_token=token)
    assert breaker.state == "open"
    with pytest.raises(sark_sync.CircuitOpenError):
        client.invoke_tool("records", "store", {}, user_token=token)


def test_a_stopped_gateway_opens_the_breaker_and_one_probe_closes_it_after_a_restart(
        make_client: Make) -> None:
    """Steps: a gateway on port P is stopped -> five calls fail with ConnectionFailed (each
    after its retries), the breaker opens, the sixth call fails fast; a new gateway is
    started on P; after the recovery timeout one probe succeeds and closes the breaker."""
    first = LocalGateway(api_keys=(API_KEY,)).start()
    port = int(first.url.rsplit(":", 1)[1])
    first.add_server("orders")
    first.add_tool("orders", "get", lambda parameters: {"order": 1})
    client = make_client(first.url, breaker=sark_sync.BreakerPolicy(recovery_timeout=0.3),
                         timeout=2.0)
    try:
        assert client.invoke_tool("orders", "get", {}).json() == {"order": 1}
        first.stop()
        for _ in range(5):
            with pytest.raises(sark_sync.ConnectionFailed) as info:
                client.invoke_tool("orders", "get", {})
            assert info.value.attempts == FAST_RETRY.attempts
        with pytest.raises(sark_sync.CircuitOpenError):
            client.invoke_tool("orders", "get", {})
        with LocalGateway(api_keys=(API_KEY,), port=port) as second:
            second.add_server("orders")
            second.add_tool("orders", "get", lambda parameters: {"order": 2})
            breaker = client.breaker_for("orders")
            wait_for(lambda: breaker.state == "half_open", PROMPT,
                       what="the breaker to half-open")
            assert client.invoke_tool("orders", "get", {}).json() == {"order": 2}
            assert breaker.state == "closed"
            assert second.tool_runs("orders", "get") == 1
            client.close()
    finally:
        first.stop()


def test_an_answer_lost_mid_body_is_retried_with_the_same_key_and_the_tool_runs_once(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the gateway runs records/store but cuts its answer halfway -> the client retries
    with the same Idempotency-Key and X-Request-ID; the gateway replays the stored answer, so
    the tool ran once and the caller gets its result after two attempts."""
    gateway.add_fault(Fault(truncate=True, server="records"))
    result = make_client(gateway.url).invoke_tool("records", "store", {"order": 7},
                                             user_token=alice(gateway))
    assert (result.json(), result.attempts) == ({"order": 7}, 2)
    assert gateway.received == [{"order": 7}]
    first, second = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["X-Request-ID"] == second.headers["X-Request-ID"]


# =============================================================================================
# Rate limiting: Retry-After
# =============================================================================================


def test_a_429_with_retry_after_is_waited_for_then_retried_once(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the gateway answers 429 with Retry-After: 0.3 -> the client waits at least
    0.3 s (not much more), retries once, and the tool runs once; the result took 2
    attempts."""
    gateway.add_fault(Fault(status=429, retry_after=0.3, server="records"))
    client = make_client(gateway.url)
    token = alice(gateway)
    started = time.monotonic()
    result = client.invoke_tool("records", "store", {"n": 1}, user_token=token)
    elapsed = time.monotonic() - started
    assert result.attempts == 2 and gateway.received == [{"n": 1}]
    assert 0.3 <= elapsed < 0.3 + SLACK, elapsed
    times = [r.received_at for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert len(times) == 2 and times[1] - times[0] >= 0.3


def test_a_retry_after_beyond_the_deadline_raises_the_rate_limit_error_at_once(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: 429 with Retry-After: 10 on a call with a 1 s deadline -> the RateLimitError
    itself without waiting (well under the second), after one attempt, with retry_after 10
    and retryable: the deadline did not run out, the gateway said when to come back."""
    gateway.add_fault(Fault(status=429, retry_after=10, server="records"))
    started = time.monotonic()
    with pytest.raises(sark_sync.RateLimitError) as info:
        make_client(gateway.url).invoke_tool("records", "store", {}, user_token=alice(gateway),
                                             timeout=1)
    assert time.monotonic() - started < 0.5
    error = info.value
    assert (error.attempts, error.retry_after, error.retryable) == (1, 10, True)
    assert gateway.received == []


def test_a_retry_after_above_the_client_maximum_fails_fast_with_rate_limit_error(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: 429 with Retry-After: 600 (over the 120 s the client will wait) ->
    RateLimitError at once: code rate_limited, retry_after 600, one attempt."""
    gateway.add_fault(Fault(status=429, retry_after=600, server="records"))
    started = time.monotonic()
    with pytest.raises(sark_sync.RateLimitError) as info:
        make_client(gateway.url).invoke_tool("records", "store", {}, user_token=alice(gateway))
    assert time.monotonic() - started < 0.5
    assert (info.value.code, info.value.retry_after, info.value.attempts) == (
        "rate_limited", 600.0, 1)


def test_a_503_with_retry_after_on_discovery_is_honoured(
    gateway: Hosted, make_client: Make
) -> None:
    """Steps: GET /api/v1/servers answers 503 with Retry-After: 0.2 twice -> list_servers()
    succeeds on its third request, at least 0.4 s later."""
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, retry_after=0.2, times=2))
    started = time.monotonic()
    assert [s.name for s in make_client(gateway.url).list_servers()] == SERVERS
    assert 0.4 <= time.monotonic() - started < 0.4 + SLACK
    assert paths(gateway) == ["GET /api/v1/servers"] * 3


# =============================================================================================
# Deadlines
# =============================================================================================


def test_a_deadline_across_retries_of_slow_answers_ends_the_call_in_time(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: each answer is delayed 1 s; the client (up to 10 attempts) reads for 0.3 s per
    attempt within a 0.75 s deadline -> read timeouts are retried (same key) until
    DeadlineExceeded, raised within 0.75 s + slack, before the attempts ran out; its attempts
    (2 full reads and a third cut short, on a quiet machine) equal the invokes the gateway
    received; the last error is a TransportTimeout."""
    # Answered 504 after the delay, to nobody: the tool never runs late, after the test.
    gateway.add_fault(Fault(delay=1.0, status=504, server="vault", times=None))
    timeouts = sark_sync.Timeouts(connect=0.5, read=0.3, deadline=0.75)
    retry = sark_sync.RetryPolicy(attempts=10, backoff_base=0.01, backoff_max=0.05)
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded) as info:
        make_client(gateway.url, retry=retry).invoke_tool("vault", "read", {},
                                        user_token=gateway.issue_token("sec", ("security",),
                                                                  ("security",)),
                                        timeout=timeouts)
    elapsed = time.monotonic() - started
    assert 0.75 - 0.05 <= elapsed < 0.75 + SLACK, elapsed
    exceeded = info.value
    assert 2 <= exceeded.attempts < 10
    # The last request may still be on its way in when the client gives up on it.
    wait_for(lambda: len(invokes(gateway)) == exceeded.attempts, PROMPT,
               what=lambda: f"{exceeded.attempts} invokes, got {len(invokes(gateway))}")
    keys = {r.headers["Idempotency-Key"] for r in gateway.requests if r.path == "/api/v1/invoke"}
    assert len(keys) == 1
    assert isinstance(exceeded.last_error, sark_sync.TransportTimeout)


def test_a_deadline_on_a_slow_hosted_stdio_tool_raises_in_time(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: demo/slow for 1 s through the gateway with timeout=0.3 -> DeadlineExceeded
    within 0.3 s + slack; the gateway's demo server keeps serving."""
    client = make_client(gateway.url)
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded):
        client.invoke_tool("demo", "slow", {"seconds": 1.0, "steps": 2}, user_token=alice(gateway),
                           timeout=0.3)
    assert time.monotonic() - started < 0.3 + SLACK
    assert client.invoke_tool("demo", "echo", {"text": "still here"},
                              user_token=alice(gateway)).text == "still here"


def test_a_deadline_on_a_slow_local_tool_raises_in_time_and_the_server_stays_usable(
        make_client: Make, gateway: Hosted) -> None:
    """Steps: local demo/slow for 5 s with timeout=0.3 -> DeadlineExceeded within 0.3 s +
    slack; an echo on the same server then answers at once."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()})
    client.list_tools("tools")
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded) as info:
        client.invoke_tool("tools", "slow", {"seconds": 5, "steps": 50}, timeout=0.3)
    assert time.monotonic() - started < 0.3 + SLACK
    assert info.value.attempts == 1
    assert client.invoke_tool("tools", "echo", {"text": "alive"}, timeout=PROMPT).text == "alive"


# =============================================================================================
# A stdio server crashing mid-call, and its restart
# =============================================================================================


def test_a_hosted_stdio_server_crashing_mid_call_is_a_502_and_the_next_call_restarts_it(
        make_client: Make) -> None:
    """Steps: a gateway hosts the demo server; demo/crash exits it mid-call -> UpstreamError
    502 (retried with the same key, replayed by the gateway: the crash ran once); the server
    is listed unhealthy; the next echo restarts it and answers; server_health events say
    healthy, unhealthy, healthy."""
    with LocalGateway(api_keys=(API_KEY,), event_retry=0.01) as gateway:
        gateway.add_stdio_server("demo", demo_server_command(), env=child_env(), call_timeout=5)
        client = make_client(gateway.url)
        assert client.invoke_tool("demo", "echo", {"text": "before"}).text == "before"
        with pytest.raises(sark_sync.UpstreamError) as info:
            client.invoke_tool("demo", "crash", {"code": 3})
        assert (info.value.status_code, info.value.code) == (502, "upstream_error")
        assert gateway.tool_runs("demo", "crash") == 1
        assert client.get_server("demo").health_status == "unhealthy"
        assert client.invoke_tool("demo", "echo", {"text": "after"}).text == "after"
        assert client.get_server("demo").health_status == "healthy"
        with client.stream_events(types=["server_health"], last_event_id=0,
                                  idle_timeout=PROMPT) as stream:
            health = [next(stream).data for _ in range(3)]
        client.close()
    assert [(h["server"], h["status"]) for h in health] == [
        ("demo", "healthy"), ("demo", "unhealthy"), ("demo", "healthy")]


def test_a_local_server_crashing_mid_call_is_restarted_within_its_restart_policy(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: local_servers with RestartPolicy(max_restarts=1); demo/crash(3) exits the server
    mid-call -> ProcessExitedError with exit code 3 and the server's last stderr line, one
    attempt (crash is not retry-safe); the next echo restarts it; a second crash uses up the
    budget, so the next call is refused without a restart."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()},
                         restart=sark_sync.RestartPolicy(max_restarts=1, backoff=0.05))
    assert client.invoke_tool("tools", "echo", {"text": "before"}).text == "before"
    with pytest.raises(sark_sync.ProcessExitedError) as info:
        client.invoke_tool("tools", "crash", {"code": 3})
    crashed = info.value
    assert (crashed.returncode, crashed.attempts) == (3, 1)
    assert crashed.stderr_tail.splitlines()[-1] == (
        "demo server: crashing on purpose with exit code 3")
    assert client.invoke_tool("tools", "echo", {"text": "back"}).text == "back"
    with pytest.raises(sark_sync.ProcessExitedError):
        client.invoke_tool("tools", "crash", {"code": 3})
    with pytest.raises(sark_sync.ProcessExitedError, match="not restarting it again yet"):
        client.invoke_tool("tools", "echo", {"text": "refused"})


def test_a_crash_fails_the_other_pending_call_at_once_not_at_its_timeout(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: a session's slow call (5 s) is in flight (its first progress notification
    arrived); a crash call on the same server -> both fail with ProcessExitedError (exit code
    4) within a moment, long before the slow call's 5 s."""
    client = make_client(gateway.url)
    in_flight = threading.Event()
    with client.connect_local_server(demo_server_command(), env=child_env()) as session, \
            ThreadPoolExecutor(1) as pool:
        slow = pool.submit(session.call_tool, "slow", {"seconds": 5, "steps": 50},
                           progress=lambda *progress: in_flight.set())
        assert in_flight.wait(PROMPT)
        started = time.monotonic()
        with pytest.raises(sark_sync.ProcessExitedError) as crash:
            session.call_tool("crash", {"code": 4})
        with pytest.raises(sark_sync.ProcessExitedError) as pending:
            slow.result(timeout=PROMPT)
        assert time.monotonic() - started < 1.0
    assert crash.value.returncode == pending.value.returncode == 4


# =============================================================================================
# An event stream that survives a gateway restart
# =============================================================================================


def test_an_event_stream_survives_a_gateway_restart_without_gap_or_duplicate(
        make_client: Make) -> None:
    """Steps: stream tool_invoked from gateway A; 5 invokes -> 5 events; A stops; gateway B
    starts on the same port with first_event_id continuing A's ids; 5 invokes on B -> the same
    stream yields their 5 events: the 10 request ids once each, in order, ids increasing
    across the restart (B's after A's last), no stream_reset, at least one reconnect."""
    def start(port: int = 0, first_event_id: int = 1) -> LocalGateway:
        gateway = LocalGateway(api_keys=(API_KEY,), port=port, first_event_id=first_event_id,
                          event_retry=0.01).start()
        gateway.add_server("jobs")
        gateway.add_tool("jobs", "run", lambda parameters: parameters)
        return gateway

    first = start()
    port = int(first.url.rsplit(":", 1)[1])
    client = make_client(first.url)
    try:
        with client.stream_events(types=["tool_invoked"], idle_timeout=PROMPT) as stream:
            made = [client.invoke_tool("jobs", "run", {"n": n}).request_id for n in range(5)]
            events = [next(stream) for _ in range(5)]
            first.stop()
            last_of_first = first.last_event_id
            with start(port, last_of_first + 1):
                made += [client.invoke_tool("jobs", "run", {"n": n}).request_id
                         for n in range(5, 10)]
                events += [next(stream) for _ in range(5)]
            reconnects = stream.reconnects
        client.close()
    finally:
        first.stop()
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids)) and len(ids) == 10
    assert ids[4] <= last_of_first < ids[5]
    assert [e.data["request_id"] for e in events] == made
    assert {e.type for e in events} == {"tool_invoked"}
    assert reconnects >= 1


# =============================================================================================
# A Celery-like fan-out, and forked workers
# =============================================================================================


@pytest.mark.stress
def test_a_fan_out_of_200_calls_with_invoke_many_returns_every_result_in_order(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke_many of 200 demo/add calls through the gateway (8 workers) -> 200
    results in the order of the calls, each the right sum, 200 distinct request ids; the
    gateway received exactly 200 invokes and the stdio tool ran 200 more times."""
    client = make_client(gateway.url, max_workers=8)
    token = alice(gateway)
    runs = gateway.tool_runs("demo", "add")
    calls = [sark_sync.ToolCall("demo", "add", {"a": i, "b": 1000}, user_token=token)
             for i in range(200)]
    results = client.invoke_many(calls)
    assert [r.structured for r in results] == [{"sum": i + 1000} for i in range(200)]
    assert all(not r.is_error and r.attempts == 1 for r in results)
    assert len({r.request_id for r in results}) == 200
    assert len(invokes(gateway)) == 200
    assert gateway.tool_runs("demo", "add") == runs + 200


def test_a_fan_out_with_return_exceptions_keeps_each_failure_in_its_place(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: invoke_many of 30 calls where every third is denied (bob on vault) and every
    fifth is a tool error, return_exceptions=True -> AuthorizationDenied instances exactly at
    the denied positions, error results at the failing ones, the rest correct."""
    client = make_client(gateway.url, max_workers=4)
    calls = []
    for i in range(30):
        if i % 3 == 0:
            calls.append(sark_sync.ToolCall("vault", "read", {"i": i}, user_token=bob(gateway)))
        elif i % 5 == 0:
            calls.append(sark_sync.ToolCall("records", "fail", {"i": i}, user_token=bob(gateway)))
        else:
            calls.append(sark_sync.ToolCall("records", "store", {"i": i}, user_token=bob(gateway)))
    outcomes = client.invoke_many(calls, return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert isinstance(outcome, sark_sync.AuthorizationDenied), (i, outcome)
        elif i % 5 == 0:
            assert outcome.is_error, (i, outcome)
        else:
            assert outcome.json() == {"i": i}, (i, outcome)


def children() -> set[int]:
    """The pids of this process's children (Linux /proc)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            pids.update(int(pid) for pid in listing.read().split())
    return pids


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_calls_the_gateway_through_the_inherited_client_on_its_own_connection(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the parent calls the gateway (one pooled connection); a forked child uses the
    inherited client -> its call succeeds on a new connection (the gateway accepted one more)
    and the parent's next call still succeeds."""
    client = make_client(gateway.url)
    token = alice(gateway)
    assert client.invoke_tool("records", "store", {"who": "parent"}, user_token=token).json()
    accepted = gateway.connections_accepted

    def child_work() -> Any:
        result = client.invoke_tool("records", "store", {"who": "child"}, user_token=token)
        client.close()
        return result.json()

    assert in_child(child_work) == {"who": "child"}
    assert gateway.connections_accepted == accepted + 1
    assert client.invoke_tool("records", "store", {"who": "parent again"},
                              user_token=token).json() == {"who": "parent again"}
    assert gateway.received == [{"who": "parent"}, {"who": "child"}, {"who": "parent again"}]


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_starts_its_own_local_server_and_leaves_the_parents_alone(
        gateway: Hosted, make_client: Make) -> None:
    """Steps: the parent's client starts a local demo server; a forked child calls it by name
    -> the child starts a server of its own (its one child process), gets the answer, and
    closes it; the parent's server is still its child, and answers."""
    client = make_client(gateway.url, local_servers={"tools": local_demo()})
    before = children()
    assert client.invoke_tool("tools", "echo", {"text": "parent"}).text == "parent"
    parents_server = children() - before
    assert len(parents_server) == 1

    def child_work() -> Any:
        text = client.invoke_tool("tools", "echo", {"text": "child"}).text
        own = sorted(children())
        client.close()
        return [text, own]

    text, own = in_child(child_work)
    assert text == "child" and len(own) == 1 and own[0] not in parents_server
    assert parents_server <= children()
    assert client.invoke_tool("tools", "echo", {"text": "again"}).text == "again"


# =============================================================================================
# Audit trail completeness
# =============================================================================================

#: What identifies an audit event in these tests.
Summary = tuple[Any, ...]


def tool_events(events: list[AuditEvent]) -> list[AuditEvent]:
    """The events of tool calls (not of discovery, health or streams)."""
    return [e for e in events if e.event_type in ("tool_invocation", "authorization")]


def summary(event: AuditEvent) -> Summary:
    return (event.outcome, event.principal_id, event.server, event.tool, event.transport)


def assert_no_secret(*texts: str, tokens: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (*SECRETS, API_KEY, *tokens):
            assert secret not in text, f"{secret!r} leaked into: {text[:300]}"


def test_the_audit_trail_of_the_whole_scenario_has_one_event_per_call_and_no_secret(
        gateway: Hosted, make_client: Make, gateway_opa_server: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Steps: with audit=[CallableSink(list.append)] plus the logging sink, make every kind of
    call: a success with secrets in its parameters, a tool error, a gateway denial, an
    upstream error after retries, a local success and a local tool error over stdio, a
    3-call invoke_many, and a client-side pre-check denial -> exactly one event per call (10),
    each with the right outcome, principal, server, tool, transport, status and request id;
    no parameter secret, API key or JWT in any event, log line or error message."""
    caplog.set_level(logging.DEBUG)
    events: list[AuditEvent] = []
    sinks = [CallableSink(events.append), LoggingSink()]
    client = make_client(gateway.url, audit=sinks, local_servers={"tools": local_demo()})
    checked = make_client(gateway.url, audit=sinks,
                          authorizer=OPAAuthorizer(gateway_opa_server.url))
    token, viewer = alice(gateway), bob(gateway)
    errors: list[BaseException] = []
    results = [client.invoke_tool("records", "store", {
        "user": "ada", "password": SECRETS[0], "nested": {"token": SECRETS[2]}},
        user_token=token)]
    results.append(client.invoke_tool("records", "fail", {"api_key": SECRETS[1]},
                                      user_token=token))
    with pytest.raises(sark_sync.AuthorizationDenied) as denied:
        client.invoke_tool("vault", "read", {"password": SECRETS[0]}, user_token=viewer)
    gateway.add_fault(Fault(status=502, times=None, server="records"))
    with pytest.raises(sark_sync.UpstreamError) as failed:
        client.invoke_tool("records", "store", {"token": SECRETS[2]}, user_token=token)
    gateway.clear_faults()
    results.append(client.invoke_tool("tools", "echo", {"text": "local"}, user_token=token))
    results.append(client.invoke_tool("tools", "fail", {"message": "no", "secret": SECRETS[3]},
                                      user_token=token))
    many = client.invoke_many([sark_sync.ToolCall("records", "store", {"i": i, "token":
                                                  SECRETS[4]}, user_token=token)
                               for i in range(3)])
    with pytest.raises(sark_sync.AuthorizationDenied) as pre_checked:
        checked.invoke_tool("vault", "read", {"password": SECRETS[0]}, user_token=viewer)
    errors += [denied.value, failed.value, pre_checked.value]
    client.close()
    checked.close()

    calls = tool_events(events)
    assert len(calls) == 10, [summary(e) for e in calls]
    sequential, fanned, last = calls[:6], calls[6:9], calls[9]
    assert [summary(e) for e in sequential] == [
        ("success", "alice", "records", "store", "http"),
        ("tool_error", "alice", "records", "fail", "http"),
        ("denied", "bob", "vault", "read", "http"),
        ("error", "alice", "records", "store", "http"),
        ("success", "alice", "tools", "echo", "stdio"),
        ("tool_error", "alice", "tools", "fail", "stdio"),
    ]
    assert [summary(e) for e in fanned] == [("success", "alice", "records", "store", "http")] * 3
    assert summary(last) == ("denied", "bob", "vault", "read", "http")
    gateway_denial, upstream = sequential[2], sequential[3]
    assert (gateway_denial.decision, gateway_denial.status_code, gateway_denial.reason) == (
        "deny", 403, denied.value.reason)
    assert (upstream.error_type, upstream.status_code, upstream.attempts) == (
        "UpstreamError", 502, failed.value.attempts)
    assert (last.decision, last.status_code, last.reason) == (
        "deny", None, pre_checked.value.reason)
    assert [e.request_id for e in sequential[:2]] == [r.request_id for r in results[:2]]
    assert sorted(e.request_id or "" for e in fanned) == sorted(r.request_id or ""
                                                                 for r in many)
    assert sequential[0].parameters["user"] == "ada"
    assert_no_secret(*(e.to_json() for e in events), caplog.text,
                     *(str(e) + repr(e) for e in errors), tokens=(token, viewer))
    assert len([r for r in caplog.records if r.name == "sark_sync.audit"]) == len(events)


def test_a_json_lines_audit_file_holds_one_line_per_call_and_no_secret(
        gateway: Hosted, make_client: Make, tmp_path: Any) -> None:
    """Steps: audit to a JSONLinesSink; a success, a tool error, a denial, an unknown server
    (404) and a local success -> five JSON lines (mode 0600) with those outcomes in order,
    their parameters redacted, and no secret anywhere in the file."""
    path = tmp_path / "audit.jsonl"
    sink = JSONLinesSink(path)
    client = make_client(gateway.url, audit=[sink], local_servers={"tools": local_demo()})
    token = alice(gateway)
    try:
        client.invoke_tool("records", "store", {"password": SECRETS[0]}, user_token=token)
        client.invoke_tool("records", "fail", {"token": SECRETS[2]}, user_token=token)
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("vault", "read", {"api_key": SECRETS[1]}, user_token=bob(gateway))
        with pytest.raises(sark_sync.NotFoundError):
            client.invoke_tool("nope", "read", {"secret": SECRETS[3]}, user_token=token)
        client.invoke_tool("tools", "echo", {"text": "local"})
        client.close()
    finally:
        sink.close()
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(e["outcome"], e["server"], e["transport"]) for e in lines] == [
        ("success", "records", "http"), ("tool_error", "records", "http"),
        ("denied", "vault", "http"), ("error", "nope", "http"), ("success", "tools", "stdio")]
    assert lines[0]["parameters"] == {"password": "[secure]"}
    assert lines[3]["status_code"] == 404
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert_no_secret(text, tokens=(token,))
