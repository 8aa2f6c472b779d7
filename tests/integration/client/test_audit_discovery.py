"""Audit events of discovery, health and event streams over real sockets: one
event per public operation (a listing walked page by page included), with the request ids the
gateway saw, the attempts it took, the status it answered; the principal read from the user
token without an authorizer; nothing built while nobody listens."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
from support import child_env, demo_server_command

import sark_sync
from sark_sync.governance import AuditEvent
from sark_sync.testing import Fault, LocalGateway

Make = Callable[..., sark_sync.GatewayClient]


def seen(gateway: LocalGateway, path: str) -> list[str]:
    """The X-Request-ID of every request the gateway received on ``path``, in order."""
    return [r.headers.get("X-Request-ID") or "" for r in gateway.requests if r.path == path]


def fields(event: AuditEvent) -> tuple[Any, ...]:
    return (event.event_type, event.operation, event.server, event.transport, event.outcome,
            event.status_code, event.attempts, event.error_type)


def test_each_discovery_operation_makes_one_event(gateway: LocalGateway, make_client: Make
                                                  ) -> None:
    events: list[AuditEvent] = []
    client = make_client(audit=events.append)
    gateway.clear_requests()
    client.health()
    client.list_servers()
    assert len(list(client.iter_servers(page_size=1))) == 2
    client.get_server("demo")
    client.list_tools(server="demo")
    assert len(list(client.iter_tools(page_size=3))) == 4
    assert [fields(e) for e in events] == [
        ("health", "health", None, "http", "success", 200, 1, None),
        ("discovery", "list_servers", None, "http", "success", 200, 1, None),
        ("discovery", "iter_servers", None, "http", "success", 200, 2, None),
        ("discovery", "get_server", "demo", "http", "success", 200, 1, None),
        ("discovery", "list_tools", "demo", "http", "success", 200, 1, None),
        ("discovery", "iter_tools", None, "http", "success", 200, 2, None),
    ]
    servers, tools = seen(gateway, "/api/v1/servers"), seen(gateway, "/api/v1/tools")
    assert [e.request_id for e in events] == [
        seen(gateway, "/health")[0], servers[0], servers[2],
        seen(gateway, "/api/v1/servers/demo")[0], tools[0], tools[2]]
    assert all(e.principal_id is None and e.parameters is None and e.decision is None
               and e.latency_ms is not None and e.latency_ms > 0 for e in events)


def test_a_wrong_api_key_is_one_401_error_event_per_operation(make_client: Make) -> None:
    events: list[AuditEvent] = []
    client = make_client(api_key="wrong", audit=events.append)
    operations: list[Callable[[], object]] = [
        client.list_servers, lambda: list(client.iter_servers()),
        lambda: client.get_server("demo"), lambda: client.list_tools(server="demo"),
        lambda: list(client.iter_tools()), client.stream_events]
    for operation in operations:
        with pytest.raises(sark_sync.AuthenticationError):
            operation()
    assert [(e.operation, e.outcome, e.status_code, e.error_type) for e in events] == [
        (name, "error", 401, "AuthenticationError")
        for name in ("list_servers", "iter_servers", "get_server", "list_tools", "iter_tools",
                     "stream_events")]
    assert all(e.request_id for e in events)
    assert [e.attempts for e in events[:5]] == [1] * 5


def test_an_unknown_server_is_a_404_event_naming_it(gateway: LocalGateway, make_client: Make
                                                    ) -> None:
    events: list[AuditEvent] = []
    with pytest.raises(sark_sync.NotFoundError):
        make_client(audit=events.append).get_server("nope")
    assert [fields(e) for e in events] == [
        ("discovery", "get_server", "nope", "http", "error", 404, 1, "NotFoundError")]
    assert events[0].request_id == seen(gateway, "/api/v1/servers/nope")[0]


def test_retried_pages_add_their_attempts_to_the_one_event(
        gateway: LocalGateway, make_client: Make) -> None:
    events: list[AuditEvent] = []
    client = make_client(audit=events.append)
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, times=1))
    client.list_servers()
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, times=1))
    assert len(list(client.iter_servers(page_size=1))) == 2
    assert [(e.operation, e.outcome, e.status_code, e.attempts) for e in events] == [
        ("list_servers", "success", 200, 2), ("iter_servers", "success", 200, 3)]


def test_an_iterator_failing_midway_is_one_error_event_counting_every_page(
        gateway: LocalGateway, make_client: Make) -> None:
    events: list[AuditEvent] = []
    walked = make_client(audit=events.append).iter_servers(page_size=1)
    next(walked)
    gateway.add_fault(Fault(path="/api/v1/servers", status=503, times=None))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        next(walked)
    (event,) = events
    assert (event.operation, event.outcome, event.status_code) == ("iter_servers", "error", 503)
    # one attempt for the first page, the policy's three for the failed one
    assert event.attempts == 4 and event.request_id == seen(gateway, "/api/v1/servers")[-1]


def test_an_unhealthy_gateway_is_a_success_with_its_503(gateway: LocalGateway,
                                                        make_client: Make) -> None:
    events: list[AuditEvent] = []
    gateway.set_health("unhealthy")
    report = make_client(audit=events.append).health()
    assert report.status == "unhealthy"
    assert [fields(e) for e in events] == [
        ("health", "health", None, "http", "success", 503, 1, None)]


def test_a_503_without_a_report_is_an_error_counted_once(gateway: LocalGateway,
                                                         make_client: Make) -> None:
    events: list[AuditEvent] = []
    gateway.add_fault(Fault(path="/health", status=503, body="down", times=None))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        make_client(audit=events.append).health()
    assert [fields(e) for e in events] == [
        ("health", "health", None, "http", "error", 503, 1, "ServiceUnavailableError")]


def test_opening_a_stream_is_one_event_with_the_tokens_principal(
        gateway: LocalGateway, make_client: Make) -> None:
    events: list[AuditEvent] = []
    client = make_client(audit=events.append)
    token = gateway.issue_token("ada")
    with client.stream_events(types=["tool_invoked"], user_token=token) as stream:
        client.invoke_tool("demo", "echo", {"x": 1})
        assert next(stream).type == "tool_invoked"
    assert [(e.event_type, e.operation, e.transport, e.outcome, e.status_code, e.principal_id)
            for e in events] == [
        ("event_stream", "stream_events", "sse", "success", 200, "ada"),
        ("tool_invocation", "invoke_tool", "http", "success", None, None)]


def test_without_an_authorizer_tool_calls_name_the_tokens_subject(
        gateway: LocalGateway, make_client: Make) -> None:
    events: list[AuditEvent] = []
    client = make_client(audit=events.append)
    ada, bob = gateway.issue_token("ada"), gateway.issue_token("bob")
    for token in (ada, bob, ada, ada):
        client.invoke_tool("demo", "echo", {}, user_token=token)
    client.invoke_tool("demo", "echo", {}, user_token=ada, principal=sark_sync.Principal("eve"))
    assert [e.principal_id for e in events] == ["ada", "bob", "ada", "ada", "eve"]
    assert client._governance.principal_ids.decoded == 2


def test_a_malformed_token_fails_nothing_for_the_audit_trail(make_client: Make) -> None:
    events: list[AuditEvent] = []
    client = make_client(audit=events.append)
    with pytest.raises(sark_sync.AuthenticationError):  # the gateway's check, not the audit's
        client.invoke_tool("demo", "echo", {}, user_token="not.a.jwt")
    with pytest.raises(sark_sync.AuthenticationError):
        client.stream_events(user_token="not-a-jwt-at-all")
    assert [(e.operation, e.status_code, e.principal_id) for e in events] == [
        ("invoke_tool", 401, None), ("stream_events", 401, None)]
    assert client.auditor is not None and client.auditor.invalid_events == 0


def test_a_local_servers_tools_are_discovered_over_stdio() -> None:
    events: list[AuditEvent] = []
    servers = {"local": {"command": demo_server_command(), "env": child_env()}}
    with sark_sync.GatewayClient("http://127.0.0.1:9", local_servers=servers,
                                 audit=events.append) as client:
        names = [tool.name for tool in client.list_tools(server="local")]
        assert names and [t.name for t in client.iter_tools(server="local")] == names
    assert [(e.event_type, e.operation, e.server, e.transport, e.outcome) for e in events] == [
        ("discovery", "list_tools", "local", "stdio", "success"),
        ("discovery", "iter_tools", "local", "stdio", "success")]


def test_nothing_is_built_while_the_default_audit_logger_is_off(
        gateway: LocalGateway, make_client: Make, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sark_sync.audit")  # nobody listens
    built: list[str] = []
    original = AuditEvent.create.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AuditEvent], *args: Any, **kwargs: Any) -> AuditEvent:
        built.append(str(args[0]) if args else "tool_invocation")
        event: AuditEvent = original(cls, *args, **kwargs)
        return event

    monkeypatch.setattr(AuditEvent, "create", classmethod(counting))
    client = make_client()
    token = gateway.issue_token("ada")
    client.health()
    client.list_servers()
    list(client.iter_servers(page_size=1))
    client.get_server("demo")
    with pytest.raises(sark_sync.NotFoundError):
        client.get_server("nope")
    list(client.iter_tools())
    client.stream_events(user_token=token).close()
    client.invoke_tool("demo", "echo", {}, user_token=token)
    assert built == [] and client.auditor is not None and client.auditor.emitted == 0
    assert len(client._governance.principal_ids) == 0
    logging.getLogger("sark_sync.audit").setLevel(logging.INFO)  # someone listens now
    client.list_servers()
    assert built == ["discovery"] and client.auditor.emitted == 1
