"""Audit events of the operations other than tool calls, and the principal of tool-call events
without an authorizer, with a fake gateway behind a MockTransport
(sark_sync.governance._audit_recorder): each event's request id, status and attempts are those of
the requests the transport received."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mock_gateway import HEALTH, INVOKE, SERVERS, TOOLS, FakeGateway
from support import unsigned_jwt

from sark_sync import (
    AuthorizationDenied,
    GatewayClient,
    NotFoundError,
    Principal,
    ProtocolError,
    ServerError,
    ServiceUnavailableError,
    ToolCall,
)
from sark_sync.governance import AuditEvent
from sark_sync.governance._audit_recorder import Operation, OperationOutcome
from sark_sync.governance._principal import PrincipalIdCache

OK = {"request_id": "r-1", "server": "db", "tool": "query",
      "result": {"content": [{"type": "text", "text": "done"}], "isError": False}}
HEALTHY = {"status": "healthy", "version": "1.0"}


def server(name: str) -> dict[str, Any]:
    return {"server_name": name, "server_id": name}


def page(items: list[dict[str, Any]], total: int, key: str = "servers") -> dict[str, Any]:
    return {key: items, "total": total}


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


@pytest.fixture
def client(gateway: FakeGateway, events: list[AuditEvent]) -> Iterator[GatewayClient]:
    with gateway.client(audit=events.append) as made:
        yield made


def test_list_servers_makes_one_discovery_event_with_the_request_it_sent(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", SERVERS, json=page([server("a")], 1))
    started = time.perf_counter()
    client.list_servers()
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    (event,) = events
    assert (event.event_type, event.operation, event.transport, event.outcome) == (
        "discovery", "list_servers", "http", "success")
    assert (event.status_code, event.request_id) == (200, gateway.request_ids()[0])
    assert event.attempts == 1 and gateway.sent() == ["GET /api/v1/servers?offset=0&limit=100"]
    assert event.server is None and event.tool is None and event.parameters is None
    assert event.principal_id is None and event.error_type is None and event.decision is None
    assert event.latency_ms is not None and 0 < event.latency_ms <= elapsed_ms


def test_get_server_404_is_an_error_event_naming_the_server(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", f"{SERVERS}/nope", status=404, json={"error": "not found"})
    with pytest.raises(NotFoundError):
        client.get_server("nope")
    (event,) = events
    assert (event.operation, event.server, event.outcome, event.error_type) == (
        "get_server", "nope", "error", "NotFoundError")
    assert (event.status_code, event.request_id) == (404, gateway.request_ids()[0])


def test_a_403_on_discovery_is_a_denied_discovery_event(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", TOOLS, status=403, json={"error": "forbidden", "reason": "no"})
    with pytest.raises(AuthorizationDenied):
        client.list_tools(server="db")
    (event,) = events
    assert (event.event_type, event.operation, event.server, event.outcome) == (
        "discovery", "list_tools", "db", "denied")
    assert event.status_code == 403 and event.decision == "deny"


def test_an_iterator_walking_three_pages_makes_one_event(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    for offset in range(3):
        gateway.add("GET", SERVERS, json=page([server(f"s{offset}")], 3),
                    params={"offset": offset, "limit": 1})
    names = [s.server_name for s in client.iter_servers(page_size=1)]
    assert names == ["s0", "s1", "s2"]
    assert gateway.sent() == [f"GET /api/v1/servers?offset={n}&limit=1" for n in range(3)]
    (event,) = events
    assert (event.operation, event.outcome, event.status_code, event.attempts) == (
        "iter_servers", "success", 200, 3)
    assert event.request_id == gateway.request_ids()[-1]


def test_an_iterator_failing_on_its_second_page_makes_one_error_event(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", TOOLS, json=page([{"tool_name": "t", "server_name": "db"}], 5, "tools"),
                params={"offset": 0, "limit": 1})
    gateway.add("GET", TOOLS, status=500, json={"error": "boom"})
    walked = client.iter_tools(page_size=1)
    assert next(walked).tool_name == "t"
    assert events == []
    with pytest.raises(ServerError) as caught:
        next(walked)
    assert type(caught.value) is ServerError and caught.value.status_code == 500
    assert gateway.sent() == ["GET /api/v1/tools?offset=0&limit=1",
                              "GET /api/v1/tools?offset=1&limit=1"]
    (event,) = events
    assert (event.operation, event.outcome, event.status_code) == ("iter_tools", "error", 500)
    assert event.error_type == "ServerError" and event.attempts == 2
    assert event.request_id == gateway.request_ids()[-1]


def test_an_iterator_closed_early_reports_what_it_fetched_and_an_unstarted_one_nothing(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", SERVERS, json=page([server("a"), server("b")], 9))
    walked = client.iter_servers(page_size=2)
    next(walked)
    walked.close()  # type: ignore[attr-defined]
    never = client.iter_servers()
    del never
    assert [(e.operation, e.outcome) for e in events] == [("iter_servers", "success")]
    assert len(gateway.requests) == 1


def test_health_is_a_health_event_and_an_unhealthy_report_a_success_with_its_status(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", HEALTH, json=HEALTHY)
    gateway.add("GET", HEALTH, status=503, json={"status": "unhealthy"})
    client.health()
    client.health()
    assert gateway.sent() == ["GET /health", "GET /health"]
    assert [(e.event_type, e.operation, e.outcome, e.status_code) for e in events] == [
        ("health", "health", "success", 200), ("health", "health", "success", 503)]


def test_an_error_after_the_answer_keeps_the_answers_status(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("GET", HEALTH, status=503)  # no health report: the answer is an error
    gateway.add("GET", SERVERS, json={"servers": "not a list"})
    with pytest.raises(ServiceUnavailableError):
        client.health()
    with pytest.raises(ProtocolError):
        client.list_servers()
    assert [(e.outcome, e.error_type, e.status_code, e.request_id) for e in events] == [
        ("error", "ServiceUnavailableError", 503, gateway.request_ids()[0]),
        ("error", "ProtocolError", 200, gateway.request_ids()[1])]


def test_a_refused_argument_sends_nothing_and_records_nothing(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    with pytest.raises(ValueError):
        client.list_servers(page=0)
    with pytest.raises(ValueError):
        client.get_server("bad name/")
    assert events == [] and len(gateway.requests) == 0


def test_a_failing_hook_never_fails_a_discovery_operation(
        gateway: FakeGateway, client: GatewayClient,
        caplog: pytest.LogCaptureFixture) -> None:
    gateway.add("GET", SERVERS, json=page([server("a")], 1))

    def broken(outcome: object) -> None:
        raise OSError("disk full")

    client._governance.audit_hook = broken
    assert [s.server_name for s in client.list_servers()] == ["a"]
    assert [r.getMessage() for r in caplog.records if r.name == "sark_sync.governance"] == [
        "the audit hook failed for list_servers with OSError"]


def test_the_hook_gets_an_operation_outcome(
        gateway: FakeGateway, client: GatewayClient) -> None:
    gateway.add("GET", f"{SERVERS}/db", json=server("db"))
    seen: list[Any] = []
    client._governance.audit_hook = seen.append
    client.get_server("db")
    (outcome,) = seen
    assert isinstance(outcome, OperationOutcome)
    assert repr(outcome) == "<OperationOutcome get_server success>"


# -- the principal of tool-call events without an authorizer --------------------------------


def test_without_an_authorizer_the_principal_id_is_the_tokens_sub(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("POST", INVOKE, json=OK)
    token = unsigned_jwt({"sub": "ada", "roles": ["dev"]})
    client.invoke_tool("db", "query", {}, user_token=token)
    client.submit("db", "query", {}, user_token=token).result(timeout=10)
    client.invoke_many([ToolCall("db", "query", {}, user_token=token)])
    assert [e.principal_id for e in events] == ["ada", "ada", "ada"]
    assert client._governance.principal_ids.decoded == 1  # cached after the first


def test_an_explicit_principal_wins_over_the_token(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("POST", INVOKE, json=OK)
    client.invoke_tool("db", "query", {}, user_token=unsigned_jwt({"sub": "ada"}),
                       principal=Principal("bob"))
    assert [e.principal_id for e in events] == ["bob"]
    assert client._governance.principal_ids.decoded == 0


@pytest.mark.parametrize("token", ["not-a-jwt", "e30.e30.c2ln", unsigned_jwt({"sub": 42})])
def test_a_malformed_token_gives_no_principal_and_fails_nothing(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent],
        token: str) -> None:
    gateway.add("POST", INVOKE, json=OK)
    assert client.invoke_tool("db", "query", {}, user_token=token).text == "done"
    (event,) = events
    assert event.principal_id is None and event.outcome == "success"
    assert client.auditor is not None and client.auditor.invalid_events == 0
    assert client.auditor.sink_errors == 0


def test_the_token_is_in_no_event(
        gateway: FakeGateway, client: GatewayClient, events: list[AuditEvent]) -> None:
    gateway.add("POST", INVOKE, json=OK)
    token = unsigned_jwt({"sub": "ada"})
    client.invoke_tool("db", "query", {"password": "pw"}, user_token=token)
    assert token not in events[0].to_json() and "pw" not in json.dumps(events[0].parameters)


# -- the quiet path ------------------------------------------------------------------------


def test_nothing_is_built_nor_decoded_while_the_default_logger_is_off(
        gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sark_sync.audit")  # nobody listens

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("built on the quiet path")

    monkeypatch.setattr(AuditEvent, "create", classmethod(refuse))
    monkeypatch.setattr(Operation, "__init__", refuse)
    monkeypatch.setattr(PrincipalIdCache, "get", refuse)
    gateway.add("GET", HEALTH, json=HEALTHY)
    gateway.add("GET", SERVERS, json=page([server("a")], 1))
    gateway.add("GET", f"{SERVERS}/a", json=server("a"))
    gateway.add("GET", f"{SERVERS}/nope", status=404, json={"error": "no"})
    gateway.add("GET", TOOLS, json=page([], 0, "tools"))
    gateway.add("POST", INVOKE, json=OK)
    with gateway.client() as client:
        client.health()
        client.list_servers()
        assert [s.server_name for s in client.iter_servers()] == ["a"]
        client.get_server("a")
        with pytest.raises(NotFoundError):
            client.get_server("nope")
        client.list_tools()
        assert list(client.iter_tools()) == []
        client.invoke_tool("db", "query", {}, user_token=unsigned_jwt({"sub": "ada"}))
        assert client.auditor is not None and client.auditor.emitted == 0
        assert client._governance.operation("list_servers", "discovery", "http") is None
