"""OpenTelemetry spans (the ``otel`` extra), read back with the real SDK's
InMemorySpanExporter: one span per tool call and per discovery request, with the server, the
tool and the attempts, retry and breaker events, ERROR on failure; and, without
``opentelemetry-api`` (its import made to fail), the same calls with no span at all."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import sark_sync.resilience._observe as observe
from sark_sync import (
    BreakerPolicy,
    GatewayClient,
    RetryPolicy,
    ServiceUnavailableError,
    ToolCall,
    ToolResult,
)
from sark_sync.resilience import Retrying
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.0, jitter=False)
SECRET = "s3cr3t-t0ken"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The SDK as an application sets it up (once per process), exporting to memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider.add_span_processor(processor)
    yield memory
    # Later tests' spans are no longer kept. The exporter stops, not the processor: a stopped
    # processor stays on the global provider and logs a warning for every later span,
    # which tests that count warnings would see.
    memory.shutdown()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def answers(*statuses: int) -> MockTransport:
    """503s (or the given statuses) first, then successes."""
    left = list(statuses)

    def handler(request: Request) -> MockResponse:
        if left:
            return MockResponse(left.pop(0), json={"error": {"code": "x", "message": "m"}})
        if request.path == "/api/v1/servers":
            return MockResponse(200, json={"servers": [], "total": 0})
        return MockResponse(200, json={"result": {"content": [], "structuredContent": {},
                                                  "isError": request.json()["tool"] == "bad"}})

    return MockTransport(handler)


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def test_a_tool_call_is_one_client_span_with_its_server_tool_and_attempts(
        spans: InMemorySpanExporter) -> None:
    transport = answers(503, 503)
    with GatewayClient(transport=transport, retry=FAST) as client:
        result = client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=SECRET)
    [span] = finished(spans)
    assert (span.name, span.kind, span.status.status_code) == (
        "sark_sync invoke_tool", SpanKind.CLIENT, StatusCode.UNSET)
    assert dict(span.attributes or {}) == {
        "sark.server": "demo", "sark.tool": "echo", "sark.transport": "http",
        "sark.request_id": transport.requests[0].headers["X-Request-ID"],
        "sark.attempts": 3}
    assert result.attempts == 3
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("sark_sync.retry", {"sark.attempt": 1, "sark.wait": 0.0,
                             "error.type": "ServiceUnavailableError"}),
        ("sark_sync.retry", {"sark.attempt": 2, "sark.wait": 0.0,
                             "error.type": "ServiceUnavailableError"})]


def test_a_failed_call_ends_its_span_with_error_status_and_a_breaker_event(
        spans: InMemorySpanExporter) -> None:
    with GatewayClient(transport=answers(503, 503, 503), retry=FAST,
                       breaker=BreakerPolicy(failure_threshold=1, recovery_timeout=60)
                       ) as client:
        with pytest.raises(ServiceUnavailableError):
            client.invoke_tool("demo", "echo")
    [span] = finished(spans)
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR, "ServiceUnavailableError")
    assert span.attributes is not None
    assert (span.attributes["error.type"], span.attributes["sark.attempts"]) == (
        "ServiceUnavailableError", 3)
    assert [e.name for e in span.events] == ["sark_sync.retry", "sark_sync.retry",
                                             "sark_sync.breaker"]
    assert dict(span.events[-1].attributes or {}) == {
        "sark.breaker": "mock://gateway/demo", "sark.breaker.state": "open"}


def test_a_tool_error_is_marked_but_is_not_an_error_status(spans: InMemorySpanExporter
                                                           ) -> None:
    with GatewayClient(transport=answers()) as client:
        assert client.invoke_tool("demo", "bad").is_error
    [span] = finished(spans)
    assert span.attributes is not None and span.attributes["sark.tool_error"] is True
    assert span.status.status_code == StatusCode.UNSET


def test_a_discovery_request_is_a_span_of_its_own(spans: InMemorySpanExporter) -> None:
    transport = answers(503)
    with GatewayClient(transport=transport, retry=FAST) as client:
        client.list_servers()
    [span] = finished(spans)
    assert (span.name, span.kind) == ("sark_sync GET", SpanKind.CLIENT)
    assert dict(span.attributes or {}) == {
        "sark.transport": "http", "http.request.method": "GET", "url.path": "/api/v1/servers",
        "sark.request_id": transport.requests[0].headers["X-Request-ID"], "sark.attempts": 2}
    assert [e.name for e in span.events] == ["sark_sync.retry"]


def test_no_event_or_attribute_lands_on_a_span_of_the_application(
        spans: InMemorySpanExporter) -> None:
    # A retry loop outside any call (here: run directly) leaves the application's span alone.
    retrying = Retrying(FAST, None, retryable=lambda error: True, sleep=lambda s: None)
    outcomes = [ServiceUnavailableError("down", status_code=503), None]

    def attempt() -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return "ok"

    with trace.get_tracer("test").start_as_current_span("application"):
        assert retrying.call(attempt) == "ok"
    [span] = finished(spans)
    assert (span.name, span.events, dict(span.attributes or {})) == ("application", (), {})


def test_submitted_and_batched_calls_are_children_of_the_submitters_span(
        spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with GatewayClient(transport=answers()) as client:
        with tracer.start_as_current_span("request") as parent:
            future: Future[ToolResult] = client.submit("demo", "echo")
            future.result(timeout=5)
            client.invoke_many([ToolCall("demo", "a"), ToolCall("demo", "b")])
    calls = [s for s in finished(spans) if s.name == "sark_sync invoke_tool"]
    assert len(calls) == 3
    parent_id = parent.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == parent_id for s in calls)
    assert {s.context.trace_id for s in calls} == {parent.get_span_context().trace_id}


def test_no_span_carries_a_parameter_a_token_or_a_header_value(
        spans: InMemorySpanExporter) -> None:
    with GatewayClient(transport=answers(503), retry=FAST, api_key=SECRET + "k") as client:
        client.invoke_tool("demo", "echo", {"password": SECRET}, user_token=SECRET,
                           headers={"X-Secret": SECRET})
    [span] = finished(spans)
    assert SECRET not in span.to_json()


def test_without_opentelemetry_calls_make_no_span_and_still_log(
        spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # As if the import had failed: the module's handles on the package are None.
    monkeypatch.setattr(observe, "trace", None)
    monkeypatch.setattr(observe, "otel_context", None)
    caplog.set_level(logging.INFO, logger="sark_sync.retry")
    with GatewayClient(transport=answers(503), retry=FAST) as client:
        assert client.invoke_tool("demo", "echo").attempts == 2
        assert client.submit("demo", "echo").result(timeout=5).attempts == 1
        client.list_servers()
    assert finished(spans) == []
    [record] = [r for r in caplog.records if r.name == "sark_sync.retry"]
    assert (record.server, record.tool, record.attempt) == ("demo", "echo", 1)


def test_the_module_imports_and_passes_through_when_the_import_of_opentelemetry_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith(
            "opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    spec = importlib.util.spec_from_file_location(
        "sark_sync.resilience._observe_without_otel", observe.__file__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert not fresh.tracing()
    assert (fresh.trace, fresh.otel_context) == (None, None)
    with fresh.observed("invoke_tool", server="s", tool="t", request_id="r",
                        transport="http") as span:
        assert span is None
        assert fresh.current_call() == ("r", "s", "t")
    assert fresh.current_call() is None

    def function() -> int:
        return 1

    assert fresh.carry_context(function) is function
    assert observe.tracing()  # the real module, with the package installed
