"""The client's authorization pre-check against an OPA-compatible Data API over 127.0.0.1,
and the gateway's own denials (docs/gateway/AUTHORIZATION.md).

:class:`OPAStandIn` serves ``POST /v1/data/<path>`` from a ``http.server`` thread (keep-alive,
TCP_NODELAY) and evaluates :func:`gateway_rule`, a small Python rule (roles against
sensitivity levels, team restrictions, sensitive keys removed at any depth) or a scripted
answer: what a real OPA never sends (garbage, a 500 on demand, a slow answer) and rules a
test needs. The real engine with the shipped policy is test_client_authorization_opa.py.
Every test asserts what the LocalGateway received, from its request log.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from support import wait_for

import sark_sync
from sark_sync.governance import OPAAuthorizer
from sark_sync.testing import Fault, LocalGateway

LEVELS = ("low", "medium", "high", "critical")
#: The highest sensitivity level each role may use.
ROLE_CEILING = {"intern": "low", "developer": "medium", "analyst": "high", "admin": "critical"}
SENSITIVE = ("password", "secret", "token", "api_key", "apikey", "credentials", "private_key")

Rule = Callable[[Mapping[str, Any]], Any]


def _strip(value: Any, extra: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, extra) for k, v in value.items()
                if not any(s in k.lower() for s in SENSITIVE) and k not in extra}
    if isinstance(value, list):
        return [_strip(item, extra) for item in value]
    return value


def gateway_rule(document: Mapping[str, Any], cache_ttl: int = 0) -> Any:
    """The decision object for an input document (None: undefined)."""
    principal, server, tool = document["principal"], document["server"], document["tool"]
    level = max(LEVELS.index(server["sensitivity_level"]), LEVELS.index(tool["sensitivity_level"]))
    ceiling = max((LEVELS.index(ROLE_CEILING[r]) for r in principal["roles"]
                   if r in ROLE_CEILING), default=-1)
    teams = server["authorized_teams"]
    if ceiling < level:
        return {"allow": False, "reason": f"sensitivity {LEVELS[level]} needs a higher role",
                "cache_ttl": cache_ttl}
    if teams and not set(teams) & set(principal["teams"]):
        return {"allow": False, "reason": f"restricted to teams {', '.join(teams)}",
                "cache_ttl": cache_ttl}
    filtered = _strip(document["parameters"], tuple(tool["sensitive_params"]))
    return {"allow": True, "reason": "allowed", "filtered_parameters": filtered,
            "cache_ttl": cache_ttl}


class OPAStandIn:
    """An OPA Data API on 127.0.0.1 that answers with ``rule(input)``, or a scripted answer.

    ``rule`` returns the ``result`` (None: undefined, ``{}`` answered). ``raw`` replaces the
    answer with ``(status, body bytes)``; ``delay`` waits before answering. ``inputs`` records
    every input document, ``paths`` every request path.
    """

    def __init__(self, rule: Rule = gateway_rule) -> None:
        self.rule = rule
        self.raw: tuple[int, bytes] | None = None
        self.delay = 0.0
        self.inputs: list[Any] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._stopping = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with stand_in._lock:
                    stand_in._connections.append(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = stand_in._answer(self.path, body)
                if stand_in.delay:
                    stand_in._stopping.wait(stand_in.delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="opa-stand-in")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        document = json.loads(body)["input"]
        with self._lock:
            self.paths.append(path)
            self.inputs.append(document)
        if self.raw is not None:
            return self.raw
        result = self.rule(document)
        return 200, json.dumps({} if result is None else {"result": result}).encode()

    def __enter__(self) -> OPAStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._thread.join(5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()


# -- fixtures --------------------------------------------------------------------------------


def _public_and_finance(gateway: LocalGateway) -> None:
    def echo(parameters: dict[str, Any]) -> Any:
        return {"received": parameters}

    gateway.add_server("public", sensitivity_level="low")
    gateway.add_server("finance", sensitivity_level="high", authorized_teams=("finance",))
    gateway.add_tool("public", "echo", echo)
    gateway.add_tool("finance", "pay", echo, sensitivity_level="high",
                     sensitive_params=("card",))


@pytest.fixture
def gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """``public`` (low, tool ``echo``) and ``finance`` (high, team finance, tool ``pay`` with
    ``card`` sensitive); both tools answer ``{"received": parameters}``."""
    return make_gateway(_public_and_finance)


@pytest.fixture
def opa() -> Iterator[OPAStandIn]:
    with OPAStandIn() as stand_in:
        yield stand_in


Make = Callable[..., sark_sync.GatewayClient]


def invokes(gateway: LocalGateway) -> list[Any]:
    return [r.json() for r in gateway.requests if r.path == "/api/v1/invoke"]


def received(result: sark_sync.ToolResult) -> Any:
    return result.json()["received"]


# -- deny and allow ------------------------------------------------------------------------------


def test_a_pre_check_deny_raises_the_policys_reason_and_sends_no_invoke(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    token = gateway.issue_token("ian", roles=("intern",), teams=("finance",))
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("finance", "pay", {"amount": 5}, user_token=token)
    assert info.value.reason == "sensitivity high needs a higher role"
    assert (info.value.code, info.value.status_code, info.value.server) == (
        "policy_denied", None, "finance")
    assert invokes(gateway) == [] and gateway.tool_runs("finance", "pay") == 0
    assert opa.paths == ["/v1/data/sark/gateway/decision"]
    assert opa.inputs[0]["principal"] == {"id": "ian", "roles": ["intern"], "teams": ["finance"]}
    assert token not in json.dumps(opa.inputs[0])


def test_the_input_document_carries_the_gateways_metadata(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    client.invoke_tool("finance", "pay", {"amount": 5},
                       principal=sark_sync.Principal("ann", ("analyst",), ("finance",)))
    [document] = opa.inputs
    request_id = document["context"].pop("request_id")
    assert document["context"].pop("timestamp").endswith("Z")
    assert document == {
        "action": "gateway:tool:invoke",
        "principal": {"id": "ann", "roles": ["analyst"], "teams": ["finance"]},
        "server": {"name": "finance", "sensitivity_level": "high",
                   "authorized_teams": ["finance"]},
        "tool": {"name": "pay", "sensitivity_level": "high", "sensitive_params": ["card"],
                 "annotations": {"readOnlyHint": False, "destructiveHint": True,
                                 "idempotentHint": False, "openWorldHint": True}},
        "parameters": {"amount": 5},
        "context": {},
    }
    [invoke] = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert invoke.headers["X-Request-ID"] == request_id


def test_team_restrictions_deny_outsiders(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    with pytest.raises(sark_sync.AuthorizationDenied, match="restricted to teams finance"):
        client.invoke_tool("finance", "pay", {},
                           principal=sark_sync.Principal("ann", ("admin",), ("data",)))
    assert invokes(gateway) == []


def test_without_a_principal_the_policy_decides_for_nobody(
    gateway: LocalGateway, make_client: Make
) -> None:
    def anonymous_low_only(document: Mapping[str, Any]) -> Any:
        nobody = document["principal"] == {"id": None, "roles": [], "teams": []}
        return {"allow": nobody and document["server"]["sensitivity_level"] == "low"}

    with OPAStandIn(anonymous_low_only) as opa:
        client = make_client(authorizer=OPAAuthorizer(opa.url))
        assert received(client.invoke_tool("public", "echo", {"a": 1})) == {"a": 1}
        with pytest.raises(sark_sync.AuthorizationDenied):
            client.invoke_tool("finance", "pay", {})
    assert len(invokes(gateway)) == 1


# -- the gateway's own denial ------------------------------------------------------------------


def test_a_gateway_403_with_the_pre_check_off_is_one_request_and_no_breaker_count(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    for _ in range(6):  # more than the breaker's threshold
        gateway.add_fault(Fault(status=403))
        with pytest.raises(sark_sync.AuthorizationDenied) as info:
            client.invoke_tool("public", "echo", {"a": 1})
        assert info.value.status_code == 403 and info.value.reason == "injected fault"
        assert info.value.audit_id and info.value.attempts == 1
    assert len(invokes(gateway)) == 6  # one request each: never retried
    breaker = client.breaker_for("public")
    assert (breaker.state, breaker.failure_count) == ("closed", 0)
    assert received(client.invoke_tool("public", "echo", {"a": 2})) == {"a": 2}


def test_a_gateway_403_after_a_pre_check_allow_is_a_denial_too(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    gateway.add_fault(Fault(status=403))
    with pytest.raises(sark_sync.AuthorizationDenied) as info:
        client.invoke_tool("public", "echo", {}, principal=sark_sync.Principal("a", ("admin",)))
    assert info.value.status_code == 403 and len(invokes(gateway)) == 1


# -- parameter filtering ---------------------------------------------------------------------


def test_sensitive_keys_are_filtered_at_any_depth_before_they_leave_the_process(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    parameters = {
        "user": "alice", "password": "hunter2", "api_key": "k-1", "token": "t-1",
        "db": {"host": "h", "password": "p", "options": {"secret": "s", "ssl": True}},
        "items": [{"name": "a", "auth_token": "x"}, {"name": "b"}],
    }
    result = client.invoke_tool("public", "echo", parameters,
                                principal=sark_sync.Principal("dev", ("developer",)))
    expected = {"user": "alice", "db": {"host": "h", "options": {"ssl": True}},
                "items": [{"name": "a"}, {"name": "b"}]}
    assert received(result) == expected
    assert invokes(gateway) == [{"server": "public", "tool": "echo", "parameters": expected}]
    assert result.filtered == ("password", "api_key", "token", "db.password",
                               "db.options.secret", "items[0].auth_token")
    assert not any(secret in gateway.requests[-1].body for secret in (b"hunter2", b"k-1", b"t-1"))


def test_a_tools_sensitive_params_are_filtered(opa: OPAStandIn, make_client: Make) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    result = client.invoke_tool("finance", "pay", {"amount": 5, "card": "4111"},
                                principal=sark_sync.Principal("a", ("analyst",), ("finance",)))
    assert received(result) == {"amount": 5} and result.filtered == ("card",)


def test_when_every_parameter_is_filtered_the_tool_receives_an_empty_object(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    result = client.invoke_tool("public", "echo", {"password": "x", "token": "y"},
                                principal=sark_sync.Principal("dev", ("developer",)))
    assert received(result) == {}
    assert invokes(gateway)[0]["parameters"] == {}
    assert result.filtered == ("password", "token")


def test_null_filtered_parameters_send_the_parameters_unchanged(make_client: Make) -> None:
    with OPAStandIn(lambda document: {"allow": True, "filtered_parameters": None}) as opa:
        client = make_client(authorizer=OPAAuthorizer(opa.url))
        result = client.invoke_tool("public", "echo", {"password": "x"})
    assert received(result) == {"password": "x"} and result.filtered == ()


# -- fail closed, fail open --------------------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_engine_that_is_down_fails_closed(gateway: LocalGateway, make_client: Make) -> None:
    url = _closed_port()
    client = make_client(authorizer=OPAAuthorizer(url))
    with pytest.raises(sark_sync.AuthorizationUnavailable, match="could not reach") as info:
        client.invoke_tool("public", "echo", {})
    assert info.value.url == f"{url}/v1/data/sark/gateway/decision"
    assert invokes(gateway) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [((200, b"<html>proxy error</html>"), "not JSON"), ((500, b'{"code": "internal"}'),
                                                        "answered 500"),
     ((200, b'{"result": {"allow": "yes"}}'), "malformed decision"),
     ((200, b'{"result": true}'), "malformed decision")],
    ids=["garbage", "500", "allow-not-bool", "bare-bool"],
)
def test_an_engine_answering_garbage_fails_closed(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make, raw: tuple[int, bytes], message: str
) -> None:
    opa.raw = raw
    with pytest.raises(sark_sync.AuthorizationUnavailable, match=message):
        make_client(authorizer=OPAAuthorizer(opa.url)).invoke_tool("public", "echo", {})
    assert invokes(gateway) == []


def test_an_undefined_decision_is_a_deny(gateway: LocalGateway, make_client: Make) -> None:
    with OPAStandIn(lambda document: None) as opa:
        with pytest.raises(sark_sync.AuthorizationDenied, match="undefined"):
            make_client(authorizer=OPAAuthorizer(opa.url)).invoke_tool("public", "echo", {})
    assert invokes(gateway) == []


def test_fail_open_allows_when_the_engine_is_down_or_answers_garbage(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    down = make_client(authorizer=OPAAuthorizer(_closed_port(), fail_open=True))
    assert received(down.invoke_tool("public", "echo", {"password": "x"})) == {"password": "x"}
    opa.raw = (200, b"garbage")
    garbage = make_client(authorizer=OPAAuthorizer(opa.url, fail_open=True))
    assert received(garbage.invoke_tool("public", "echo", {"a": 1})) == {"a": 1}
    assert len(invokes(gateway)) == 2
    warnings = [r for r in caplog.records if r.name == "sark_sync.governance"]
    assert len(warnings) == 2 and all("fail_open=True" in r.getMessage() for r in warnings)


def test_fail_open_still_honours_a_deny(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    with pytest.raises(sark_sync.AuthorizationDenied):
        make_client(authorizer=OPAAuthorizer(opa.url, fail_open=True)).invoke_tool(
            "finance", "pay", {}, principal=sark_sync.Principal("ian", ("intern",)))
    assert invokes(gateway) == []


# -- the decision cache ----------------------------------------------------------------------


def test_within_its_ttl_a_decision_is_not_asked_again(
    gateway: LocalGateway, make_client: Make
) -> None:
    with OPAStandIn(lambda document: gateway_rule(document, cache_ttl=60)) as opa:
        client = make_client(authorizer=OPAAuthorizer(opa.url))
        alice = sark_sync.Principal("alice", ("developer",))
        for _ in range(3):
            client.invoke_tool("public", "echo", {"q": 1}, principal=alice)
        assert len(opa.inputs) == 1
        client.invoke_tool("public", "echo", {"q": 2}, principal=alice)
        client.invoke_tool("public", "echo", {"q": 1},
                           principal=sark_sync.Principal("bob", ("developer",)))
        client.invoke_tool("public", "echo", {"q": 1},
                           principal=sark_sync.Principal("alice", ("developer", "admin")))
        assert [d["principal"]["id"] for d in opa.inputs] == ["alice", "alice", "bob", "alice"]
    assert len(invokes(gateway)) == 6


def test_a_cached_filtering_decision_keeps_filtering(make_client: Make) -> None:
    with OPAStandIn(lambda document: gateway_rule(document, cache_ttl=60)) as opa:
        client = make_client(authorizer=OPAAuthorizer(opa.url))
        results = [client.invoke_tool("public", "echo", {"q": 1, "token": "t"},
                                      principal=sark_sync.Principal("d", ("developer",)))
                   for _ in range(2)]
        assert len(opa.inputs) == 1
    assert [received(r) for r in results] == [{"q": 1}, {"q": 1}]
    assert [r.filtered for r in results] == [("token",), ("token",)]


def test_ttl_zero_asks_for_every_call(opa: OPAStandIn, make_client: Make) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    for _ in range(3):
        client.invoke_tool("public", "echo", {}, principal=sark_sync.Principal("d", ("admin",)))
    assert len(opa.inputs) == 3


def test_server_metadata_costs_two_requests_per_server_not_per_call(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    admin = sark_sync.Principal("root", ("admin",), ("finance",))
    for _ in range(3):
        client.invoke_tool("public", "echo", {}, principal=admin)
        client.invoke_tool("finance", "pay", {}, principal=admin)
    discovery = [r.path for r in gateway.requests if r.path != "/api/v1/invoke"]
    assert sorted(discovery) == ["/api/v1/servers/finance", "/api/v1/servers/public",
                                 "/api/v1/tools", "/api/v1/tools"]


# -- threads, local servers, deadlines ---------------------------------------------------------


def test_many_threads_share_a_governed_client(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url), max_workers=8)
    calls = [sark_sync.ToolCall("public", "echo", {"n": n, "password": "p"},
                                principal=sark_sync.Principal(f"u{n % 4}", ("developer",)))
             for n in range(64)]
    results = client.invoke_many(calls)
    assert [received(r) for r in results] == [{"n": n} for n in range(64)]
    assert len(opa.inputs) == 64 and len(invokes(gateway)) == 64


ECHO_ARGS_SERVER = r'''
import json, sys
TOOL = {"name": "echo_args", "description": "Return the arguments.",
        "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
for line in sys.stdin:
    message = json.loads(line)
    method, id = message.get("method"), message.get("id")
    if id is None:
        continue
    if method == "initialize":
        result = {"protocolVersion": message["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "echo-args",
                                                                "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        arguments = message["params"].get("arguments", {})
        result = {"content": [{"type": "text", "text": json.dumps(arguments)}],
                  "structuredContent": {"received": arguments}}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id, "result": result}) + "\n")
    sys.stdout.flush()
'''


def test_local_servers_are_governed_with_default_metadata_and_their_annotations(
    tmp_path: Path, opa: OPAStandIn
) -> None:
    script = tmp_path / "echo_args.py"
    script.write_text(ECHO_ARGS_SERVER)
    client = sark_sync.GatewayClient(
        _closed_port(), authorizer=OPAAuthorizer(opa.url),
        local_servers={"local": [sys.executable, str(script)]})
    with client:
        result = client.invoke_tool("local", "echo_args", {"a": 1, "db": {"password": "p"}},
                                    principal=sark_sync.Principal("dev", ("developer",)))
        assert received(result) == {"a": 1, "db": {}}
        assert result.filtered == ("db.password",)
        with pytest.raises(sark_sync.AuthorizationDenied, match="needs a higher role"):
            client.invoke_tool("local", "echo_args", {},
                               principal=sark_sync.Principal("ian", ("intern",)))
    server, tool = opa.inputs[0]["server"], opa.inputs[0]["tool"]
    assert server == {"name": "local", "sensitivity_level": "medium", "authorized_teams": []}
    assert tool["name"] == "echo_args" and tool["annotations"]["readOnlyHint"] is True


def test_the_authorization_wait_counts_against_the_calls_deadline(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url, timeout=30))
    client.invoke_tool("public", "echo", {}, principal=sark_sync.Principal("d", ("admin",)))
    opa.delay = 5.0
    started = time.monotonic()
    with pytest.raises(sark_sync.DeadlineExceeded) as info:
        client.invoke_tool("public", "echo", {}, timeout=0.5,
                           principal=sark_sync.Principal("d", ("admin",)))
    assert time.monotonic() - started < 2.0
    assert info.value.attempts == 0
    assert isinstance(info.value.last_error, sark_sync.AuthorizationUnavailable)
    assert len(invokes(gateway)) == 1
    assert client.breaker_for("public").failure_count == 0


def test_an_authorizer_timeout_shorter_than_the_deadline_fails_closed(
    gateway: LocalGateway, opa: OPAStandIn, make_client: Make
) -> None:
    opa.delay = 5.0
    client = make_client(authorizer=OPAAuthorizer(opa.url, timeout=0.3))
    with pytest.raises(sark_sync.AuthorizationUnavailable, match=r"within 0\.3s"):
        client.invoke_tool("public", "echo", {}, timeout=10)
    assert invokes(gateway) == []


def test_submit_authorizes_on_the_worker_within_the_deadline(
    opa: OPAStandIn, make_client: Make
) -> None:
    client = make_client(authorizer=OPAAuthorizer(opa.url))
    future = client.submit("public", "echo", {"api_key": "k", "x": 1},
                           principal=sark_sync.Principal("d", ("developer",)))
    assert received(future.result(timeout=10)) == {"x": 1}
    denied = client.submit("finance", "pay", {}, principal=sark_sync.Principal("i", ("intern",)))
    with pytest.raises(sark_sync.AuthorizationDenied):
        denied.result(timeout=10)
    wait_for(lambda: len(opa.inputs) == 2, timeout=5)
