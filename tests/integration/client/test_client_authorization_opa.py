"""The client's pre-check on the real OPA engine with the shipped policy
(docs/gateway/AUTHORIZATION.md, "The shipped policy").

``gateway_opa_server`` serves ``sark_sync/policies/gateway.rego`` from OPA v1.20
(tests/realcomp/opa_server.py); :class:`~sark_sync.governance.OPAAuthorizer` asks it over
HTTP on 127.0.0.1 and the calls it allows go to a LocalGateway, whose request log shows what
was (not) sent. The engine's own log counts the decisions asked, to check the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from realcomp.fixtures import OpaServer
from support import API_KEY, child_env, demo_server_command

import sark_sync
from sark_sync.governance import OPAAuthorizer
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.realcomp

DECISION_REQUEST = '"POST /v1/data/sark/gateway/decision '


def _wiki_warehouse_vault(gateway: LocalGateway) -> None:
    def echo(parameters: dict[str, Any]) -> Any:
        return {"received": parameters}

    gateway.add_server("wiki", sensitivity_level="low")
    gateway.add_server("warehouse", sensitivity_level="medium", authorized_teams=("data",))
    gateway.add_server("vault", sensitivity_level="critical")
    gateway.add_tool("wiki", "echo", echo)
    gateway.add_tool("warehouse", "query", echo, sensitive_params=("dsn",))
    gateway.add_tool("vault", "read", echo)


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """``wiki`` (low), ``warehouse`` (medium, team data; ``dsn`` sensitive), ``vault``
    (critical); every tool answers ``{"received": parameters}``."""
    return make_gateway(_wiki_warehouse_vault)


@pytest.fixture
def client(make_client: Callable[..., sark_sync.GatewayClient],
           gateway_opa_server: OpaServer) -> sark_sync.GatewayClient:
    """A client of ``gateway`` whose pre-check asks the real OPA engine."""
    return make_client(authorizer=OPAAuthorizer(gateway_opa_server.url))


def invokes(gateway: LocalGateway) -> list[Any]:
    return [r.json() for r in gateway.requests if r.path == "/api/v1/invoke"]


def decisions_asked(server: OpaServer) -> int:
    return server.log().count(DECISION_REQUEST)


def received(result: sark_sync.ToolResult) -> Any:
    return result.json()["received"]


def test_an_intern_is_denied_a_critical_server_and_nothing_is_sent(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    token = gateway.issue_token("ian", roles=("intern",), teams=("data",))
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("vault", "read", {"key": "k"}, user_token=token)
    assert info.value.reason == (
        "denied: insufficient clearance: critical sensitivity (server vault critical, tool "
        "read low) needs a role clearing it; principal ian clears low")
    assert invokes(gateway) == [] and gateway.tool_runs("vault", "read") == 0


def test_team_restrictions_and_destructive_sql_are_denied(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    outsider = sark_sync.Principal("olga", ("developer",), ("finance",))
    with pytest.raises(sark_sync.AuthorizationDenied, match="team restriction"):
        client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"}, principal=outsider)
    member = sark_sync.Principal("dan", ("developer",), ("data",))
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"sql": "SELECT 1; DROP TABLE users"},
                           principal=member)
    assert info.value.reason == "denied: destructive SQL (DROP) in parameter sql"
    assert invokes(gateway) == []


def test_a_call_for_nobody_is_denied_by_the_policy(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    with pytest.raises(sark_sync.AuthorizationDenied, match="no authenticated principal"):
        client.invoke_tool("wiki", "echo", {})
    assert invokes(gateway) == []


def test_sensitive_keys_are_removed_at_any_depth_before_the_call_leaves(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    token = gateway.issue_token("dan", roles=("developer",), teams=("data",))
    parameters = {"sql": "SELECT 1", "dsn": "postgres://u:p@db", "password": "hunter2",
                  "options": {"api_key": "k", "timeout": 5, "auth": {"refresh_token": "r"}},
                  "hosts": [{"name": "a", "db_password": "x"}]}
    result = client.invoke_tool("warehouse", "query", parameters, user_token=token)
    expected = {"sql": "SELECT 1", "options": {"timeout": 5, "auth": {}},
                "hosts": [{"name": "a"}]}
    assert received(result) == expected
    assert invokes(gateway) == [{"server": "warehouse", "tool": "query", "parameters": expected}]
    assert result.filtered == ("dsn", "password", "options.api_key",
                               "options.auth.refresh_token", "hosts[0].db_password")


def test_when_every_key_is_sensitive_the_tool_gets_an_empty_object(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    result = client.invoke_tool("wiki", "echo", {"password": "p", "token": "t"},
                                principal=sark_sync.Principal("v", ("viewer",)))
    assert received(result) == {} and invokes(gateway)[0]["parameters"] == {}


def test_allows_are_cached_for_the_policys_ttl_per_principal_and_parameters(
        gateway: LocalGateway, client: sark_sync.GatewayClient,
        gateway_opa_server: OpaServer) -> None:
    before = decisions_asked(gateway_opa_server)
    alice = sark_sync.Principal("alice", ("viewer",))
    for _ in range(3):  # wiki is "low": the policy allows caching for 300 s
        client.invoke_tool("wiki", "echo", {"q": 1}, principal=alice)
    assert decisions_asked(gateway_opa_server) - before == 1
    client.invoke_tool("wiki", "echo", {"q": 2}, principal=alice)
    client.invoke_tool("wiki", "echo", {"q": 1}, principal=sark_sync.Principal("bob"))
    assert decisions_asked(gateway_opa_server) - before == 3
    assert len(invokes(gateway)) == 5


def test_critical_allows_and_every_deny_are_asked_again(
        gateway: LocalGateway, client: sark_sync.GatewayClient,
        gateway_opa_server: OpaServer) -> None:
    before = decisions_asked(gateway_opa_server)
    admin, intern = sark_sync.Principal("root", ("admin",)), sark_sync.Principal("ian")
    for _ in range(2):
        client.invoke_tool("vault", "read", {}, principal=admin)
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("vault", "read", {}, principal=intern)
    assert decisions_asked(gateway_opa_server) - before == 4
    assert len(invokes(gateway)) == 2


def test_an_undefined_rule_denies_and_a_non_decision_fails_closed(
        gateway: LocalGateway, gateway_opa_server: OpaServer) -> None:
    principal = sark_sync.Principal("root", ("admin",))
    for path, error in (("sark/gateway/no_such_rule", sark_sync.AuthorizationDenied),
                        ("sark/gateway/sensitive_key_suffixes",
                         sark_sync.AuthorizationUnavailable)):
        with sark_sync.GatewayClient(gateway.url, api_key=API_KEY,
                                     authorizer=OPAAuthorizer(gateway_opa_server.url, path)
                                     ) as client, pytest.raises(error):
            client.invoke_tool("wiki", "echo", {}, principal=principal)
    assert invokes(gateway) == []


CONFLICT = """package broken
import rego.v1
decision := {"allow": true} if input.principal.id
decision := {"allow": false} if input.principal.id
"""


def test_an_evaluation_error_fails_closed_and_a_stopped_engine_too_unless_fail_open(
        gateway: LocalGateway, opa_server: Callable[..., OpaServer], tmp_path: Path) -> None:
    policy = tmp_path / "broken.rego"
    policy.write_text(CONFLICT)
    engine = opa_server(policy)
    principal = sark_sync.Principal("root", ("admin",))
    closed = OPAAuthorizer(engine.url, "broken/decision")
    with sark_sync.GatewayClient(gateway.url, api_key=API_KEY, authorizer=closed) as client:
        with pytest.raises(sark_sync.AuthorizationUnavailable, match="answered 500"):
            client.invoke_tool("wiki", "echo", {}, principal=principal)
        engine.stop()
        with pytest.raises(sark_sync.AuthorizationUnavailable, match="could not reach"):
            client.invoke_tool("wiki", "echo", {}, principal=principal)
    assert invokes(gateway) == []
    opened = OPAAuthorizer(engine.url, "broken/decision", fail_open=True)
    with sark_sync.GatewayClient(gateway.url, api_key=API_KEY, authorizer=opened) as client:
        assert received(client.invoke_tool("wiki", "echo", {"a": 1}, principal=principal)) \
            == {"a": 1}
    assert len(invokes(gateway)) == 1


def test_a_local_server_is_governed_as_medium_with_no_teams(
        gateway_opa_server: OpaServer) -> None:
    with sark_sync.GatewayClient(
            "http://127.0.0.1:9", authorizer=OPAAuthorizer(gateway_opa_server.url),
            local_servers={"demo": {"command": demo_server_command(), "env": child_env()}}
    ) as client:
        result = client.invoke_tool("demo", "echo", {"text": "hi", "token": "t"},
                                    principal=sark_sync.Principal("d", ("developer",)))
        assert (result.text, result.filtered) == ("hi", ("token",))
        with pytest.raises(sark_sync.AuthorizationDenied, match="clears low"):
            client.invoke_tool("demo", "echo", {"text": "hi"},
                               principal=sark_sync.Principal("v", ("viewer",)))
