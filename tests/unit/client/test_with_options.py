"""``client.with_options(...)``: a view with other defaults that shares everything its client
owns (transport, pools, breakers, servers, audit) and opens nothing of its own."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sark_sync import (
    AuditEvent,
    BreakerPolicy,
    CircuitOpenError,
    ClientClosedError,
    ConfigurationError,
    GatewayClient,
    RetryPolicy,
    ServiceUnavailableError,
    Timeouts,
)
from sark_sync.governance import CallableSink
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request

FAST = RetryPolicy(attempts=3, backoff_base=0.0, jitter=False)


def ok(request: Request) -> MockResponse:
    if request.path == "/api/v1/servers":
        return MockResponse(200, json={"servers": [], "total": 0})
    return MockResponse(200, json={"result": {"content": [], "structuredContent": {}}})


def unavailable(request: Request) -> MockResponse:
    return MockResponse(503, json={"error": {"code": "unavailable", "message": "m"}})


def test_a_view_is_a_gateway_client_with_the_given_defaults_and_the_rest_inherited() -> None:
    retry = RetryPolicy(attempts=1)
    with GatewayClient(transport=MockTransport(ok), timeout=30, retry=FAST) as client:
        view = client.with_options(timeout=2, retry=retry)
        assert isinstance(view, GatewayClient)
        assert view.timeouts == Timeouts.coerce(2) and view.retry is retry
        assert client.timeouts == Timeouts.coerce(30) and client.retry is FAST
        same = client.with_options()
        assert same.timeouts == client.timeouts and same.retry is FAST
        assert (view.base_url, view.breaker, view.transport_mode) == (
            client.base_url, client.breaker, client.transport_mode)


def test_the_views_retry_policy_applies_to_its_calls_only() -> None:
    transport = MockTransport(unavailable)
    with GatewayClient(transport=transport, retry=FAST, breaker=BreakerPolicy(enabled=False)
                       ) as client:
        with pytest.raises(ServiceUnavailableError) as viewed:
            client.with_options(retry=RetryPolicy(attempts=1)).invoke_tool("demo", "echo")
        assert viewed.value.attempts == 1 and len(transport.requests) == 1
        with pytest.raises(ServiceUnavailableError) as direct:
            client.invoke_tool("demo", "echo")
        assert direct.value.attempts == 3 and len(transport.requests) == 4


def test_the_views_timeout_is_each_calls_default_and_a_calls_timeout_still_wins() -> None:
    with GatewayClient(transport=MockTransport(ok)) as client:
        view = client.with_options(timeout=2.5)
        assert view._pipeline.deadline(None).timeout == 2.5
        assert view._pipeline.deadline(7).timeout == 7
        assert client._pipeline.deadline(None).timeout == 30


def test_the_views_headers_go_on_every_gateway_request_of_the_view_only() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        view = client.with_options(headers={"X-Tenant": "acme"})
        view.invoke_tool("demo", "echo")
        view.list_servers()
        client.invoke_tool("demo", "echo")
    viewed_call, viewed_listing, direct = transport.requests
    assert viewed_call.headers["X-Tenant"] == "acme"
    assert viewed_listing.headers["X-Tenant"] == "acme"
    assert "X-Tenant" not in direct.headers


def test_nested_views_add_headers_and_a_calls_headers_replace_them_whatever_the_case() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        outer = client.with_options(headers={"X-Tenant": "acme", "X-Team": "blue"})
        inner = outer.with_options(headers={"x-team": "red"}, timeout=3)
        assert inner.timeouts.deadline == 3 and outer.timeouts.deadline == 30
        inner.invoke_tool("demo", "echo")
        inner.invoke_tool("demo", "echo", headers={"X-TENANT": "globex"})
    first, second = transport.requests
    assert {k: v for k, v in first.headers.items() if k.lower().startswith("x-t")} == {
        "X-Tenant": "acme", "x-team": "red"}
    assert {k: v for k, v in second.headers.items() if k.lower().startswith("x-t")} == {
        "X-TENANT": "globex", "x-team": "red"}


def test_closing_a_view_leaves_its_client_and_the_shared_transport_open() -> None:
    transport = MockTransport(ok)
    with GatewayClient(transport=transport) as client:
        with client.with_options(timeout=2) as view:
            view.invoke_tool("demo", "echo")
        assert view.closed and not client.closed and not transport.closed
        with pytest.raises(ClientClosedError):
            view.invoke_tool("demo", "echo")
        with pytest.raises(ClientClosedError):
            view.with_options(timeout=1)
        assert client.invoke_tool("demo", "echo").attempts == 1
        assert not client.with_options().closed  # a new view of an open client is open
    assert transport.closed


def test_closing_the_client_closes_every_view_of_it() -> None:
    client = GatewayClient(transport=MockTransport(ok))
    view = client.with_options(timeout=2)
    nested = view.with_options(headers={"X-A": "1"})
    client.close()
    assert view.closed and nested.closed
    for closed in (view, nested):
        with pytest.raises(ClientClosedError):
            closed.invoke_tool("demo", "echo")
        with pytest.raises(ClientClosedError):
            closed.submit("demo", "echo")
    with pytest.raises(ClientClosedError):
        client.with_options(timeout=2)


def test_a_view_keeps_its_unnamed_client_alive() -> None:
    transport = MockTransport(ok)
    view = GatewayClient(transport=transport).with_options(timeout=2)
    gc.collect()
    assert not transport.closed
    assert view.invoke_tool("demo", "echo").attempts == 1
    view.close()
    assert not transport.closed  # the client is not closed by its view...
    del view
    gc.collect()
    assert transport.closed  # ...but released with it once nothing holds it


def test_a_view_shares_the_breakers_of_its_client() -> None:
    transport = MockTransport(unavailable)
    policy = BreakerPolicy(failure_threshold=2, recovery_timeout=60)
    with GatewayClient(transport=transport, retry=RetryPolicy(attempts=1), breaker=policy
                       ) as client:
        view = client.with_options(timeout=5)
        assert view.breaker_for("demo") is client.breaker_for("demo")
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                view.invoke_tool("demo", "echo")
        with pytest.raises(CircuitOpenError):
            client.invoke_tool("demo", "echo")
    assert len(transport.requests) == 2


def test_a_views_calls_are_audited_by_its_clients_sink_and_closing_it_flushes_nothing() -> None:
    events: list[AuditEvent] = []
    with GatewayClient(transport=MockTransport(ok), audit=CallableSink(events.append)
                       ) as client:
        view = client.with_options(timeout=3)
        view.invoke_tool("demo", "echo")
        view.close()
        client.invoke_tool("demo", "echo")
    assert [(e.server, e.outcome) for e in events] == [("demo", "success")] * 2


def test_views_open_no_thread_and_share_the_clients_thread_pool() -> None:
    with GatewayClient(transport=MockTransport(ok), max_workers=2) as client:
        client.submit("demo", "echo").result(timeout=5)
        before = threading.active_count()
        views = [client.with_options(timeout=1 + n % 5) for n in range(200)]
        futures = [view.submit("demo", "echo") for view in views[:20]]
        assert all(f.result(timeout=5).attempts == 1 for f in futures)
        assert threading.active_count() <= before + 1  # at most the pool's second worker
        assert all(view._pipeline.executor() is client._pipeline.executor()
                   for view in views[:3])


def test_views_made_and_used_by_many_threads_at_once_all_work() -> None:
    transport = MockTransport(ok)
    barrier = threading.Barrier(8)

    def work(n: int) -> str:
        barrier.wait(timeout=5)
        view = client.with_options(headers={"X-Worker": str(n)}, timeout=5)
        view.invoke_tool("demo", "echo")
        return str(n)

    with GatewayClient(transport=transport) as client:
        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(work, range(8)))
    assert sorted(done) == sorted(r.headers["X-Worker"] for r in transport.requests)


@pytest.mark.parametrize(("options", "words"), [
    ({"timeout": -1}, "timeout"),
    ({"timeout": "fast"}, "timeout"),
    ({"retry": 3}, "retry must be a RetryPolicy"),
    ({"headers": {"Host": "evil.example"}}, "Host is set by the client"),
    ({"headers": {"Authorization": "Bearer s3cr3t\n"}}, "headers['Authorization']"),
    ({"headers": ["X-A"]}, "mapping"),
])
def test_invalid_options_raise_configuration_error_without_quoting_a_value(
        options: dict[str, object], words: str) -> None:
    with GatewayClient(transport=MockTransport(ok)) as client:
        with pytest.raises(ConfigurationError) as caught:
            client.with_options(**options)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "evil.example" not in str(caught.value)
