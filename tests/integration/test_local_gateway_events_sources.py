"""The events a LocalGateway emits by itself, seen on a real stream: ``tool_invoked`` for every
invoke that reached a tool (plain and hosted stdio servers), ``server_registered`` and
``server_unregistered`` from the catalogue, and ``server_health`` when a server's health
changes (a hosted stdio server crashing and restarting, :meth:`set_server_health`).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from local_gateway_helpers import AUTH, KEY, SECRET, build, error_of, invoke
from support import child_env
from test_local_gateway_events import EventReader

import sark_sync
from sark_sync.testing import LocalGateway

DEMO = [sys.executable, "-m", "sark_sync.testing.demo_server"]


@pytest.fixture
def gw() -> Iterator[LocalGateway]:
    with build() as gateway:
        gateway.add_server("faulty")

        @gateway.tool("faulty")
        def broken(parameters: dict[str, Any]) -> Any:
            raise RuntimeError("broken on purpose")

        yield gateway


@pytest.fixture
def stdio_gw() -> Iterator[LocalGateway]:
    gateway = LocalGateway(api_keys=(KEY,), jwt_secret=SECRET)
    gateway.add_stdio_server("demo", DEMO, env=child_env(), call_timeout=0.5)
    with gateway:
        yield gateway


def live(gw: LocalGateway, types: str | None = None) -> EventReader:
    """A stream of the events published from now on."""
    return EventReader(gw.url, last_event_id=gw.last_event_id, types=types)


def kinds(reader: EventReader, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [(event.event, event.json()) for event in reader.take(count)]


def stdio_invoke(http: requests.Session, gw: LocalGateway, tool: str, **params: Any) -> int:
    body = {"server": "demo", "tool": tool, "parameters": params}
    return http.post(f"{gw.url}/api/v1/invoke", json=body, headers=AUTH).status_code


# -- tool_invoked ----------------------------------------------------------------------------


def test_an_invoke_publishes_tool_invoked_with_its_request_id_and_outcome_success(
    gw: LocalGateway, http: requests.Session
) -> None:
    with live(gw) as reader:
        assert invoke(http, gw, headers={"X-Request-ID": "rid-1"}).status_code == 200
        event = reader.take(1)[0]
    assert (event.event, event.id) == ("tool_invoked", gw.last_event_id)
    data = event.json()
    latency = data.pop("latency_ms")
    assert data == {"request_id": "rid-1", "server": "demo", "tool": "echo",
                    "principal": None, "outcome": "success"}
    assert isinstance(latency, float) and 0 <= latency < 5000


def test_the_principal_is_the_sub_of_the_user_jwt(
    gw: LocalGateway, http: requests.Session
) -> None:
    token = gw.issue_token("bob", roles=("admin",))
    with live(gw) as reader:
        invoke(http, gw, headers={"Authorization": f"Bearer {token}"})
        assert reader.take(1)[0].json()["principal"] == "bob"


def test_a_tool_error_result_is_outcome_tool_error(
    gw: LocalGateway, http: requests.Session
) -> None:
    with live(gw) as reader:
        response = invoke(http, gw, "broken", server="faulty")
        assert response.json()["result"]["isError"] is True
        data = reader.take(1)[0].json()
    assert (data["server"], data["tool"], data["outcome"]) == ("faulty", "broken", "tool_error")


def test_requests_that_reach_no_tool_publish_nothing(
    gw: LocalGateway, http: requests.Session
) -> None:
    with live(gw) as reader:
        error_of(invoke(http, gw, "nope"), 404, "not_found")
        error_of(invoke(http, gw, headers={"X-API-Key": "wrong"}), 401, "unauthenticated")
        error_of(invoke(http, gw, parameters=[1]), 400, "invalid_request")
        key = {"Idempotency-Key": str(uuid.uuid4())}
        assert invoke(http, gw, headers=key).status_code == 200
        replayed = invoke(http, gw, headers=key)
        assert replayed.headers["Idempotent-Replayed"] == "true"
        gw.publish_event("marker", {})
        assert [name for name, _ in kinds(reader, 2)] == ["tool_invoked", "marker"]


def test_stdio_invokes_publish_success_tool_error_and_error_for_504(
    stdio_gw: LocalGateway, http: requests.Session
) -> None:
    with live(stdio_gw, types="tool_invoked") as reader:
        assert stdio_invoke(http, stdio_gw, "echo", text="hi") == 200
        assert stdio_invoke(http, stdio_gw, "fail") == 200
        assert stdio_invoke(http, stdio_gw, "slow", seconds=10) == 504
        outcomes = [(data["tool"], data["outcome"]) for _, data in kinds(reader, 3)]
    assert outcomes == [("echo", "success"), ("fail", "tool_error"), ("slow", "error")]


# -- the catalogue ---------------------------------------------------------------------------


def test_adding_and_removing_servers_publishes_registered_and_unregistered(
    gw: LocalGateway,
) -> None:
    with live(gw) as reader:
        gw.add_server("fresh")
        gw.remove_server("fresh")
        gw.remove_server("demo")
        with pytest.raises(KeyError):
            gw.remove_server("demo")
        with pytest.raises(ValueError):
            gw.add_server("data-mcp")  # a duplicate: nothing published
        gw.publish_event("marker", {})
        assert kinds(reader, 4) == [
            ("server_registered", {"server": "fresh"}),
            ("server_unregistered", {"server": "fresh"}),
            ("server_unregistered", {"server": "demo"}),
            ("marker", {}),
        ]


def test_servers_added_before_start_are_in_the_replay(http: requests.Session) -> None:
    with build() as gw, EventReader(gw.url, last_event_id=0) as reader:
        assert kinds(reader, 2) == [
            ("server_registered", {"server": "demo"}),
            ("server_registered", {"server": "data-mcp"}),
        ]


def test_a_fresh_stream_does_not_get_the_events_of_servers_added_before_it() -> None:
    with build() as gw, EventReader(gw.url) as reader:
        assert gw.last_event_id >= 2  # the two registrations, at least
        assert reader.opening() == b"retry: 1000\nid: %d\n\n" % gw.last_event_id
        gw.add_server("later")
        assert kinds(reader, 1) == [("server_registered", {"server": "later"})]


def test_set_server_health_publishes_server_health_when_it_changes(
    gw: LocalGateway, http: requests.Session
) -> None:
    with live(gw) as reader:
        gw.set_server_health("demo", "degraded")
        gw.set_server_health("demo", "degraded")  # no change, no event
        gw.set_health("unhealthy")  # the gateway's own health: not a server's
        gw.set_server_health("demo", "healthy")
        gw.publish_event("marker", {})
        assert kinds(reader, 3) == [
            ("server_health", {"server": "demo", "status": "degraded"}),
            ("server_health", {"server": "demo", "status": "healthy"}),
            ("marker", {}),
        ]
    info = http.get(f"{gw.url}/api/v1/servers/demo", headers=AUTH).json()
    assert info["health_status"] == "healthy"
    with pytest.raises(KeyError):
        gw.set_server_health("nope", "healthy")
    with pytest.raises(ValueError):
        gw.set_server_health("demo", "sick")


# -- hosted stdio servers --------------------------------------------------------------------


def test_a_stdio_server_is_registered_then_healthy_when_it_starts(
    stdio_gw: LocalGateway,
) -> None:
    with EventReader(stdio_gw.url, last_event_id=0) as reader:
        assert kinds(reader, 2) == [
            ("server_registered", {"server": "demo"}),
            ("server_health", {"server": "demo", "status": "healthy"}),
        ]
    with pytest.raises(ValueError):
        stdio_gw.set_server_health("demo", "healthy")


def test_a_crash_is_unhealthy_and_the_restart_healthy_around_the_invokes(
    stdio_gw: LocalGateway, http: requests.Session
) -> None:
    with live(stdio_gw) as reader:
        assert stdio_invoke(http, stdio_gw, "crash", code=7) == 502
        assert stdio_invoke(http, stdio_gw, "echo", text="back") == 200
        events = kinds(reader, 4)
    assert [(name, data.get("status") or data["outcome"]) for name, data in events] == [
        ("server_health", "unhealthy"),
        ("tool_invoked", "error"),
        ("server_health", "healthy"),
        ("tool_invoked", "success"),
    ]
    assert {data["server"] for _, data in events} == {"demo"}


def test_a_stdio_server_added_to_a_running_gateway_and_removed(
    gw: LocalGateway,
) -> None:
    with live(gw) as reader:
        gw.add_stdio_server("hosted", DEMO, env=child_env())
        gw.remove_server("hosted")
        assert kinds(reader, 3) == [
            ("server_registered", {"server": "hosted"}),
            ("server_health", {"server": "hosted", "status": "healthy"}),
            ("server_unregistered", {"server": "hosted"}),
        ]


def test_a_stdio_server_that_cannot_start_is_registered_then_unregistered(
    gw: LocalGateway,
) -> None:
    with live(gw) as reader:
        with pytest.raises(sark_sync.GatewayError):
            gw.add_stdio_server("broken", [sys.executable, "-c", "raise SystemExit(3)"],
                                startup_timeout=5)
        gw.publish_event("marker", {})
        assert [(name, data.get("server")) for name, data in kinds(reader, 4)] == [
            ("server_registered", "broken"),
            ("server_health", "broken"),
            ("server_unregistered", "broken"),
            ("marker", None),
        ]
