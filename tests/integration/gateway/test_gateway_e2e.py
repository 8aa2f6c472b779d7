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
from typing import Any, Callable

import pytest
from conftest import Hosted
from support import API_KEY, JWT_SECRET

import sark_sync
from sark_sync.governance import OPAAuthorizer
from sark_sync.testing import BuiltinPolicy, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]

#: Bound for anything that should happen at once on a loaded 2-core machine.
PROMPT = 5.0
#: Slack allowed past a deadline (scheduling on a loaded machine).
SLACK = 0.5
#: Parameter values that must never appear in an event, a log line or an error message.
SECRETS = ("hunter2-pw", "sk-live-4242", "tok-abcdef", "nested-pw-77", "listed-tok-99")
#: The servers of the module's gateway, in registration order.
SERVERS = ["demo", "sdk", "records", "warehouse", "vault"]


def alice(gw: LocalGateway) -> str:
    """A developer of team data: clears low and medium, may use warehouse."""
    return gw.issue_token("alice", ("developer",), ("data",))


def bob(gw: LocalGateway) -> str:
    """A viewer of team ml: clears low only."""
    return gw.issue_token("bob", ("viewer",), ("ml",))


def invokes(gw: LocalGateway) -> list[dict[str, Any]]:
    """The bodies of the POST /api/v1/invoke requests the gateway received, in order."""
    return [json.loads(r.body) for r in gw.requests if r.path == "/api/v1/invoke"]


def paths(gw: LocalGateway) -> list[str]:
    return [f"{r.method} {r.path}" for r in gw.requests]


# =============================================================================================
# HTTP: API key, user JWT, discovery, health
# =============================================================================================


def test_health_with_the_api_key_reports_healthy_and_counts_every_server(
        gw: Hosted, make_client: Make) -> None:
    """Steps: GET /health with the API key -> healthy, the gateway's version, 5 servers; the
    request carried X-API-Key and a User-Agent naming sark-sync."""
    health = make_client(gw.url).health()
    assert (health.status, health.healthy, health.servers) == ("healthy", True, len(SERVERS))
    assert health.version == "0.1.0-local"
    (request,) = gw.requests
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["User-Agent"].startswith(f"sark-sync/{sark_sync.__version__} ")


def test_list_servers_shows_the_hosted_stdio_servers_with_their_metadata(
        gw: Hosted, make_client: Make) -> None:
    """Steps: list_servers() -> the five servers in order; the two stdio ones are healthy,
    transport stdio, with their tools counted; warehouse is medium and limited to data."""
    servers = {s.name: s for s in make_client(gw.url).list_servers()}
    assert list(servers) == SERVERS
    demo, sdk = servers["demo"], servers["sdk"]
    assert (demo.transport, demo.health_status, demo.sensitivity_level) == (
        "stdio", "healthy", "low")
    assert demo.tools_count == 12 and sdk.tools_count == 5
    assert servers["warehouse"].authorized_teams == ("data",)
    assert servers["vault"].sensitivity_level == "high"


def test_iter_servers_with_pages_of_two_walks_three_pages_and_yields_each_server_once(
        gw: Hosted, make_client: Make) -> None:
    """Steps: iter_servers(page_size=2) -> all five servers, once each, in order; the gateway
    saw exactly three page requests with offsets 0, 2, 4 and limit 2."""
    names = [s.name for s in make_client(gw.url).iter_servers(page_size=2)]
    assert names == SERVERS
    pages = [r.query for r in gw.requests if r.path == "/api/v1/servers"]
    assert pages == [{"offset": "0", "limit": "2"}, {"offset": "2", "limit": "2"},
                     {"offset": "4", "limit": "2"}]


def test_list_servers_page_two_of_size_two_is_the_middle_page(
        gw: Hosted, make_client: Make) -> None:
    """Steps: list_servers(page=2, page_size=2) -> records and warehouse only."""
    page = make_client(gw.url).list_servers(page=2, page_size=2)
    assert [s.name for s in page] == ["records", "warehouse"]


def test_get_server_returns_one_server_and_an_unknown_name_is_not_found(
        gw: Hosted, make_client: Make) -> None:
    """Steps: get_server("sdk") -> the SDK server, stdio; get_server("nope") -> NotFoundError
    (404) after one request, not retried."""
    client = make_client(gw.url)
    assert (client.get_server("sdk").name, client.get_server("sdk").transport) == (
        "sdk", "stdio")
    gw.clear_requests()
    with pytest.raises(sark_sync.NotFoundError) as info:
        client.get_server("nope")
    assert (info.value.status_code, info.value.attempts) == (404, 1)
    assert paths(gw) == ["GET /api/v1/servers/nope"]


def test_list_tools_of_the_hosted_demo_server_carry_its_schema_and_annotations(
        gw: Hosted, make_client: Make) -> None:
    """Steps: list_tools("demo") -> the demo server's 12 tools, its own inputSchema and MCP
    annotations (echo read-only, crash destructive)."""
    tools = {t.name: t for t in make_client(gw.url).list_tools("demo")}
    assert len(tools) == 12
    echo, crash = tools["echo"], tools["crash"]
    assert echo.input_schema["required"] == ["text"]
    assert echo.annotations.read_only_hint is True
    assert crash.annotations.destructive_hint is True
    assert echo.server_name == "demo"


def test_iter_tools_of_every_server_in_pages_of_five_has_no_duplicate(
        gw: Hosted, make_client: Make) -> None:
    """Steps: iter_tools(page_size=5) over all servers -> 12 + 5 + 2 + 1 + 1 = 21 tools, each
    (server, tool) once; the gateway saw ceil(21 / 5) = 5 page requests."""
    tools = [(t.server_name, t.name) for t in make_client(gw.url).iter_tools(page_size=5)]
    assert len(tools) == len(set(tools)) == 21
    assert {server for server, _ in tools} == set(SERVERS)
    assert len([r for r in gw.requests if r.path == "/api/v1/tools"]) == 5


def test_a_wrong_api_key_is_an_authentication_error_after_one_request(
        gw: Hosted, make_client: Make) -> None:
    """Steps: list_servers() with a wrong key -> AuthenticationError (401), one request, and the
    key appears in neither the message nor the repr of the client."""
    client = make_client(gw.url, api_key="wrong-key-31337")
    with pytest.raises(sark_sync.AuthenticationError) as info:
        client.list_servers()
    assert info.value.status_code == 401
    assert len(gw.requests) == 1
    assert "wrong-key-31337" not in str(info.value) + repr(client)


def test_invoke_with_api_key_and_user_jwt_sends_both_and_runs_the_hosted_tool(
        gw: Hosted, make_client: Make) -> None:
    """Steps: invoke demo/add with alice's JWT -> 5 with structured {"sum": 5}; the one POST
    carried X-API-Key, the Bearer JWT, an X-Request-ID equal to the result's request id and
    an Idempotency-Key."""
    token = alice(gw)
    result = make_client(gw.url).invoke_tool("demo", "add", {"a": 2, "b": 3}, user_token=token)
    assert (result.text, result.structured, result.is_error) == ("5", {"sum": 5}, False)
    assert (result.server, result.tool, result.attempts) == ("demo", "add", 1)
    (request,) = [r for r in gw.requests if r.path == "/api/v1/invoke"]
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert request.headers["X-Request-ID"] == result.request_id
    assert request.headers["Idempotency-Key"]
    assert json.loads(request.body) == {"server": "demo", "tool": "add",
                                        "parameters": {"a": 2, "b": 3}}


def test_an_expired_user_jwt_is_an_authentication_error_and_the_tool_never_runs(
        gw: Hosted, make_client: Make) -> None:
    """Steps: invoke records/store with a JWT expired a minute ago -> AuthenticationError
    (401), not retried; the tool received nothing."""
    expired = gw.issue_token("alice", ("developer",), ("data",), ttl=-60)
    with pytest.raises(sark_sync.AuthenticationError) as info:
        make_client(gw.url).invoke_tool("records", "store", {"n": 1}, user_token=expired)
    assert (info.value.status_code, info.value.attempts) == (401, 1)
    assert gw.received == []


def test_a_jwt_signed_with_another_secret_is_rejected(gw: Hosted, make_client: Make) -> None:
    """Steps: a token from a gateway with another secret -> AuthenticationError, no tool run."""
    forged = LocalGateway(jwt_secret="not-" + JWT_SECRET).issue_token("mallory", ("admin",))
    with pytest.raises(sark_sync.AuthenticationError):
        make_client(gw.url).invoke_tool("vault", "read", {}, user_token=forged)
    assert gw.received == []


# =============================================================================================
# A denied user: the gateway's 403 and the client's pre-check
# =============================================================================================


def test_the_gateway_denies_a_viewer_on_a_high_server_with_the_policy_reason(
        gw: Hosted, make_client: Make) -> None:
    """Steps: bob (viewer) invokes vault/read -> one POST answered 403 -> AuthorizationDenied
    (a PermissionError) with the OPA policy's reason and an audit id; not retried, not
    counted by the breaker; the tool never ran."""
    client = make_client(gw.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gw))
    denied = info.value
    assert isinstance(denied, PermissionError)
    assert (denied.status_code, denied.code, denied.attempts) == (403, "policy_denied", 1)
    assert denied.reason.startswith("denied: ")
    assert "insufficient clearance: high sensitivity" in denied.reason
    assert "principal bob clears low" in denied.reason
    assert denied.audit_id
    assert len(invokes(gw)) == 1 and gw.received == []
    assert client.breaker_for("vault").failure_count == 0


def test_the_gateway_denies_a_user_outside_the_authorized_teams(
        gw: Hosted, make_client: Make) -> None:
    """Steps: carol (developer, team ml) invokes warehouse/query -> AuthorizationDenied naming
    the team restriction; alice (team data) then gets through."""
    carol = gw.issue_token("carol", ("developer",), ("ml",))
    client = make_client(gw.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"}, user_token=carol)
    assert "team restriction: server warehouse is limited to teams" in info.value.reason
    result = client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"}, user_token=alice(gw))
    assert result.json() == {"sql": "SELECT 1"}
    assert gw.received == [{"sql": "SELECT 1"}]


def test_the_gateway_denies_a_call_without_a_user_jwt(gw: Hosted, make_client: Make) -> None:
    """Steps: invoke demo/echo with the API key only -> AuthorizationDenied: the policy has no
    authenticated principal; the stdio tool never ran."""
    with pytest.raises(sark_sync.AuthorizationDenied, match="no authenticated principal"):
        make_client(gw.url).invoke_tool("demo", "echo", {"text": "hi"})
    assert gw.tool_runs("demo", "echo") == 0


def test_destructive_sql_hidden_after_a_select_is_denied_even_for_an_admin(
        gw: Hosted, make_client: Make) -> None:
    """Steps: an admin sends "SELECT 1; drop table users" nested in the parameters -> denied
    with DROP named; the same admin's harmless query passes."""
    admin = gw.issue_token("root", ("admin",), ())
    client = make_client(gw.url)
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"q": {"sql": "SELECT 1; drop table users"}},
                           user_token=admin)
    assert "destructive SQL (DROP) in parameter q.sql" in info.value.reason
    assert client.invoke_tool("warehouse", "query", {"sql": "SELECT 2"},
                              user_token=admin).json() == {"sql": "SELECT 2"}


def test_the_client_pre_check_on_opa_denies_before_anything_is_sent_to_invoke(
        gw: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: a client with OPAAuthorizer(OPA url) invokes vault/read for bob ->
    AuthorizationDenied with the same reason the gateway gives; gw.requests holds discovery
    lookups only, no POST /api/v1/invoke; the tool never ran."""
    client = make_client(gw.url, authorizer=OPAAuthorizer(gateway_opa_server.url))
    with pytest.raises(sark_sync.AuthorizationDenied) as pre:
        client.invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gw))
    assert invokes(gw) == [] and gw.received == []
    assert all(r.method == "GET" for r in gw.requests)
    with pytest.raises(sark_sync.AuthorizationDenied) as remote:
        make_client(gw.url).invoke_tool("vault", "read", {"key": "k"}, user_token=bob(gw))
    assert pre.value.reason == remote.value.reason
    assert pre.value.status_code is None  # decided in the process, no HTTP answer


def test_the_builtin_policy_as_pre_check_decides_like_the_opa_engine(
        gw: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: the same four calls through a client with BuiltinPolicy() and one with
    OPAAuthorizer -> the same allow/deny and the same reasons."""
    calls = [("vault", "read", bob(gw)), ("warehouse", "query", alice(gw)),
             ("warehouse", "query", gw.issue_token("carol", ("developer",), ("ml",))),
             ("records", "store", bob(gw))]
    outcomes = []
    for authorizer in (BuiltinPolicy(), OPAAuthorizer(gateway_opa_server.url)):
        client = make_client(gw.url, authorizer=authorizer)
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


def test_six_denials_in_a_row_leave_the_breaker_closed(gw: Hosted, make_client: Make) -> None:
    """Steps: bob is denied six times (more than the breaker's threshold of 5) -> each one
    request, the breaker still closed; bob's allowed call on records then succeeds."""
    client = make_client(gw.url)
    for _ in range(6):
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("vault", "read", {}, user_token=bob(gw))
    assert len(invokes(gw)) == 6
    assert client.breaker_for("vault").state == "closed"
    assert client.invoke_tool("records", "store", {"ok": 1}, user_token=bob(gw)).json() == {
        "ok": 1}


# =============================================================================================
# Parameter filtering
# =============================================================================================


def test_the_gateway_removes_top_level_password_api_key_and_token_before_the_tool_runs(
        gw: Hosted, make_client: Make) -> None:
    """Steps: store {"user", "password", "api_key", "token", "max_tokens"} -> the tool
    received exactly {"user", "max_tokens"}; the result lists the removed keys."""
    result = make_client(gw.url).invoke_tool(
        "records", "store", {"user": "ada", "password": SECRETS[0], "api_key": SECRETS[1],
                             "token": SECRETS[2], "max_tokens": 5}, user_token=alice(gw))
    assert gw.received == [{"user": "ada", "max_tokens": 5}]
    assert result.json() == {"user": "ada", "max_tokens": 5}
    assert set(result.filtered) == {"password", "api_key", "token"}


def test_the_gateway_removes_nested_secrets_in_objects_and_arrays(
        gw: Hosted, make_client: Make) -> None:
    """Steps: store a nested db.password, items[1].refresh_token and a tool-declared
    sensitive parameter (warehouse's dsn) -> the tool gets the rest, unchanged."""
    parameters = {"db": {"host": "h", "password": SECRETS[3]},
                  "items": [{"id": 1}, {"id": 2, "refresh_token": SECRETS[4]}],
                  "dsn": "postgres://u:p@h/db", "sql": "SELECT 1"}
    make_client(gw.url).invoke_tool("warehouse", "query", parameters, user_token=alice(gw))
    assert gw.received == [{"db": {"host": "h"}, "items": [{"id": 1}, {"id": 2}],
                            "sql": "SELECT 1"}]


def test_a_call_whose_every_parameter_is_filtered_sends_an_empty_object_to_the_tool(
        gw: Hosted, make_client: Make) -> None:
    """Steps: store {"password", "secret"} -> the tool runs with {} (not with the original,
    not skipped)."""
    result = make_client(gw.url).invoke_tool(
        "records", "store", {"password": SECRETS[0], "secret": SECRETS[1]}, user_token=alice(gw))
    assert gw.received == [{}]
    assert result.json() == {}


def test_the_client_pre_check_filters_so_the_secret_never_leaves_the_process(
        gw: Hosted, make_client: Make, gateway_opa_server: Any) -> None:
    """Steps: with OPAAuthorizer, store {"user", "password", "nested": {"api_key"}} -> the
    POST body the gateway received already lacks both secrets; the tool got the same."""
    client = make_client(gw.url, authorizer=OPAAuthorizer(gateway_opa_server.url))
    result = client.invoke_tool("records", "store", {
        "user": "ada", "password": SECRETS[0], "nested": {"api_key": SECRETS[1], "x": 1}},
        user_token=alice(gw))
    (body,) = invokes(gw)
    assert body["parameters"] == {"user": "ada", "nested": {"x": 1}}
    assert gw.received == [{"user": "ada", "nested": {"x": 1}}]
    assert not any(secret.encode() in r.body for r in gw.requests for secret in SECRETS)
    assert set(result.filtered) >= {"password", "nested.api_key"}
