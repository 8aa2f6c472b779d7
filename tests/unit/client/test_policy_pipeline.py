"""The governance step of GatewayClient's pipeline, with a fake gateway behind a MockTransport:
what is asked of the authorizer, what is sent (or not) after its decision, the metadata it costs,
and the audit hook."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mock_gateway import INVOKE, SERVERS, TOOLS, FakeGateway

from sark_sync import (
    AuthorizationDenied,
    AuthorizationInput,
    AuthorizationUnavailable,
    CircuitOpenError,
    ConnectionFailed,
    Decision,
    Principal,
    ToolCall,
    ValidationError,
)
from sark_sync.client._governance_stage import CallOutcome
from sark_sync.governance import CallableAuthorizer
from sark_sync.testing.policy import _jwt

SERVER_INFO = {"server_name": "db", "sensitivity_level": "high", "authorized_teams": ["data"]}
TOOL_INFO = {"tool_name": "query", "server_name": "db", "sensitivity_level": "critical",
             "sensitive_params": ["password"], "annotations": {"readOnlyHint": True}}
OK = {"request_id": "r-1", "server": "db", "tool": "query",
      "result": {"content": [{"type": "text", "text": "done"}], "isError": False}}
#: The two requests that fetch the metadata of server db for the authorizer.
METADATA = ["GET /api/v1/servers/db", "GET /api/v1/tools?offset=0&limit=1000&server=db"]


class Policy:
    """A callable authorizer that records what it was asked and answers ``decision``."""

    def __init__(self, decision: Any = None) -> None:
        self.decision = Decision(True) if decision is None else decision
        self.asked: list[AuthorizationInput] = []

    def __call__(self, request: AuthorizationInput) -> Any:
        self.asked.append(request)
        return self.decision


@pytest.fixture
def gateway() -> FakeGateway:
    """A gateway that knows server db and its tool query."""
    made = FakeGateway()
    made.add("GET", f"{SERVERS}/db", json=SERVER_INFO)
    made.add("GET", TOOLS, json={"tools": [TOOL_INFO], "total": 1, "offset": 0, "limit": 1000})
    return made


def test_the_authorizer_gets_the_principal_metadata_and_parameters(
        gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)
    policy = Policy()
    token = _jwt.encode({"sub": "alice", "roles": ["dev"], "teams": ["data"]}, "s")
    with gateway.client(authorizer=policy) as client:
        client.invoke_tool("db", "query", {"sql": "SELECT 1"}, user_token=token)
    [request] = policy.asked
    document = request.to_dict()
    assert document["principal"] == {"id": "alice", "roles": ["dev"], "teams": ["data"]}
    assert document["server"] == {"name": "db", "sensitivity_level": "high",
                                  "authorized_teams": ["data"]}
    assert document["tool"]["sensitive_params"] == ["password"]
    assert document["tool"]["annotations"]["readOnlyHint"] is True
    assert document["parameters"] == {"sql": "SELECT 1"}
    assert token not in json.dumps(document)
    assert gateway.sent() == [*METADATA, "POST /api/v1/invoke"]
    sent = gateway.requests[-1]
    assert sent.headers["X-Request-ID"] == document["context"]["request_id"]
    assert sent.headers["Authorization"] == f"Bearer {token}"


def test_a_deny_raises_with_the_reason_and_sends_no_invoke(gateway: FakeGateway) -> None:
    policy = Policy(Decision(False, "interns may not query", audit_id="d-7"))
    with gateway.client(authorizer=policy) as client:
        with pytest.raises(AuthorizationDenied) as info:
            client.invoke_tool("db", "query", {"sql": "x"}, principal=Principal("intern"))
        assert client.breaker_for("db").failure_count == 0
    assert gateway.bodies() == []
    error = info.value
    assert (error.reason, error.audit_id, error.code, error.status_code) == (
        "interns may not query", "d-7", "policy_denied", None)
    assert (error.server, error.tool, error.attempts) == ("db", "query", None)
    assert "interns may not query" in str(error)


def test_metadata_is_fetched_once_per_server_within_its_ttl(gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)
    with gateway.client(authorizer=Policy()) as client:
        for _ in range(3):
            client.invoke_tool("db", "query", {})
    assert gateway.sent() == [*METADATA] + ["POST /api/v1/invoke"] * 3


def test_without_an_authorizer_nothing_but_the_invoke_is_sent(
        gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)
    with gateway.client(authorizer=None) as client:
        client.invoke_tool("db", "query", {}, user_token="opaque-not-a-jwt")
    assert gateway.sent() == ["POST /api/v1/invoke"]


def test_an_unknown_tool_is_judged_with_default_metadata(gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)
    policy = Policy()
    with gateway.client(authorizer=policy) as client:
        client.invoke_tool("db", "other", {})
    assert policy.asked[0].to_dict()["tool"] == {
        "name": "other", "sensitivity_level": "medium", "sensitive_params": [],
        "annotations": {"readOnlyHint": False, "destructiveHint": True,
                        "idempotentHint": False, "openWorldHint": True}}


@pytest.mark.parametrize(
    ("filtered", "sent", "removed"),
    [
        ({"sql": "SELECT 1"}, {"sql": "SELECT 1"}, ("password",)),
        ({}, {}, ("sql", "password")),
        (None, {"sql": "SELECT 1", "password": "hunter2"}, ()),
    ],
    ids=["some", "all", "none"],
)
def test_filtered_parameters_replace_the_parameters_even_when_empty(
        gateway: FakeGateway, filtered: Any, sent: Any, removed: tuple[str, ...]) -> None:
    gateway.add("POST", INVOKE, json={**OK, "filtered": ["gateway-side"]})
    policy = Policy(Decision(True, filtered_parameters=filtered))
    with gateway.client(authorizer=policy) as client:
        result = client.invoke_tool("db", "query", {"sql": "SELECT 1", "password": "hunter2"})
    assert gateway.bodies() == [{"server": "db", "tool": "query", "parameters": sent}]
    assert result.filtered == (*removed, "gateway-side")


def test_a_malformed_user_token_is_a_validation_error_before_any_request(
        gateway: FakeGateway) -> None:
    with gateway.client(authorizer=Policy()) as client:
        with pytest.raises(ValidationError, match="user_token") as info:
            client.invoke_tool("db", "query", {}, user_token="opaque.secret-token.x!")
        with pytest.raises(ValidationError):
            client.submit("db", "query", {}, user_token="opaque")
    assert "secret-token" not in str(info.value)
    assert len(gateway.requests) == 0


def test_invoke_many_validates_every_principal_before_running_any(
        gateway: FakeGateway) -> None:
    with gateway.client(authorizer=Policy()) as client:
        with pytest.raises(ValidationError):
            client.invoke_many([ToolCall("db", "query", principal=Principal("a")),
                                 ToolCall("db", "query", user_token="bad")])
    assert len(gateway.requests) == 0


def test_each_call_of_invoke_many_is_authorized_with_its_own_principal(
        gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)

    def policy(request: AuthorizationInput) -> Decision:
        assert request.principal is not None
        return Decision(request.principal.id == "alice", f"for {request.principal.id}")

    with gateway.client(authorizer=policy) as client:
        outcomes = client.invoke_many(
            [ToolCall("db", "query", principal=Principal("alice")),
             ToolCall("db", "query", principal=Principal("bob"))], return_exceptions=True)
    assert outcomes[0].text == "done"
    assert isinstance(outcomes[1], AuthorizationDenied) and outcomes[1].reason == "for bob"
    assert len(gateway.bodies()) == 1


def test_an_authorizer_failure_fails_closed_and_is_not_counted(
        gateway: FakeGateway) -> None:
    def broken(request: AuthorizationInput) -> Decision:
        raise RuntimeError("engine exploded")

    with gateway.client(authorizer=broken) as client:
        for _ in range(6):  # more than the breaker's threshold
            with pytest.raises(AuthorizationUnavailable) as info:
                client.invoke_tool("db", "query", {})
        assert client.breaker_for("db").failure_count == 0
    assert (info.value.server, info.value.tool) == ("db", "query")
    assert gateway.bodies() == []


def test_an_authorizer_object_that_breaks_its_contract_fails_closed(
        gateway: FakeGateway) -> None:
    class Weird:
        def authorize(self, request: AuthorizationInput, *, timeout: float | None = None
                      ) -> Any:
            return "yes"

    with gateway.client(authorizer=Weird()) as client, pytest.raises(AuthorizationUnavailable):
        client.invoke_tool("db", "query", {})
    assert gateway.bodies() == []


def test_a_discovery_failure_fails_the_call_without_an_invoke() -> None:
    gateway = FakeGateway()
    gateway.add("GET", f"{SERVERS}/db", raises=ConnectionFailed("refused"))
    with gateway.client(authorizer=Policy()) as client:
        with pytest.raises(ConnectionFailed) as info:
            client.invoke_tool("db", "query", {})
    assert gateway.sent() == ["GET /api/v1/servers/db"]
    error = info.value
    assert type(error) is ConnectionFailed and error.message == "refused"
    assert (error.method, error.url, error.server, error.attempts, error.request_id) == (
        "GET", "mock://gateway/api/v1/servers/db", "db", 1, gateway.request_ids()[0])


def test_the_authorizer_decides_before_the_breaker_is_asked(
        gateway: FakeGateway) -> None:
    gateway.add("POST", INVOKE, json=OK)
    policy = Policy()
    with gateway.client(authorizer=policy) as client:
        client.invoke_tool("db", "query", {})  # the server's metadata is now cached
        breaker = client.breaker_for("db")
        for _ in range(5):
            with pytest.raises(ConnectionFailed):
                breaker.call(_refuse)
        policy.decision = Decision(False, "no")
        with pytest.raises(AuthorizationDenied):
            client.invoke_tool("db", "query", {})
        policy.decision = Decision(True)
        with pytest.raises(CircuitOpenError):
            client.invoke_tool("db", "query", {})
    assert len(policy.asked) == 3 and len(gateway.bodies()) == 1


def _refuse() -> None:
    raise ConnectionFailed("refused")


def test_the_audit_hook_sees_every_outcome_and_its_failure_never_fails_a_call(
        gateway: FakeGateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.add("POST", INVOKE, json=OK)
    seen: list[Any] = []
    policy = Policy()
    with gateway.client(authorizer=policy) as client:
        client._governance.audit_hook = seen.append
        client.invoke_tool("db", "query", {"password": "p"}, principal=Principal("alice"))
        policy.decision = Decision(False, "no")
        with pytest.raises(AuthorizationDenied):
            client.invoke_tool("db", "query", {})

        def broken(outcome: object) -> None:
            raise OSError("disk full")

        client._governance.audit_hook = broken
        policy.decision = Decision(True)
        assert client.invoke_tool("db", "query", {}).text == "done"
    assert [type(o) for o in seen] == [CallOutcome, CallOutcome]
    assert [(o.outcome, o.transport) for o in seen] == [("success", "http"), ("denied", "http")]
    assert seen[0].principal == Principal("alice") and seen[0].parameters == {"password": "p"}
    assert seen[0].decision == Decision(True) and seen[1].decision is None
    assert seen[0].request_id == "r-1" and seen[1].request_id is not None
    assert repr(seen[0]) == "<CallOutcome db/query success>"
    assert [r.getMessage() for r in caplog.records if r.name == "sark_sync.governance"] == [
        "the audit hook failed for db/query with OSError"]


def test_a_callable_authorizer_is_wrapped(gateway: FakeGateway) -> None:
    with gateway.client(authorizer=Policy()) as client:
        assert isinstance(client.authorizer, CallableAuthorizer)
