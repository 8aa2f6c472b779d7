"""The client's audit trail over real sockets: one event per tool call, whatever
happened, with the parameters redacted; local servers audited with transport "stdio"; no
secret in any event or log line, of tool calls or of the other operations (whose events are
tested in test_audit_discovery.py)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pytest
from support import API_KEY, FAST_RETRY, child_env, demo_server_command

import sark_sync
from sark_sync.governance import AuditEvent, Auditor, JSONLinesSink, LoggingSink
from sark_sync.testing import Fault, LocalGateway

SECRET = "hunter2-secret"


Make = Callable[..., sark_sync.GatewayClient]


def test_success_tool_error_and_error_each_make_one_event(
    gateway: LocalGateway, make_client: Make
) -> None:
    events: list[AuditEvent] = []
    with make_client(audit=events.append) as client:
        started = time.monotonic()
        result = client.invoke_tool("demo", "echo", {"text": "hi", "password": SECRET})
        elapsed_ms = (time.monotonic() - started) * 1000
        assert client.invoke_tool("demo", "fail", {"x": 1}).is_error
        gateway.add_fault(Fault(status=500, times=None))
        with pytest.raises(sark_sync.GatewayError) as caught:
            client.invoke_tool("demo", "echo", {"x": 2})
    assert [e.outcome for e in events] == ["success", "tool_error", "error"]
    ok, tool_error, error = events
    assert (ok.event_type, ok.operation, ok.server, ok.tool, ok.transport) == (
        "tool_invocation", "invoke_tool", "demo", "echo", "http")
    assert ok.request_id == result.request_id and ok.attempts == 1
    assert ok.latency_ms is not None and 0 < ok.latency_ms <= elapsed_ms
    assert ok.parameters["text"] == "hi" and ok.parameters["password"] != SECRET
    assert tool_error.tool == "fail" and tool_error.event_type == "tool_invocation"
    assert error.error_type == type(caught.value).__name__
    assert error.status_code == 500 and error.attempts == caught.value.attempts


def test_unknown_server_is_an_error_event(make_client: Make) -> None:
    events: list[AuditEvent] = []
    with make_client(audit=[events.append]) as client:
        with pytest.raises(sark_sync.NotFoundError):
            client.invoke_tool("nope", "echo", {})
    assert [(e.outcome, e.status_code, e.server) for e in events] == [("error", 404, "nope")]


def test_a_denial_is_an_authorization_event_with_the_reason(
    gateway: LocalGateway, make_client: Make
) -> None:
    events: list[AuditEvent] = []
    token = gateway.issue_token("ada", roles=("developer",), teams=("data",))
    with make_client(audit=events.append,
                     authorizer=lambda request: {"allow": False, "reason": "no"}) as client:
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=token)
    assert len(events) == 1
    event = events[0]
    assert (event.event_type, event.outcome, event.decision, event.reason) == (
        "authorization", "denied", "deny", "no")
    assert event.principal_id == "ada" and event.transport == "http"
    assert event.status_code is None
    assert [r for r in gateway.requests if r.path == "/api/v1/invoke"] == []


def test_an_allowed_call_records_the_decision_and_the_parameters_sent(
    gateway: LocalGateway, make_client: Make
) -> None:
    events: list[AuditEvent] = []
    token = gateway.issue_token("ada", roles=("developer",))
    decision = {"allow": True, "reason": "fine", "filtered_parameters": {"text": "hi"}}
    with make_client(audit=events.append, authorizer=lambda request: decision) as client:
        client.invoke_tool("demo", "echo", {"text": "hi", "extra": "dropped"}, user_token=token)
    (event,) = events
    assert (event.decision, event.reason, event.principal_id) == ("allow", "fine", "ada")
    assert event.parameters == {"text": "hi"}


def test_no_secret_reaches_an_event_or_a_log_line(
    gateway: LocalGateway, make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[AuditEvent] = []
    token = gateway.issue_token("ada", roles=("developer",))
    with make_client(audit=[LoggingSink(), events.append],
                     authorizer=lambda request: {"allow": True}) as client:
        client.invoke_tool("demo", "echo", {"password": SECRET, "nested": {"token": SECRET}},
                           user_token=token)
        assert client.invoke_tool("demo", "fail", {"password": SECRET}, user_token=token).is_error
    with make_client(audit=[LoggingSink(), events.append],
                     authorizer=lambda request: {"allow": False, "reason": "no"}) as client:
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=token)
    with make_client(audit=[LoggingSink(), events.append]) as client:
        client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=token)
        client.health()
        client.list_servers()
        assert list(client.iter_tools(page_size=1))
        with pytest.raises(sark_sync.NotFoundError):
            client.get_server("nope")
        client.stream_events(user_token=token).close()
    with make_client(api_key=SECRET, audit=[LoggingSink(), events.append]) as client:
        with pytest.raises(sark_sync.AuthenticationError):
            client.list_servers()
        with pytest.raises(sark_sync.AuthenticationError):
            client.stream_events(user_token=token)
    assert [e.operation for e in events] == (
        ["invoke_tool"] * 4 + ["health", "list_servers", "iter_tools", "get_server",
                               "stream_events", "list_servers", "stream_events"])
    audit_lines = [r for r in caplog.records if r.name == "sark_sync.audit"]
    assert len(audit_lines) == len(events) == 11
    for text in [e.to_json() for e in events] + [r.getMessage() for r in caplog.records]:
        assert SECRET not in text and token not in text and API_KEY not in text


def test_the_default_is_logging_and_costs_nothing_when_nobody_listens(
    make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    audit_logger = logging.getLogger("sark_sync.audit")
    with make_client() as client:
        assert isinstance(client.auditor, Auditor)
        previous = audit_logger.level
        audit_logger.setLevel(logging.WARNING)
        try:
            client.invoke_tool("demo", "echo", {"x": 1})
            assert client.auditor.emitted == 0  # no event was built
        finally:
            audit_logger.setLevel(previous)
        caplog.set_level(logging.INFO, logger="sark_sync.audit")
        client.invoke_tool("demo", "echo", {"x": 2})
        assert client.auditor.emitted == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "sark_sync.audit"]
    assert [line["outcome"] for line in lines] == ["success"]


def test_local_servers_are_audited_over_stdio() -> None:
    events: list[AuditEvent] = []
    servers = {"demo": {"command": demo_server_command(), "env": child_env()}}
    with sark_sync.GatewayClient("http://127.0.0.1:9", local_servers=servers,
                                 retry=FAST_RETRY, audit=events.append) as client:
        client.invoke_tool("demo", "add", {"a": 2, "b": 40})
    assert [(e.transport, e.server, e.tool, e.outcome) for e in events] == [
        ("stdio", "demo", "add", "success")]


def test_a_jsonlines_file_gets_one_valid_line_per_call(make_client: Make, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JSONLinesSink(path)
    try:
        with make_client(audit=sink) as client:
            client.invoke_tool("demo", "echo", {"password": SECRET})
            client.invoke_tool("demo", "echo", {"x": 1})
        # the caller's sink stays open after the client closed: it is the caller's
        client2 = make_client(audit=[sink])
        client2.invoke_tool("demo", "read_only", {})
        client2.close()
    finally:
        sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["tool"] for line in lines] == ["echo", "echo", "read_only"]
    assert all(line["outcome"] == "success" and line["transport"] == "http" for line in lines)
    assert SECRET not in path.read_text()


def test_close_closes_a_client_built_auditor_not_a_callers(make_client: Make) -> None:
    client = make_client(audit=[lambda event: None])
    built = client.auditor
    assert isinstance(built, Auditor)
    client.close()
    assert built._closed
    mine = Auditor([lambda event: None])
    client = make_client(audit=mine)
    client.invoke_tool("demo", "echo", {})
    client.close()
    assert not mine._closed and mine.emitted == 1
    mine.close()


def test_no_audit_with_an_empty_list(make_client: Make) -> None:
    with make_client(audit=[]) as client:
        assert client.auditor is None
        client.invoke_tool("demo", "echo", {})
