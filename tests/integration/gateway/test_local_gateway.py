"""LocalGateway over real loopback sockets: the SARK Gateway API v1 (endpoints,
authentication, pagination, validation, the error envelope), request recording, keep-alive
and shutdown. Tests talk plain HTTP (``requests``, or a raw socket where framing matters), so
they pin the gateway's behaviour independently of sark_sync's client.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any, Callable

import pytest
import requests
from local_gateway_helpers import AUTH, error_of, gateway_threads, invoke, raw_exchange
from support import API_KEY, OTHER_KEY, WAIT, build_gateway, wait_for

from sark_sync.testing import Fault, LocalGateway, ToolFailure


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    return make_gateway("local_gateway")


# -- /health ---------------------------------------------------------------------------------


def test_health_needs_no_api_key(gateway: LocalGateway, http: requests.Session) -> None:
    response = http.get(f"{gateway.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "version": "0.1.0-local", "servers": 2}
    assert response.headers["Content-Length"] == str(len(response.content))


def test_health_answers_503_with_the_same_shape_when_unhealthy(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.set_health("unhealthy")
    response = http.get(f"{gateway.url}/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "version": "0.1.0-local", "servers": 2}
    gateway.set_health("healthy")
    assert http.get(f"{gateway.url}/health").status_code == 200
    with pytest.raises(ValueError):
        gateway.set_health("sick")


# -- servers ---------------------------------------------------------------------------------


def test_list_servers_returns_server_info_items(
    gateway: LocalGateway, http: requests.Session
) -> None:
    response = http.get(f"{gateway.url}/api/v1/servers", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["offset"], body["limit"]) == (2, 0, 100)
    demo, data = body["servers"]
    assert set(demo) == {
        "server_id",
        "server_name",
        "server_url",
        "transport",
        "sensitivity_level",
        "authorized_teams",
        "health_status",
        "tools_count",
        "created_at",
        "updated_at",
    }
    assert (demo["server_name"], demo["transport"], demo["tools_count"]) == ("demo", "stdio", 2)
    assert (data["server_name"], data["sensitivity_level"]) == ("data-mcp", "high")
    assert data["authorized_teams"] == ["data"] and data["health_status"] == "healthy"
    assert uuid.UUID(demo["server_id"]) and demo["created_at"].endswith("Z")


def test_add_server_returns_the_server_info_the_api_serves(
    gateway: LocalGateway, http: requests.Session
) -> None:
    info = gateway.add_server(
        "pg", transport="sse", sensitivity_level="critical", health_status="degraded"
    )
    assert http.get(f"{gateway.url}/api/v1/servers/pg", headers=AUTH).json() == info
    assert (info["transport"], info["health_status"], info["tools_count"]) == ("sse", "degraded", 0)


@pytest.mark.parametrize(
    ("query", "names", "offset", "limit"),
    [
        ("offset=0&limit=2", ["s0", "s1"], 0, 2),
        ("offset=2&limit=2", ["s2", "s3"], 2, 2),
        ("offset=4&limit=2", ["s4"], 4, 2),
        ("offset=5", [], 5, 100),
        ("offset=99&limit=1000", [], 99, 1000),
        ("limit=1", ["s0"], 0, 1),
    ],
)
def test_servers_paginate_by_offset_and_limit(
    http: requests.Session, query: str, names: list[str], offset: int, limit: int
) -> None:
    with LocalGateway(api_keys=()) as gateway:
        for i in range(5):
            gateway.add_server(f"s{i}")
        body = http.get(f"{gateway.url}/api/v1/servers?{query}").json()
    assert [s["server_name"] for s in body["servers"]] == names
    assert (body["total"], body["offset"], body["limit"]) == (5, offset, limit)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "offset=-1",
        "offset=1.5",
        "limit=ten",
        "limit=",
        "offset=%2B1",
        "limit=%201",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/servers", "/api/v1/tools"])
def test_pagination_out_of_bounds_is_invalid_request(
    gateway: LocalGateway, http: requests.Session, path: str, query: str
) -> None:
    error_of(http.get(f"{gateway.url}{path}?{query}", headers=AUTH), 400, "invalid_request")


def test_raw_server_items_are_listed_as_is(gateway: LocalGateway, http: requests.Session) -> None:
    gateway.add_raw_server({"server_name": 7, "junk": True})
    gateway.add_raw_server("not an object")
    body = http.get(f"{gateway.url}/api/v1/servers?offset=1", headers=AUTH).json()
    assert body["total"] == 4
    assert body["servers"][1:] == [{"server_name": 7, "junk": True}, "not an object"]
    assert http.get(f"{gateway.url}/health").json()["servers"] == 4


def test_get_server_decodes_the_url_encoded_name(
    gateway: LocalGateway, http: requests.Session
) -> None:
    response = http.get(f"{gateway.url}/api/v1/servers/data%2Dmcp", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["server_name"] == "data-mcp"


@pytest.mark.parametrize("raw", ["a%2Fb", "%2E%2E", ".hidden", "a%20b", "a/b", "x" * 129])
def test_get_server_with_an_invalid_name_is_invalid_request(
    gateway: LocalGateway, http: requests.Session, raw: str
) -> None:
    error_of(http.get(f"{gateway.url}/api/v1/servers/{raw}", headers=AUTH), 400, "invalid_request")


def test_unknown_and_removed_servers_are_not_found(
    gateway: LocalGateway, http: requests.Session
) -> None:
    error_of(http.get(f"{gateway.url}/api/v1/servers/nope", headers=AUTH), 404, "not_found")
    gateway.remove_server("demo")
    error_of(http.get(f"{gateway.url}/api/v1/servers/demo", headers=AUTH), 404, "not_found")
    error_of(invoke(http, gateway), 404, "not_found")
    with pytest.raises(KeyError):
        gateway.remove_server("demo")


# -- tools -----------------------------------------------------------------------------------


def test_list_tools_returns_tool_info_of_every_server(
    gateway: LocalGateway, http: requests.Session
) -> None:
    body = http.get(f"{gateway.url}/api/v1/tools", headers=AUTH).json()
    assert (body["total"], body["offset"], body["limit"]) == (3, 0, 100)
    assert [(t["server_name"], t["tool_name"]) for t in body["tools"]] == [
        ("demo", "echo"),
        ("demo", "text"),
        ("data-mcp", "query"),
    ]
    assert body["tools"][0] == {
        "tool_name": "echo",
        "server_name": "demo",
        "description": "Echo the parameters.",
        "sensitivity_level": "low",
        "input_schema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
        "sensitive_params": [],
    }
    assert body["tools"][2]["description"] == "Run a query."
    assert body["tools"][2]["sensitive_params"] == ["password"]


def test_list_tools_filters_by_server_and_paginates(
    gateway: LocalGateway, http: requests.Session
) -> None:
    body = http.get(f"{gateway.url}/api/v1/tools?server=demo&offset=1&limit=1", headers=AUTH).json()
    assert [t["tool_name"] for t in body["tools"]] == ["text"]
    assert (body["total"], body["offset"], body["limit"]) == (2, 1, 1)


def test_list_tools_of_an_unknown_server_is_not_found(
    gateway: LocalGateway, http: requests.Session
) -> None:
    error_of(http.get(f"{gateway.url}/api/v1/tools?server=nope", headers=AUTH), 404, "not_found")
    error_of(
        http.get(f"{gateway.url}/api/v1/tools?server=a%2Fb", headers=AUTH), 400, "invalid_request"
    )


def test_add_tool_validates_its_arguments(gateway: LocalGateway) -> None:
    with pytest.raises(KeyError):
        gateway.add_tool("nope", "t", lambda p: p)
    with pytest.raises(ValueError):
        gateway.add_tool("demo", "bad name", lambda p: p)
    with pytest.raises(ValueError):
        gateway.add_tool("demo", "echo", lambda p: p)
    with pytest.raises(ValueError):
        gateway.add_server("demo")
    with pytest.raises(ValueError):
        gateway.add_server("x", transport="carrier-pigeon")


# -- invoke ----------------------------------------------------------------------------------


class _Unserialisable:
    pass


@pytest.mark.parametrize(
    ("returned", "result"),
    [
        ("hi", {"content": [{"type": "text", "text": "hi"}], "isError": False}),
        (
            {"a": 1},
            {
                "content": [{"type": "text", "text": '{"a": 1}'}],
                "isError": False,
                "structuredContent": {"a": 1},
            },
        ),
        ([1, 2], {"content": [{"type": "text", "text": "[1, 2]"}], "isError": False}),
        (None, {"content": [{"type": "text", "text": "null"}], "isError": False}),
        (
            {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]},
            {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]},
        ),
    ],
)
def test_invoke_shapes_the_return_value_as_a_call_tool_result(
    gateway: LocalGateway, http: requests.Session, returned: object, result: dict[str, Any]
) -> None:
    gateway.add_tool("demo", "shaped", lambda parameters: returned)
    response = invoke(http, gateway, "shaped", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200
    assert response.json() == {
        "request_id": "req-1",
        "server": "demo",
        "tool": "shaped",
        "result": result,
        "filtered": [],
    }


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ToolFailure("the disk is full"), "the disk is full"),
        (RuntimeError("boom"), "boom"),
        (KeyError("k"), "'k'"),
        (ValueError(), "ValueError"),
    ],
)
def test_a_raising_tool_is_an_error_result_with_status_200(
    gateway: LocalGateway, http: requests.Session, exc: Exception, text: str
) -> None:
    def failing(parameters: dict[str, Any]) -> object:
        raise exc

    gateway.add_tool("demo", "failing", failing)
    response = invoke(http, gateway, "failing")
    assert response.status_code == 200
    assert response.json()["result"] == {
        "content": [{"type": "text", "text": text}],
        "isError": True,
    }
    assert gateway.tool_runs("demo", "failing") == 1


def test_a_non_json_return_value_is_an_error_result(
    gateway: LocalGateway, http: requests.Session
) -> None:
    gateway.add_tool("demo", "odd", lambda parameters: _Unserialisable())
    result = invoke(http, gateway, "odd").json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("tool returned a value that is not JSON")


def test_invoke_passes_the_parameters_and_counts_runs(
    gateway: LocalGateway, http: requests.Session
) -> None:
    response = invoke(http, gateway, "text", {"name": "ada"})
    assert response.json()["result"]["content"] == [{"type": "text", "text": "hello ada"}]
    query = invoke(http, gateway, "query", server="data-mcp")
    assert query.json()["result"]["structuredContent"] == {"rows": [[1]]}
    assert (gateway.tool_runs("demo", "text"), gateway.tool_runs("demo", "echo")) == (1, 0)
    assert gateway.tool_runs("data-mcp", "query") == 1
    assert gateway.tool_runs("nope", "nothing") == 0


def test_invoke_without_parameters_passes_an_empty_dict(
    gateway: LocalGateway, http: requests.Session
) -> None:
    body = {"server": "demo", "tool": "echo"}
    response = http.post(f"{gateway.url}/api/v1/invoke", json=body, headers=AUTH)
    assert response.json()["result"]["structuredContent"] == {}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"\xff\xfe\x00",
        b"[]",
        b'"demo"',
        b'{"tool": "echo", "parameters": {}}',
        b'{"server": "demo", "parameters": {}}',
        b'{"server": 1, "tool": "echo"}',
        b'{"server": "demo", "tool": "echo", "parameters": []}',
        b'{"server": "demo", "tool": "echo", "parameters": "x"}',
        b'{"server": "../etc", "tool": "echo"}',
        b'{"server": "demo", "tool": "a b"}',
    ],
)
def test_malformed_invocations_are_invalid_requests(
    gateway: LocalGateway, http: requests.Session, body: bytes
) -> None:
    response = http.post(f"{gateway.url}/api/v1/invoke", data=body, headers=AUTH)
    error_of(response, 400, "invalid_request")
    assert gateway.tool_runs("demo", "echo") == 0


@pytest.mark.parametrize(("server", "tool"), [("nope", "echo"), ("demo", "nope")])
def test_invoking_an_unknown_server_or_tool_is_not_found(
    gateway: LocalGateway, http: requests.Session, server: str, tool: str
) -> None:
    error = error_of(invoke(http, gateway, tool, server=server), 404, "not_found")
    assert repr("nope") in error["message"]


# -- authentication and errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/servers"),
        ("GET", "/api/v1/servers/demo"),
        ("GET", "/api/v1/tools"),
        ("POST", "/api/v1/invoke"),
        ("GET", "/api/v1/events"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key", API_KEY + "x", "", "clé"])
def test_api_routes_need_a_valid_api_key(
    gateway: LocalGateway, http: requests.Session, method: str, path: str, key: str | None
) -> None:
    headers = {"X-Request-ID": "rid-401"}
    if key is not None:
        headers["X-API-Key"] = key
    body = {"server": "demo", "tool": "echo", "parameters": {}}
    response = http.request(method, f"{gateway.url}{path}", json=body, headers=headers)
    error = error_of(response, 401, "unauthenticated")
    assert error["request_id"] == "rid-401"
    assert (key or "<none>") not in response.text or key in ("", "wrong-key")
    assert gateway.tool_runs("demo", "echo") == 0


def test_every_configured_api_key_is_accepted(
    make_gateway: Callable[..., LocalGateway], http: requests.Session
) -> None:
    gateway = make_gateway("local_gateway", api_keys=(API_KEY, OTHER_KEY))
    for key in (API_KEY, OTHER_KEY):
        assert http.get(f"{gateway.url}/api/v1/servers", headers={"X-API-Key": key}).ok


def test_no_api_key_is_needed_when_none_is_configured(http: requests.Session) -> None:
    with LocalGateway(api_keys=()) as gateway:
        gateway.add_server("demo")
        assert http.get(f"{gateway.url}/api/v1/servers").status_code == 200
        any_key = {"X-API-Key": "any"}
        assert http.get(f"{gateway.url}/api/v1/servers", headers=any_key).status_code == 200


def test_error_request_id_echoes_x_request_id_or_is_a_fresh_uuid4(
    gateway: LocalGateway, http: requests.Session
) -> None:
    echoed = error_of(
        http.get(f"{gateway.url}/api/v1/servers/nope", headers={**AUTH, "X-Request-ID": "abc-123"}),
        404,
        "not_found",
    )
    assert echoed["request_id"] == "abc-123"
    nope = f"{gateway.url}/api/v1/servers/nope"
    first = error_of(http.get(nope, headers=AUTH), 404, "not_found")
    second = error_of(http.get(nope, headers=AUTH), 404, "not_found")
    assert uuid.UUID(first["request_id"]).version == 4
    assert first["request_id"] != second["request_id"]
    assert [r.request_id for r in gateway.requests] == [
        "abc-123",
        first["request_id"],
        second["request_id"],
    ]


def test_user_tokens_are_verified_when_sent(gateway: LocalGateway, http: requests.Session) -> None:
    good = gateway.issue_token("alice", roles=("developer",), teams=("data",))
    assert gateway.verify_token(good)["sub"] == "alice"
    assert invoke(http, gateway, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert http.get(
        f"{gateway.url}/api/v1/servers", headers={**AUTH, "Authorization": f"bearer {good}"}
    ).ok
    expired = gateway.issue_token(ttl=-10)
    forged = LocalGateway(jwt_secret="another-secret").issue_token()
    for authorization in (
        f"Bearer {expired}",
        f"Bearer {forged}",
        "Bearer not.a.jwt",
        f"Basic {good}",
        "Bearer ",
    ):
        response = invoke(http, gateway, headers={"Authorization": authorization})
        error_of(response, 401, "unauthenticated")
        assert good not in response.text and expired not in response.text
    assert gateway.tool_runs("demo", "echo") == 1


def test_require_user_token_makes_invoke_need_a_jwt(http: requests.Session) -> None:
    with build_gateway("local_gateway", require_user_token=True) as gateway:
        error_of(invoke(http, gateway), 401, "unauthenticated")
        assert http.get(f"{gateway.url}/api/v1/servers", headers=AUTH).status_code == 200
        token = gateway.issue_token("bob", roles=("admin",), teams=(), tenant="acme")
        assert gateway.verify_token(token)["tenant"] == "acme"
        bearer = {"Authorization": f"Bearer {token}"}
        assert invoke(http, gateway, headers=bearer).status_code == 200


def test_oversized_bodies_are_payload_too_large_and_close_the_connection(
    http: requests.Session,
) -> None:
    with build_gateway("local_gateway", max_request_bytes=1000) as gateway:
        big = {"server": "demo", "tool": "echo", "parameters": {"x": "y" * 2000}}
        response = http.post(f"{gateway.url}/api/v1/invoke", json=big, headers=AUTH)
        error_of(response, 413, "payload_too_large")
        assert response.headers["Connection"] == "close"
        assert gateway.tool_runs("demo", "echo") == 0
        assert gateway.requests[-1].body == b""
        assert invoke(http, gateway, parameters={"x": "y" * 900}).status_code == 200
        assert gateway.connections_accepted == 2


def test_chunked_request_bodies_are_read(gateway: LocalGateway, http: requests.Session) -> None:
    parts = [b'{"server": "demo", ', b'"tool": "echo", ', b'"parameters": {"n": 1}}']
    response = http.post(f"{gateway.url}/api/v1/invoke", data=iter(parts), headers=AUTH)
    assert response.json()["result"]["structuredContent"] == {"n": 1}
    assert gateway.requests[-1].headers["Transfer-Encoding"] == "chunked"
    assert gateway.requests[-1].body == b"".join(parts)


def test_unknown_paths_are_not_found_and_wrong_methods_not_allowed(
    gateway: LocalGateway, http: requests.Session
) -> None:
    error_of(http.get(f"{gateway.url}/nope"), 404, "not_found")
    error_of(http.get(f"{gateway.url}/api/v1/nope", headers=AUTH), 404, "not_found")
    response = http.get(f"{gateway.url}/api/v1/invoke", headers=AUTH)
    error_of(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"
    response = http.delete(f"{gateway.url}/api/v1/servers/demo", headers=AUTH)
    assert (
        error_of(response, 405, "method_not_allowed") and response.headers["Allow"] == "GET, HEAD"
    )


def test_head_gets_headers_without_a_body_on_a_kept_alive_connection(
    gateway: LocalGateway, http: requests.Session
) -> None:
    head = http.head(f"{gateway.url}/health")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(http.get(f"{gateway.url}/health").content)
    assert gateway.connections_accepted == 1


def test_requests_are_recorded_in_order_with_their_details(
    gateway: LocalGateway, http: requests.Session
) -> None:
    http.get(f"{gateway.url}/api/v1/tools?server=demo&limit=5", headers=AUTH)
    invoke(http, gateway, parameters={"a": 1}, headers={"Idempotency-Key": "k1"})
    first, second = gateway.requests
    assert (first.method, first.path, first.query) == (
        "GET",
        "/api/v1/tools",
        {"server": "demo", "limit": "5"},
    )
    assert first.body == b"" and first.headers["x-api-key"] == API_KEY
    assert (second.method, second.path, second.query) == ("POST", "/api/v1/invoke", {})
    assert second.json() == {"server": "demo", "tool": "echo", "parameters": {"a": 1}}
    assert second.headers["IDEMPOTENCY-KEY"] == "k1"
    assert "Idempotency-Key" in list(second.headers)
    assert first.received_at <= second.received_at <= time.monotonic()
    assert API_KEY not in repr(second) and "[secure]" in repr(second)
    gateway.clear_requests()
    assert gateway.requests == []


# -- connections and lifecycle ---------------------------------------------------------------


def test_keep_alive_serves_many_requests_over_one_connection(
    gateway: LocalGateway, http: requests.Session
) -> None:
    for _ in range(20):
        assert http.get(f"{gateway.url}/api/v1/servers", headers=AUTH).status_code == 200
        assert invoke(http, gateway).status_code == 200
    counts = (gateway.connections_accepted, gateway.max_open_connections,
              gateway.open_connections)
    assert counts == (1, 1, 1)


def test_keep_alive_adds_no_nagle_stall(gateway: LocalGateway, http: requests.Session) -> None:
    http.get(f"{gateway.url}/health")
    started = time.perf_counter()
    for _ in range(200):
        http.get(f"{gateway.url}/health")
    assert time.perf_counter() - started < 2.0
    assert gateway.connections_accepted == 1


def test_responses_are_written_in_one_piece_with_content_length(gateway: LocalGateway) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_exchange(gateway, request)
    assert status == 200 and headers["content-length"] == str(len(body))
    assert headers["connection"] == "close" and json.loads(body)["status"] == "healthy"


def test_a_malformed_request_line_gets_the_json_envelope(gateway: LocalGateway) -> None:
    status, headers, body = raw_exchange(gateway, b"NONSENSE\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "invalid_request"


def test_stop_closes_idle_keep_alive_connections_and_joins_every_thread() -> None:
    gateway = build_gateway("local_gateway").start()
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        wait_for(lambda: gateway.open_connections == 1)
        assert len(gateway_threads()) == 2  # the accept loop and the idle connection
        gateway.stop()
        assert gateway_threads() == []
        assert gateway.open_connections == 0
        assert sock.recv(1) == b""
    gateway.stop()  # idempotent
    with pytest.raises(RuntimeError):
        gateway.start()


def test_url_needs_a_started_gateway() -> None:
    gateway = LocalGateway()
    with pytest.raises(RuntimeError):
        gateway.url  # noqa: B018 - the property raises
    assert (gateway.connections_accepted, gateway.open_connections,
            gateway.max_open_connections) == (0, 0, 0)
    gateway.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_only_loopback_hosts_are_accepted(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LocalGateway(host=host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2"])
def test_loopback_hosts_serve(host: str, http: requests.Session) -> None:
    with LocalGateway(host=host) as gateway:
        assert gateway.url.startswith(f"http://{'127.0.0.1' if host == 'localhost' else host}:")
        assert http.get(f"{gateway.url}/health").status_code == 200


def test_ipv6_loopback_serves(http: requests.Session) -> None:
    # The machines this project runs on (developers' and CI's) have IPv6 loopback.
    with LocalGateway(host="::1") as gateway:
        assert gateway.url.startswith("http://[::1]:")
        assert http.get(f"{gateway.url}/health").status_code == 200


def test_the_gateway_logs_nothing_to_stderr(
    gateway: LocalGateway, http: requests.Session, capfd: pytest.CaptureFixture[str]
) -> None:
    gateway.add_fault(Fault(drop=True))
    with pytest.raises(requests.ConnectionError):
        invoke(http, gateway)
    http.get(f"{gateway.url}/health")
    raw_exchange(gateway, b"BROKEN\r\n\r\n")
    assert capfd.readouterr().err == ""
