"""The LocalGateway enforces a policy, over real sockets (docs/gateway/AUTHORIZATION.md).

``LocalGateway(policy=...)`` with the built-in rules, with the real OPA engine (the shipped
gateway.rego behind tests/realcomp/opa_server.py), and with a decision function. The clients
here have no pre-check of their own (no ``authorizer=``), so every decision is the gateway's:
a deny is one 403 request that becomes ``AuthorizationDenied``, never retried or counted by
a breaker, the tool does not run, and ``authorization_denied`` is published; an allow runs the
tool with exactly the filtered parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from realcomp.fixtures import OpaServer
from support import API_KEY, FAST_RETRY, JWT_SECRET, demo_server_command

import sark_sync
from sark_sync.governance import Decision
from sark_sync.testing import BuiltinPolicy, LocalGateway
from sark_sync.testing.policy import _jwt

SECRETS = ("hunter2", "tok-1", "key-1", "dsn-1")


def build(policy: object, **options: Any) -> LocalGateway:
    """A gateway with a low open server, a medium server for team data, a critical tool."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, policy=policy, **options)
    gateway.add_server("public", sensitivity_level="low")
    gateway.add_server("warehouse", sensitivity_level="medium", authorized_teams=("data",))
    gateway.received = []  # type: ignore[attr-defined]

    def record(parameters: dict[str, Any]) -> Any:
        gateway.received.append(parameters)  # type: ignore[attr-defined]
        return parameters

    gateway.add_tool("public", "echo", record)
    gateway.add_tool("warehouse", "query", record, sensitive_params=("dsn",))
    gateway.add_tool("warehouse", "drop_all", record, sensitivity_level="critical")
    return gateway


@pytest.fixture(params=["builtin", "opa"])
def gateway(request: pytest.FixtureRequest, gateway_opa_server: OpaServer
            ) -> Iterator[LocalGateway]:
    """The same gateway enforcing the built-in rules, then the real OPA engine."""
    policy = "builtin" if request.param == "builtin" else gateway_opa_server.url
    with build(policy) as gateway:
        yield gateway


@pytest.fixture
def client(gateway: LocalGateway) -> Iterator[sark_sync.GatewayClient]:
    with sark_sync.GatewayClient(gateway.url, api_key=API_KEY, retry=FAST_RETRY) as c:
        yield c


def token(gateway: LocalGateway, subject: str = "alice", roles: tuple[str, ...] = ("developer",),
          teams: tuple[str, ...] = ("data",)) -> str:
    return gateway.issue_token(subject, roles, teams)


def invokes(gateway: LocalGateway) -> list[Any]:
    return [json.loads(r.body) for r in gateway.requests if r.path == "/api/v1/invoke"]


def denied_events(client: sark_sync.GatewayClient, count: int) -> list[Any]:
    """The first ``count`` authorization_denied events, replayed from the gateway's buffer."""
    found = []
    with client.stream_events(types=["authorization_denied"], last_event_id="0",
                              idle_timeout=2.0, max_reconnects=0) as stream:
        for event in stream:
            found.append(event.data)
            if len(found) == count:
                break
    return found


# -- denials ----------------------------------------------------------------------------------


def test_a_gateway_deny_is_one_request_no_retry_no_breaker_count_and_no_tool_run(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    """Steps: a viewer calls a medium tool six times (more than the breaker threshold) with
    the client's pre-check off; each is one 403 -> AuthorizationDenied with the policy's
    reason; the breaker is still closed at 0, the tool never ran, and an allowed call then
    goes through."""
    viewer = token(gateway, "bob", ("viewer",))
    for _ in range(6):
        with pytest.raises(sark_sync.AuthorizationDenied) as info:
            client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"}, user_token=viewer)
        denied = info.value
        assert isinstance(denied, PermissionError)
        assert (denied.status_code, denied.code, denied.attempts) == (403, "policy_denied", 1)
        assert denied.reason.startswith("denied: insufficient clearance: medium sensitivity")
        assert "principal bob clears low" in denied.reason and denied.audit_id
    assert len(invokes(gateway)) == 6
    breaker = client.breaker_for("warehouse")
    assert (breaker.state, breaker.failure_count) == ("closed", 0)
    assert gateway.tool_runs("warehouse", "query") == 0
    result = client.invoke_tool("warehouse", "query", {"sql": "SELECT 1"},
                                user_token=token(gateway))
    assert result.json() == {"sql": "SELECT 1"}


def test_a_denial_is_published_as_authorization_denied(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    """Steps: two denied calls (clearance, team); the event stream replays two
    authorization_denied events with the request id, server, tool, principal and reason."""
    with pytest.raises(sark_sync.AuthorizationDenied) as first:
        client.invoke_tool("warehouse", "drop_all", {}, user_token=token(gateway))
    with pytest.raises(sark_sync.AuthorizationDenied) as second:
        client.invoke_tool("warehouse", "query", {},
                           user_token=token(gateway, "carol", teams=("ml",)))
    events = denied_events(client, 2)
    assert [(e["server"], e["tool"], e["principal"]) for e in events] == [
        ("warehouse", "drop_all", "alice"), ("warehouse", "query", "carol")]
    assert [e["reason"] for e in events] == [first.value.reason, second.value.reason]
    assert [e["request_id"] for e in events] == [first.value.request_id,
                                                 second.value.request_id]
    assert "team restriction: server warehouse is limited to teams" in second.value.reason


def test_without_a_user_token_the_policy_denies_nobody_in_particular(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    with pytest.raises(sark_sync.AuthorizationDenied, match="no authenticated principal"):
        client.invoke_tool("public", "echo", {"a": 1})
    assert gateway.tool_runs("public", "echo") == 0


def test_destructive_sql_after_a_harmless_statement_is_denied_even_for_an_admin(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    admin = token(gateway, "root", ("admin",), ())
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("warehouse", "query", {"q": {"sql": "SELECT 1; DROP TABLE users"}},
                           user_token=admin)
    assert "destructive SQL (DROP) in parameter q.sql" in info.value.reason
    assert client.invoke_tool("warehouse", "drop_all", {}, user_token=admin).json() == {}


def test_a_principal_with_several_roles_gets_the_highest_clearance(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    many = token(gateway, "dana", ("viewer", "developer", "intern"), ("data",))
    result = client.invoke_tool("warehouse", "query", {"n": 1}, user_token=many)
    assert result.json() == {"n": 1}


# -- filtering ---------------------------------------------------------------------------------


def test_the_tool_receives_exactly_the_filtered_parameters(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    """Steps: send password, api_key and token at the top level, nested in an object and in
    a list, plus the tool's own sensitive 'dsn'; the tool gets the rest, unchanged, and the
    result lists the removed keys."""
    parameters = {
        "sql": "SELECT 1", "password": "hunter2", "api_key": "key-1", "dsn": "dsn-1",
        "options": {"token": "tok-1", "limit": 5},
        "batches": [{"token": "tok-1", "id": 1}, {"id": 2}],
    }
    result = client.invoke_tool("warehouse", "query", parameters, user_token=token(gateway))
    expected = {"sql": "SELECT 1", "options": {"limit": 5}, "batches": [{"id": 1}, {"id": 2}]}
    assert gateway.received == [expected]  # type: ignore[attr-defined]
    assert result.json() == expected
    assert sorted(result.filtered) == sorted(
        ["password", "api_key", "dsn", "options.token", "batches[0].token"])
    assert not any(s in json.dumps(result.json()) for s in SECRETS)


def test_an_all_filtered_call_runs_the_tool_with_an_empty_object(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    result = client.invoke_tool("public", "echo", {"password": "hunter2", "token": "tok-1"},
                                user_token=token(gateway))
    assert gateway.received == [{}]  # type: ignore[attr-defined]
    assert sorted(result.filtered) == ["password", "token"]


def test_an_idempotent_retry_of_a_filtered_call_runs_the_tool_once(
        gateway: LocalGateway, http: requests.Session) -> None:
    headers = {"X-API-Key": API_KEY, "Authorization": f"Bearer {token(gateway)}",
               "Idempotency-Key": "k-1"}
    body = {"server": "public", "tool": "echo", "parameters": {"a": 1, "password": "hunter2"}}
    first = http.post(gateway.url + "/api/v1/invoke", json=body, headers=headers)
    again = http.post(gateway.url + "/api/v1/invoke", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["filtered"] == again.json()["filtered"] == ["password"]
    assert gateway.tool_runs("public", "echo") == 1


# -- the wire ----------------------------------------------------------------------------------


def test_the_403_envelope_has_the_reason_and_an_audit_id(
        gateway: LocalGateway, http: requests.Session) -> None:
    headers = {"X-API-Key": API_KEY, "X-Request-ID": "req-9",
               "Authorization": f"Bearer {token(gateway, 'bob', ('viewer',))}"}
    answer = http.post(gateway.url + "/api/v1/invoke", headers=headers,
                       json={"server": "warehouse", "tool": "query", "parameters": {}})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "policy_denied" and error["request_id"] == "req-9"
    assert error["reason"] == error["message"] and error["reason"].startswith("denied: ")
    assert error["audit_id"]


@pytest.mark.parametrize("claims", [{"roles": "admin"}, {"teams": [1]}, {"roles": {"a": 1}}])
def test_a_token_whose_roles_or_teams_are_not_string_lists_is_401(
        gateway: LocalGateway, http: requests.Session, claims: dict[str, Any]) -> None:
    bad = _jwt.encode({"sub": "eve", **claims}, JWT_SECRET)
    answer = http.post(gateway.url + "/api/v1/invoke",
                       headers={"X-API-Key": API_KEY, "Authorization": f"Bearer {bad}"},
                       json={"server": "public", "tool": "echo", "parameters": {}})
    assert answer.status_code == 401 and "must be a list of strings" in answer.text
    assert gateway.tool_runs("public", "echo") == 0


def test_unknown_tools_are_404_before_any_decision(
        gateway: LocalGateway, client: sark_sync.GatewayClient) -> None:
    with pytest.raises(sark_sync.NotFoundError):
        client.invoke_tool("warehouse", "nope", {}, user_token=token(gateway, "bob", ("viewer",)))


# -- other policies ------------------------------------------------------------------------------


def test_an_opa_that_is_down_fails_closed_with_503(
        opa_server: Callable[..., OpaServer], http: requests.Session) -> None:
    """Steps: a gateway on a real OPA engine answers; the engine stops; the next call is a
    503 'authorization unavailable' and the tool does not run."""
    from realcomp.fixtures import shipped_policy
    engine = opa_server(shipped_policy())
    with build(engine.url) as gateway:
        headers = {"X-API-Key": API_KEY, "Authorization": f"Bearer {token(gateway, roles=())}"}
        body = {"server": "public", "tool": "echo", "parameters": {"a": 1}}
        assert http.post(gateway.url + "/api/v1/invoke", json=body, headers=headers).ok
        engine.stop()
        body["parameters"] = {"a": 2}  # not the cached decision
        answer = http.post(gateway.url + "/api/v1/invoke", json=body, headers=headers)
        assert answer.status_code == 503
        assert answer.json()["error"]["message"].startswith("authorization unavailable")
        assert gateway.tool_runs("public", "echo") == 1


def test_a_decision_function_is_a_policy_and_its_failure_is_503(
        http: requests.Session) -> None:
    def decide(request: Any) -> Any:
        if request.parameters.get("boom"):
            raise RuntimeError("the policy crashed")
        return {"allow": request.principal is not None and request.principal.id == "alice",
                "reason": "alice only", "filtered_parameters": {"seen": True}}

    with build(decide) as gateway:
        url = gateway.url + "/api/v1/invoke"

        def call(who: str, parameters: dict[str, Any]) -> requests.Response:
            headers = {"X-API-Key": API_KEY, "Authorization": f"Bearer {token(gateway, who)}"}
            return http.post(url, headers=headers, json={
                "server": "public", "tool": "echo", "parameters": parameters})

        assert call("alice", {"x": 1}).json()["result"]["structuredContent"] == {"seen": True}
        assert call("bob", {}).json()["error"]["reason"] == "alice only"
        assert call("alice", {"boom": True}).status_code == 503


def test_an_authorizer_that_is_falsy_still_enforces(http: requests.Session) -> None:
    """An authorizer object whose ``len()`` is 0 (say, one with an empty decision cache) is a
    policy all the same: its deny is a 403 and the tool does not run."""

    class Empty:
        def __len__(self) -> int:
            return 0

        def authorize(self, request: Any, *, timeout: float | None = None) -> Any:
            return Decision(allow=False, reason="nobody")

    with build(Empty()) as gateway:
        answer = http.post(gateway.url + "/api/v1/invoke", headers={
            "X-API-Key": API_KEY, "Authorization": f"Bearer {token(gateway)}"}, json={
            "server": "public", "tool": "echo", "parameters": {}})
        assert answer.status_code == 403 and answer.json()["error"]["reason"] == "nobody"
        assert gateway.tool_runs("public", "echo") == 0


def test_the_builtin_policy_is_a_client_pre_check_too() -> None:
    """BuiltinPolicy as GatewayClient(authorizer=...): the deny is raised before sending."""
    with build(None) as gateway, sark_sync.GatewayClient(
            gateway.url, api_key=API_KEY, retry=FAST_RETRY, authorizer=BuiltinPolicy()) as client:
        with pytest.raises(sark_sync.AuthorizationDenied, match="insufficient clearance"):
            client.invoke_tool("warehouse", "query", {},
                               user_token=token(gateway, "bob", ("viewer",)))
        assert invokes(gateway) == []


def test_hosted_stdio_servers_are_governed_and_filtered() -> None:
    """Steps: the demo MCP server hosted on a medium server; a viewer is denied, a developer's
    call reaches the server without its password."""
    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret=JWT_SECRET, policy="builtin")
    gateway.add_stdio_server("mcp", demo_server_command(), sensitivity_level="medium")
    with gateway, sark_sync.GatewayClient(gateway.url, api_key=API_KEY, retry=FAST_RETRY) as client:
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("mcp", "echo", {"text": "hi"},
                               user_token=token(gateway, "bob", ("viewer",)))
        result = client.invoke_tool("mcp", "echo", {"text": "hi", "password": "hunter2"},
                                    user_token=token(gateway))
        assert result.text == "hi" and result.filtered == ("password",)


@pytest.mark.parametrize("policy, error", [
    ("strict", ValueError), ("ftp://opa", ValueError), (42, TypeError)])
def test_a_policy_that_is_not_one_is_refused_at_construction(policy: object,
                                                               error: type) -> None:
    with pytest.raises(error, match="policy must be"):
        LocalGateway(policy=policy)
