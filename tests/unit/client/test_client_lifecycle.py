"""GatewayClient lifecycle: close, context manager, repr, transport_mode, invoke_many input.

Where a request could be sent, the client talks to a fake gateway behind a MockTransport, which
records every request it receives."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable

import pytest
from mock_gateway import HEALTH, FakeGateway

from sark_sync import (
    ClientClosedError,
    ConfigurationError,
    GatewayClient,
    RetryPolicy,
    ToolCall,
    TransportNotAvailableError,
)

BASE = "http://gateway.test"

OPERATIONS: list[tuple[str, Callable[[GatewayClient], Any]]] = [
    ("health", lambda c: c.health()),
    ("list_servers", lambda c: c.list_servers()),
    ("iter_servers", lambda c: list(c.iter_servers())),
    ("get_server", lambda c: c.get_server("srv")),
    ("list_tools", lambda c: c.list_tools("srv")),
    ("iter_tools", lambda c: list(c.iter_tools())),
    ("invoke_tool", lambda c: c.invoke_tool("srv", "echo", {})),
    ("submit", lambda c: c.submit("srv", "echo", {})),
    ("invoke_many", lambda c: c.invoke_many([ToolCall("srv", "echo")])),
    ("invoke_many empty", lambda c: c.invoke_many([])),
    ("enter", lambda c: c.__enter__()),
]
HTTP_OPERATIONS = [op for op in OPERATIONS if op[0] not in ("invoke_many empty", "enter")]


#: The client's own refusal: a MockTransport closed with it would say "this MockTransport is
#: closed", so a call that got as far as the transport cannot pass for a refused one.
CLOSED = "^this GatewayClient is closed$"


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def _client(**kwargs: Any) -> GatewayClient:
    return GatewayClient(BASE, **{"api_key": "k", "retry": RetryPolicy(attempts=1), **kwargs})


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_every_operation_after_close_raises_client_closed_error(
    gateway: FakeGateway, name: str, operation: Callable[[GatewayClient], Any]
) -> None:
    client = gateway.client()
    client.close()
    with pytest.raises(ClientClosedError, match=CLOSED):
        operation(client)
    assert gateway.requests == []


def test_close_after_use_then_operations_raise(gateway: FakeGateway) -> None:
    gateway.add("GET", HEALTH, json={"status": "healthy"})
    client = gateway.client()
    client.health()
    client.close()
    assert gateway.transport.closed  # the client closes the transport it was given
    with pytest.raises(ClientClosedError, match=CLOSED):
        client.health()
    assert gateway.sent() == ["GET /health"]


def test_close_twice_is_fine() -> None:
    client = _client()
    client.close()
    client.close()
    assert client.closed is True


def test_a_new_client_is_open() -> None:
    client = _client()
    assert client.closed is False
    client.close()


def test_context_manager_returns_the_client_and_closes_it() -> None:
    client = _client()
    with client as entered:
        assert entered is client
        assert client.closed is False
    assert client.closed is True


def test_context_manager_closes_on_an_exception() -> None:
    client = _client()
    with pytest.raises(KeyError), client:
        raise KeyError("boom")
    assert client.closed is True


def test_repr_shows_no_api_key() -> None:
    client = _client(api_key="sk-live-very-secret")
    text = repr(client)
    client.close()
    assert "sk-live-very-secret" not in text
    assert text == f"<GatewayClient {BASE} api_key=[secure] mode=auto open>"
    assert "sk-live-very-secret" not in repr(client)
    assert repr(client).endswith(" closed>")


def test_repr_without_an_api_key_says_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_API_KEY", raising=False)
    client = GatewayClient(BASE)
    assert repr(client) == f"<GatewayClient {BASE} api_key=None mode=auto open>"
    client.close()


def test_api_key_is_not_in_the_clients_attribute_reprs() -> None:
    client = _client(api_key="sk-live-very-secret")
    assert "sk-live-very-secret" not in repr(vars(client))
    client.close()


@pytest.mark.parametrize("mode", ["stdio", "sse"])
@pytest.mark.parametrize(("name", "operation"), HTTP_OPERATIONS[:7],
                         ids=[n for n, _ in HTTP_OPERATIONS[:7]])
def test_a_restricted_transport_mode_refuses_http_operations(
    gateway: FakeGateway, mode: str, name: str, operation: Callable[[GatewayClient], Any]
) -> None:
    with gateway.client(transport_mode=mode) as client:
        with pytest.raises(TransportNotAvailableError, match=f"transport_mode is '{mode}'"):
            operation(client)
    assert gateway.requests == []


def test_http_transport_mode_allows_http_operations(gateway: FakeGateway) -> None:
    gateway.add("GET", HEALTH, json={"status": "healthy"})
    with gateway.client(transport_mode="http") as client:
        assert client.health().healthy is True
    assert gateway.sent() == ["GET /health"]


@pytest.mark.parametrize("item", ["srv/echo", ("srv", "echo"), {"server": "srv", "tool": "echo"},
                                  None], ids=repr)
def test_invoke_many_with_a_non_tool_call_item_raises_configuration_error(item: object) -> None:
    with _client() as client:
        with pytest.raises(ConfigurationError, match="invoke_many takes ToolCall items"):
            client.invoke_many([item])  # type: ignore[list-item]


class RecordingExecutor:
    """Stands in for the client's thread pool: records what would have run."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Any, ...]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        self.submitted.append(args[:2])
        future: Future[Any] = Future()
        future.set_result(None)
        return future


def test_invoke_many_rejects_a_bad_item_before_starting_any_call(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = RecordingExecutor()
    with _client() as client:
        monkeypatch.setattr(client._pipeline, "executor", lambda: executor)
        with pytest.raises(ConfigurationError, match="invoke_many takes ToolCall items"):
            client.invoke_many([ToolCall("srv", "delete_rows", {"table": "t"}),
                                "bad"])  # type: ignore[list-item]
    assert executor.submitted == []


def test_invoke_many_of_nothing_returns_an_empty_list() -> None:
    with _client() as client:
        assert client.invoke_many([]) == []
