"""The events a LocalGateway emits by itself, seen on a real stream: ``tool_invoked`` for every
invoke that reached a tool (plain and hosted stdio servers), ``server_registered`` and
``server_unregistered`` from the catalogue, and ``server_health`` when a server's health
changes (a hosted stdio server crashing and restarting, :meth:`set_server_health`).
"""

from __future__ import annotations

import sys
import uuid
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import AUTH, EventReader, error_of, invoke
from support import build_gateway, child_env

import sark_sync
from sark_sync.testing import LocalGateway

DEMO = [sys.executable, "-m", "sark_sync.testing.demo_server"]


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """The ``local_gateway`` catalogue, then (once started) a server ``faulty`` whose tool
    ``broken`` raises."""
    gateway = make_gateway("local_gateway")
    gateway.add_server("faulty")

    @gateway.tool("faulty")
    def broken(parameters: dict[str, Any]) -> Any:
        raise RuntimeError("broken on purpose")

    return gateway


def _demo_over_stdio(gateway: LocalGateway) -> None:
    gateway.add_stdio_server("demo", DEMO, env=child_env(), call_timeout=0.5)


@pytest.fixture
def stdio_gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """A gateway hosting only the demo MCP server over stdio (calls time out after 0.5 s)."""
    return make_gateway(_demo_over_stdio)


def live(gateway: LocalGateway, types: str | None = None) -> EventReader:
    """A stream of the events published from now on."""
    return EventReader(gateway.url, last_event_id=gateway.last_event_id, types=types)


def kinds(reader: EventReader, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [(event.event, event.json()) for event in reader.take(count)]


def stdio_invoke(http: requests.Session, gateway: LocalGateway, tool: str, **params: Any) -> int:
    body = {"server": "demo", "tool": tool, "parameters": params}
    return http.post(f"{gateway.url}/api/v1/invoke", json=body, headers=AUTH).status_code


# -- tool_invoked ----------------------------------------------------------------------------


def test_an_invoke_publishes_tool_invoked_with_its_request_id_and_outcome_success(
    gateway: LocalGateway, http: requests.Session
) -> None:
    with live(gateway) as reader:
        assert invoke(http, gateway, headers={"X-Request-ID": "rid-1"}).status_code == 200
        event = reader.take(1)[0]
    assert (event.event, event.id) == ("tool_invoked", gateway.last_event_id)
    data = event.json()
    latency = data.pop("latency_ms")
    assert data == {"request_id": "rid-1", "server": "demo", "tool": "echo",
                    "principal": None, "outcome": "success"}
    assert isinstance(latency, float) and 0 <= latency < 5000


def test_the_principal_is_the_sub_of_the_user_jwt(
    gateway: LocalGateway, http: requests.Session
) -> None:
    token = gateway.issue_token("bob", roles=("admin",))
    with live(gateway) as reader:
        invoke(http, gateway, headers={"Authorization": f"Bearer {token}"})
        assert reader.take(1)[0].json()["principal"] == "bob"


def test_a_tool_error_result_is_outcome_tool_error(
    gateway: LocalGateway, http: requests.Session
) -> None:
    with live(gateway) as reader:
        response = invoke(http, gateway, "broken", server="faulty")
        assert response.json()["result"]["isError"] is True
        data = reader.take(1)[0].json()
    assert (data["server"], data["tool"], data["outcome"]) == ("faulty", "broken", "tool_error")


def test_requests_that_reach_no_tool_publish_nothing(
    gateway: LocalGateway, http: requests.Session
) -> None:
    with live(gateway) as reader:
        error_of(invoke(http, gateway, "nope"), 404, "not_found")
        error_of(invoke(http, gateway, headers={"X-API-Key": "wrong"}), 401, "unauthenticated")
        error_of(invoke(http, gateway, parameters=[1]), 400, "invalid_request")
        key = {"Idempotency-Key": str(uuid.uuid4())}
        assert invoke(http, gateway, headers=key).status_code == 200
        replayed = invoke(http, gateway, headers=key)
        assert replayed.headers["Idempotent-Replayed"] == "true"
        gateway.publish_event("marker", {})
        assert [name for name, _ in kinds(reader, 2)] == ["tool_invoked", "marker"]


def test_stdio_invokes_publish_success_tool_error_and_error_for_504(
    stdio_gateway: LocalGateway, http: requests.Session
) -> None:
    with live(stdio_gateway, types="tool_invoked") as reader:
        assert stdio_invoke(http, stdio_gateway, "echo", text="hi") == 200
        assert stdio_invoke(http, stdio_gateway, "fail") == 200
        assert stdio_invoke(http, stdio_gateway, "slow", seconds=10) == 504
        outcomes = [(data["tool"], data["outcome"]) for _, data in kinds(reader, 3)]
    assert outcomes == [("echo", "success"), ("fail", "tool_error"), ("slow", "error")]


# -- the catalogue ---------------------------------------------------------------------------


def test_adding_and_removing_servers_publishes_registered_and_unregistered(
    gateway: LocalGateway,
) -> None:
    with live(gateway) as reader:
        gateway.add_server("fresh")
        gateway.remove_server("fresh")
        gateway.remove_server("demo")
        with pytest.raises(KeyError):
            gateway.remove_server("demo")
        with pytest.raises(ValueError):
            gateway.add_server("data-mcp")  # a duplicate: nothing published
        gateway.publish_event("marker", {})
        assert kinds(reader, 4) == [
            ("server_registered", {"server": "fresh"}),
            ("server_unregistered", {"server": "fresh"}),
            ("server_unregistered", {"server": "demo"}),
            ("marker", {}),
        ]


def test_servers_added_before_start_are_in_the_replay(http: requests.Session) -> None:
    with build_gateway("local_gateway") as gateway, \
            EventReader(gateway.url, last_event_id=0) as reader:
        assert kinds(reader, 2) == [
            ("server_registered", {"server": "demo"}),
            ("server_registered", {"server": "data-mcp"}),
        ]


def test_a_fresh_stream_does_not_get_the_events_of_servers_added_before_it() -> None:
    with build_gateway("local_gateway") as gateway, EventReader(gateway.url) as reader:
        assert gateway.last_event_id >= 2  # the two registrations, at least
        assert reader.opening() == b"retry: 1000\nid: %d\n\n" % gateway.last_event_id
        gateway.add_server("later")
        assert kinds(reader, 1) == [("server_registered", {"server": "later"})]


def test_set_server_health_publishes_server_health_when_it_changes(
    gateway: LocalGateway, http: requests.Session
) -> None:
    with live(gateway) as reader:
        gateway.set_server_health("demo", "degraded")
        gateway.set_server_health("demo", "degraded")  # no change, no event
        gateway.set_health("unhealthy")  # the gateway's own health: not a server's
        gateway.set_server_health("demo", "healthy")
        gateway.publish_event("marker", {})
        assert kinds(reader, 3) == [
            ("server_health", {"server": "demo", "status": "degraded"}),
            ("server_health", {"server": "demo", "status": "healthy"}),
            ("marker", {}),
        ]
    info = http.get(f"{gateway.url}/api/v1/servers/demo", headers=AUTH).json()
    assert info["health_status"] == "healthy"
    with pytest.raises(KeyError):
        gateway.set_server_health("nope", "healthy")
    with pytest.raises(ValueError):
        gateway.set_server_health("demo", "sick")


# -- hosted stdio servers --------------------------------------------------------------------


def test_a_stdio_server_is_registered_then_healthy_when_it_starts(
    stdio_gateway: LocalGateway,
) -> None:
    with EventReader(stdio_gateway.url, last_event_id=0) as reader:
        assert kinds(reader, 2) == [
            ("server_registered", {"server": "demo"}),
            ("server_health", {"server": "demo", "status": "healthy"}),
        ]
    with pytest.raises(ValueError):
        stdio_gateway.set_server_health("demo", "healthy")


def test_a_crash_is_unhealthy_and_the_restart_healthy_around_the_invokes(
    stdio_gateway: LocalGateway, http: requests.Session
) -> None:
    with live(stdio_gateway) as reader:
        assert stdio_invoke(http, stdio_gateway, "crash", code=7) == 502
        assert stdio_invoke(http, stdio_gateway, "echo", text="back") == 200
        events = kinds(reader, 4)
    assert [(name, data.get("status") or data["outcome"]) for name, data in events] == [
        ("server_health", "unhealthy"),
        ("tool_invoked", "error"),
        ("server_health", "healthy"),
        ("tool_invoked", "success"),
    ]
    assert {data["server"] for _, data in events} == {"demo"}


def test_a_stdio_server_added_to_a_running_gateway_and_removed(
    gateway: LocalGateway,
) -> None:
    with live(gateway) as reader:
        gateway.add_stdio_server("hosted", DEMO, env=child_env())
        gateway.remove_server("hosted")
        assert kinds(reader, 3) == [
            ("server_registered", {"server": "hosted"}),
            ("server_health", {"server": "hosted", "status": "healthy"}),
            ("server_unregistered", {"server": "hosted"}),
        ]


def test_a_stdio_server_that_cannot_start_is_registered_then_unregistered(
    gateway: LocalGateway,
) -> None:
    with live(gateway) as reader:
        with pytest.raises(sark_sync.GatewayError):
            gateway.add_stdio_server("broken", [sys.executable, "-c", "raise SystemExit(3)"],
                                startup_timeout=5)
        gateway.publish_event("marker", {})
        assert [(name, data.get("server")) for name, data in kinds(reader, 4)] == [
            ("server_registered", "broken"),
            ("server_health", "broken"),
            ("server_unregistered", "broken"),
            ("marker", None),
        ]
