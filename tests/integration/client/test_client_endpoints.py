"""Every endpoint of the SARK Gateway API v1, round-tripped through GatewayClient."""

from __future__ import annotations

import logging
import tracemalloc
import uuid
from typing import Callable

import pytest
from support import API_KEY, paths

import sark_sync
from sark_sync.testing import LocalGateway


def test_health_round_trips(client: sark_sync.GatewayClient, gateway: LocalGateway) -> None:
    health = client.health()
    assert health == sark_sync.Health(status="healthy", version=health.version, servers=2)
    assert health.healthy and health.version


def test_unhealthy_gateway_is_a_health_result_not_an_error(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    gateway.set_health("unhealthy")
    health = client.health()
    assert health.status == "unhealthy" and not health.healthy
    assert len([r for r in gateway.requests if r.path == "/health"]) == 1  # 503 not retried


def test_list_servers_returns_server_infos(client: sark_sync.GatewayClient) -> None:
    servers = client.list_servers()
    assert [s.server_name for s in servers] == ["demo", "other"]
    other = servers[1]
    assert other.sensitivity_level == "medium"
    assert other.authorized_teams == ("data",)
    assert other.tools_count == 1
    assert other.health_status == "healthy"


def test_list_servers_pages_by_offset(client: sark_sync.GatewayClient, gateway: LocalGateway
                                      ) -> None:
    assert [s.name for s in client.list_servers(page=2, page_size=1)] == ["other"]
    assert gateway.requests[-1].query == {"offset": "1", "limit": "1"}


def test_get_server_by_name(client: sark_sync.GatewayClient) -> None:
    server = client.get_server("other")
    assert server.server_name == "other" and server.authorized_teams == ("data",)


def test_get_unknown_server_raises_not_found(client: sark_sync.GatewayClient) -> None:
    with pytest.raises(sark_sync.NotFoundError) as caught:
        client.get_server("nope")
    assert caught.value.status_code == 404
    assert caught.value.code == "not_found"
    assert caught.value.server == "nope"


def test_list_tools_of_one_server(client: sark_sync.GatewayClient) -> None:
    tools = {t.tool_name: t for t in client.list_tools(server="demo")}
    assert sorted(tools) == ["echo", "fail", "read_only"]
    assert tools["echo"].description == "Echo the parameters back."
    assert tools["read_only"].annotations.read_only_hint is True
    assert all(t.server_name == "demo" for t in tools.values())


def test_iter_tools_of_all_servers(client: sark_sync.GatewayClient) -> None:
    names = [(t.server_name, t.tool_name) for t in client.iter_tools(page_size=2)]
    assert sorted(names) == [("demo", "echo"), ("demo", "fail"), ("demo", "read_only"),
                             ("other", "ping")]


def test_invoke_tool_returns_tool_result(client: sark_sync.GatewayClient,
                                         gateway: LocalGateway) -> None:
    result = client.invoke_tool("demo", "echo", {"text": "hi", "n": 2})
    assert result.is_error is False
    assert result.structured == {"text": "hi", "n": 2}
    assert result.server == "demo" and result.tool == "echo"
    assert result.attempts == 1
    assert result.latency_ms > 0
    uuid.UUID(result.request_id or "")
    sent = gateway.requests[-1]
    assert sent.json() == {"server": "demo", "tool": "echo", "parameters": {"text": "hi", "n": 2}}
    assert sent.headers["X-API-Key"] == API_KEY
    assert sent.headers["User-Agent"].startswith(f"sark-sync/{sark_sync.__version__} python/")
    assert sent.headers["X-Request-ID"] == result.request_id
    uuid.UUID(sent.headers["Idempotency-Key"])


def test_user_token_is_sent_as_bearer(client: sark_sync.GatewayClient,
                                      gateway: LocalGateway) -> None:
    token = gateway.issue_token(subject="alice", roles=("developer",))
    client.invoke_tool("demo", "echo", {}, user_token=token)
    assert gateway.requests[-1].headers["Authorization"] == f"Bearer {token}"


def test_tool_error_is_a_result_until_raise_for_error(client: sark_sync.GatewayClient) -> None:
    result = client.invoke_tool("demo", "fail")
    assert result.is_error is True
    assert result.text == "the tool failed on purpose"
    with pytest.raises(sark_sync.ToolExecutionError) as caught:
        result.raise_for_error()
    assert caught.value.result is result and caught.value.tool == "fail"


def test_unknown_tool_raises_not_found(client: sark_sync.GatewayClient) -> None:
    with pytest.raises(sark_sync.NotFoundError):
        client.invoke_tool("demo", "missing")


def test_wrong_api_key_raises_authentication_error(
    make_client: Callable[..., sark_sync.GatewayClient]
) -> None:
    with pytest.raises(sark_sync.AuthenticationError) as caught:
        make_client(api_key="wrong-key").list_servers()
    assert caught.value.status_code == 401 and caught.value.code == "unauthenticated"


def test_client_reads_url_and_key_from_environment(
    gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SARK_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("SARK_API_KEY", API_KEY)
    with sark_sync.GatewayClient() as client:
        assert [s.name for s in client.list_servers()] == ["demo", "other"]


def _fill(gateway: LocalGateway, count: int) -> None:
    for index in range(count):
        gateway.add_server(f"srv-{index:05d}")


def test_iter_servers_yields_2500_unique_servers(client: sark_sync.GatewayClient,
                                                 gateway: LocalGateway) -> None:
    _fill(gateway, 2498)
    names = [s.server_name for s in client.iter_servers(page_size=100)]
    assert len(names) == 2500 and len(set(names)) == 2500
    assert len(paths(gateway, "/api/v1/servers")) == 25


def test_iter_servers_fetches_pages_lazily(client: sark_sync.GatewayClient,
                                           gateway: LocalGateway) -> None:
    _fill(gateway, 2498)
    iterator = client.iter_servers(page_size=100)
    for _ in range(150):
        next(iterator)
    assert len(paths(gateway, "/api/v1/servers")) == 2


def test_iter_servers_runs_in_constant_memory(client: sark_sync.GatewayClient,
                                              gateway: LocalGateway) -> None:
    _fill(gateway, 2498)
    tracemalloc.start()
    try:
        count = sum(1 for _ in client.iter_servers(page_size=100))
        _, streaming_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        everything = list(client.iter_servers(page_size=100))
        _, holding_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(everything) == 2500
    # Holding 2,500 servers costs several times what streaming them one page at a time does.
    assert streaming_peak * 3 < holding_peak, (streaming_peak, holding_peak)


def test_malformed_item_is_skipped_with_a_warning(
    client: sark_sync.GatewayClient, gateway: LocalGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.add_raw_server({"server_name": 42})
    gateway.add_raw_server("not an object")
    gateway.add_server("last")
    with caplog.at_level(logging.WARNING, logger="sark_sync"):
        names = [s.name for s in client.iter_servers(page_size=2)]
    assert names == ["demo", "other", "last"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "item 2" in warnings[0] and "server_name" in warnings[0]
    assert "item 3" in warnings[1]


def test_list_tools_with_unknown_server_raises_not_found(client: sark_sync.GatewayClient
                                                         ) -> None:
    with pytest.raises(sark_sync.NotFoundError):
        client.list_tools(server="nope")


def test_names_with_url_characters_never_reach_the_gateway(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    for bad in ("../health", "a/b", "a?b", "a b", ""):
        with pytest.raises(sark_sync.ValidationError):
            client.get_server(bad)
        with pytest.raises(sark_sync.ValidationError):
            client.invoke_tool("demo", bad)
    assert gateway.requests == []




def test_503_without_a_health_report_raises_service_unavailable(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    from sark_sync.testing import Fault

    gateway.add_fault(Fault(path="/health", status=503, times=None))
    with pytest.raises(sark_sync.ServiceUnavailableError) as caught:
        client.health()
    assert caught.value.status_code == 503
    assert len([r for r in gateway.requests if r.path == "/health"]) == 1
