"""sark_sync.contrib.flask with a real Flask against real LocalGateways: an application factory
whose views call tools through the extension (Flask's test client, and a real werkzeug server
under concurrent requests), the client's lifecycle (lazy, per app, rebuilt after a config
change or a fork, closed with its app: 200 ``create_app()`` leave no client and no socket), the
error handlers and the user's token.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from flask import Flask, Request, request
from support import API_KEY, FAST_RETRY, in_child, token_of, wait_for
from werkzeug.serving import make_server

import sark_sync
from sark_sync.contrib.flask import SarkSync, bearer_token
from sark_sync.testing import Fault, LocalGateway

FAST = {"attempts": FAST_RETRY.attempts, "backoff_base": 0.01, "backoff_max": 0.05}

#: The extension of the application factory below, made once at import as a project does.
sark = SarkSync()


def create_app(gateway: LocalGateway | None = None, ext: SarkSync = sark,
               **config: Any) -> Flask:
    """The application factory of a small project: its views call tools for their user."""
    app = Flask("flask_project")
    if gateway is not None:
        app.config.update(SARK_SYNC_BASE_URL=gateway.url, SARK_SYNC_API_KEY=API_KEY,
                          SARK_SYNC_RETRY=FAST)
    app.config.update(config)
    ext.init_app(app)

    @app.get("/echo/<int:number>")
    def echo(number: int) -> Any:
        return ext.invoke_tool("demo", "echo", {"n": number}).json()

    @app.get("/ping")
    def ping() -> Any:
        return {"answer": ext.invoke_tool("other", "ping").text}

    @app.get("/bad-name")
    def bad_name() -> Any:
        return ext.invoke_tool("no such server!", "echo").json()

    return app


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """``create_app`` whose apps' clients are closed after the test."""
    made: list[Flask] = []

    def make(*args: Any, **kwargs: Any) -> Flask:
        app = create_app(*args, **kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["sark_sync"].close(app)


# -- the convention ------------------------------------------------------------------------


def test_a_view_calls_a_tool_through_the_extension(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway)
    response = app.test_client().get("/echo/7")
    assert (response.status_code, response.json) == (200, {"n": 7})
    assert app.extensions["sark_sync"] is sark
    assert [(r.path, r.json()["tool"]) for r in gateway.requests] == [("/api/v1/invoke", "echo")]


def test_sark_sync_app_initialises_at_once(gateway: LocalGateway) -> None:
    app = Flask("direct")
    app.config.update(SARK_SYNC_BASE_URL=gateway.url, SARK_SYNC_API_KEY=API_KEY)
    ext = SarkSync(app)
    with app.app_context():
        assert ext.client.invoke_tool("demo", "echo", {"a": 1}).json() == {"a": 1}
        assert ext.client is ext.get_client(app)
    ext.close(app)
    with app.app_context():
        assert ext.get_client().closed is False  # the next use builds a new one
    ext.close(app)


def test_init_app_twice_on_one_app_is_refused() -> None:
    app = Flask("twice")
    sark.init_app(app)
    with pytest.raises(RuntimeError, match="already has a sark_sync extension"):
        SarkSync().init_app(app)


def test_the_client_outside_an_app_or_of_another_app_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="application context"):
        sark.client  # noqa: B018
    with pytest.raises(RuntimeError, match="not initialised on app 'stranger'"):
        sark.get_client(Flask("stranger"))


def test_creating_an_app_opens_nothing_and_needs_no_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    app = create_app()  # no gateway configured: `flask routes` and test collection still work
    assert "/echo/<int:number>" in {rule.rule for rule in app.url_map.iter_rules()}
    with app.app_context(), pytest.raises(sark_sync.ConfigurationError, match="base_url"):
        sark.client  # noqa: B018


def test_the_environment_is_the_fallback(
        gateway: LocalGateway, make_app: Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("SARK_API_KEY", API_KEY)
    monkeypatch.setenv("SARK_TIMEOUT", "7.5")
    app = make_app()
    assert app.test_client().get("/echo/1").json == {"n": 1}
    with app.app_context():
        assert sark.client.base_url == gateway.url
        assert sark.client.timeouts.deadline == 7.5


def test_settings_in_the_config_become_the_clients_options(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, SARK_SYNC_TIMEOUT=4, SARK_SYNC_BREAKER={"failure_threshold": 2},
                   SARK_SYNC_MAX_WORKERS=3)
    with app.app_context():
        client = sark.client
    assert client.timeouts.deadline == 4 and client.breaker.failure_threshold == 2
    assert client.max_workers == 3 and client.retry == sark_sync.RetryPolicy(**FAST)


def test_an_unknown_setting_is_named(gateway: LocalGateway,
                                     make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, SARK_SYNC_RETRY={"attempt": 2})
    with app.app_context(), pytest.raises(sark_sync.ConfigurationError,
                                          match="SARK_SYNC_RETRY has a field"):
        sark.client  # noqa: B018


# -- one client per app, for its lifetime --------------------------------------------------


def test_each_app_has_its_own_client_built_once(
        make_gateway: Callable[..., LocalGateway], make_app: Callable[..., Flask]) -> None:
    first, second = make_gateway(), make_gateway()
    app_one, app_two = make_app(first), make_app(second)
    clients = []
    for app in (app_one, app_two, app_one):
        with app.app_context():
            clients.append(sark.client)
    assert clients[0] is clients[2] and clients[0] is not clients[1]
    assert (clients[0].base_url, clients[1].base_url) == (first.url, second.url)


def test_threads_using_an_app_at_once_share_one_client(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway)
    barrier = threading.Barrier(8)
    got: list[sark_sync.GatewayClient] = []

    def first_use() -> None:
        with app.app_context():
            barrier.wait()
            got.append(sark.client)

    threads = [threading.Thread(target=first_use, name=f"first-use-{i}") for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and all(client is got[0] for client in got)
    assert not got[0].closed


def test_a_config_change_builds_a_new_client_and_closes_the_old(
        make_gateway: Callable[..., LocalGateway], make_app: Callable[..., Flask]) -> None:
    first, second = make_gateway(), make_gateway()
    app = make_app(first)
    with app.app_context():
        old = sark.client
    app.config["SARK_SYNC_BASE_URL"] = second.url
    assert app.test_client().get("/echo/2").json == {"n": 2}
    assert old.closed and len(second.requests) == 1 and first.requests == []


@pytest.mark.fork
def test_a_forked_process_builds_its_own_client(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway)
    assert app.test_client().get("/echo/1").status_code == 200
    with app.app_context():
        parent_client = sark.client

    def in_the_child() -> Any:
        with app.app_context():
            child_client = sark.client
        answer = app.test_client().get("/echo/2").json
        return [child_client is not parent_client, parent_client.closed, answer]

    assert in_child(in_the_child) == [True, True, {"n": 2}]
    assert not parent_client.closed
    assert app.test_client().get("/echo/3").json == {"n": 3}


def test_an_app_collected_closes_its_client(gateway: LocalGateway) -> None:
    app = create_app(gateway)
    assert app.test_client().get("/echo/1").status_code == 200
    with app.app_context():
        client = sark.client
    app_ref = weakref.ref(app)
    del app
    gc.collect()
    assert app_ref() is None and client.closed


def test_200_create_app_leave_no_client_and_no_socket(gateway: LocalGateway) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = create_app(gateway)  # imports and the gateway's first connection before the baseline
    assert warm.test_client().get("/echo/0").status_code == 200
    del warm
    gc.collect()
    wait_for(lambda: gateway.open_connections == 0, what="the warm-up connection to close")
    baseline, exit_hooks = open_fds(), atexit._ncallbacks()
    clients: weakref.WeakSet[sark_sync.GatewayClient] = weakref.WeakSet()
    for number in range(200):
        app = create_app(gateway)
        assert app.test_client().get(f"/echo/{number}").json == {"n": number}
        with app.app_context():
            clients.add(sark.client)
        del app
    gc.collect()
    assert len(clients) == 0
    assert atexit._ncallbacks() == exit_hooks  # nothing registered per app
    assert sum(r.path == "/api/v1/invoke" for r in gateway.requests) == 201
    wait_for(lambda: gateway.open_connections == 0,
             what=lambda: f"{gateway.open_connections} gateway connections to close")
    wait_for(lambda: open_fds() <= baseline,
             what=lambda: f"{open_fds()} open fds to come back to {baseline}")
    # type(), not isinstance(): a lazy proxy among the objects (Django's settings) would
    # resolve itself to answer isinstance's __class__.
    assert not [o for o in gc.get_objects() if type(o) is sark_sync.GatewayClient]


# -- a real server, concurrent requests ----------------------------------------------------


@pytest.mark.stress
def test_200_requests_8_at_a_time_through_a_real_server(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, name="flask-test-server")
    serving.start()
    token = token_of(gateway, "alice")
    local = threading.local()

    def get(number: int) -> tuple[int, Any]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False
            sessions.append(local.session)
        response = local.session.get(f"http://127.0.0.1:{server.server_port}/echo/{number}",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return response.status_code, response.json()

    sessions: list[requests.Session] = []
    try:
        with ThreadPoolExecutor(8, thread_name_prefix="flask-test-caller") as pool:
            answers = list(pool.map(get, range(200)))
    finally:
        for session in sessions:
            session.close()
        server.shutdown()
        serving.join()
        server.server_close()
    assert answers == [(200, {"n": number}) for number in range(200)]
    invokes = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert len(invokes) == 200
    assert {r.headers["Authorization"] for r in invokes} == {f"Bearer {token}"}


# -- the user's token ----------------------------------------------------------------------


@pytest.fixture
def policy_gateway(make_gateway: Callable[..., LocalGateway]) -> LocalGateway:
    """The client catalogue under the built-in policy: alice may call other.ping, bob not."""
    return make_gateway(policy="builtin")


def test_the_bearer_token_of_the_request_goes_with_the_call(
        policy_gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(policy_gateway)
    client = app.test_client()
    alice = client.get("/ping", headers={"Authorization": "Bearer " + token_of(policy_gateway)})
    bob = client.get("/ping",
                     headers={"Authorization": "Bearer " + token_of(policy_gateway, "bob")})
    assert (alice.status_code, alice.json) == (200, {"answer": "pong"})
    assert (bob.status_code, bob.json["error"]["code"]) == (403, "policy_denied")


def test_a_token_getter_from_the_config(
        policy_gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    def from_cookie(request: Request) -> str | None:
        return request.cookies.get("user_jwt")

    app = make_app(policy_gateway, SARK_SYNC_TOKEN_GETTER=from_cookie)
    client = app.test_client()
    client.set_cookie("user_jwt", token_of(policy_gateway, "bob"))
    assert client.get("/ping").status_code == 403
    client.set_cookie("user_jwt", token_of(policy_gateway, "alice"))
    assert client.get("/ping").json == {"answer": "pong"}


def test_a_token_getter_by_dotted_path(
        policy_gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(policy_gateway, SARK_SYNC_TOKEN_GETTER="test_flask:token_from_x_user")
    client = app.test_client()
    assert client.get("/ping", headers={"X-User": token_of(policy_gateway, "bob")}
                      ).status_code == 403
    assert client.get("/ping", headers={"X-User": token_of(policy_gateway)}).status_code == 200
    app.config["SARK_SYNC_TOKEN_GETTER"] = "test_flask:no_such_function"
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(sark_sync.ConfigurationError, match="TOKEN_GETTER names nothing"):
        client.get("/ping")


def token_from_x_user(request: Request) -> str | None:
    return request.headers.get("X-User")


def test_a_token_getter_by_decorator(policy_gateway: LocalGateway) -> None:
    ext = SarkSync()

    @ext.token_getter
    def from_header(request: Request) -> str | None:
        return request.headers.get("X-User-Token")

    app = create_app(policy_gateway, ext=ext)
    try:
        client = app.test_client()
        bob = client.get("/ping", headers={"X-User-Token": token_of(policy_gateway, "bob")})
        alice = client.get("/ping", headers={"X-User-Token": token_of(policy_gateway)})
        assert (bob.status_code, alice.status_code) == (403, 200)
        with app.test_request_context(headers={"X-User-Token": "t"}):
            assert ext.user_token() == "t"
        assert ext.user_token() is None  # no request, no user
    finally:
        ext.close(app)


def test_bearer_token_reads_only_a_bearer_header() -> None:
    app = Flask("tokens")
    cases = {"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": None, "Bearer ": None,
             "": None}
    for header, expected in cases.items():
        with app.test_request_context(headers={"Authorization": header} if header else {}):
            assert bearer_token(request) == expected, header


# -- the error handlers --------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status", "code", "retry_after"), [
    (Fault(status=403), 403, "policy_denied", None),
    (Fault(status=429, retry_after=7), 429, "rate_limited", "7"),
    (Fault(status=500), 502, "upstream_error", None),
    (Fault(status=502), 502, "upstream_error", None),
    (Fault(status=503, retry_after=2.5), 503, "unavailable", "3"),
    (Fault(status=503), 503, "unavailable", None),
    (Fault(status=504), 504, "upstream_timeout", None),
], ids=["403", "429", "500", "502", "503-retry-after", "503", "504"])
def test_a_gateway_error_becomes_its_http_answer(
        gateway: LocalGateway, make_app: Callable[..., Flask], fault: Fault, status: int,
        code: str, retry_after: str | None) -> None:
    app = make_app(gateway, SARK_SYNC_RETRY={"attempts": 1})
    gateway.add_fault(fault)
    response = app.test_client().get("/echo/1")
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    error = response.json["error"]
    assert error["code"] == code
    assert error["request_id"] == gateway.requests[-1].headers["X-Request-ID"]
    assert "demo" not in response.get_data(as_text=True)  # no internal names for end users


def test_a_deadline_becomes_504(gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, SARK_SYNC_TIMEOUT=0.3)
    gateway.add_fault(Fault(delay=2))
    response = app.test_client().get("/echo/1")
    assert (response.status_code, response.json["error"]["code"]) == (504, "upstream_timeout")


def test_a_retry_after_beyond_the_deadline_becomes_503_with_it(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    # The client does not wait 60 s with 1 s left: the end user is told when to come back.
    app = make_app(gateway, SARK_SYNC_TIMEOUT=1)
    gateway.add_fault(Fault(status=503, retry_after=60))
    response = app.test_client().get("/echo/1")
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "60")


def test_an_open_breaker_becomes_503_with_the_time_to_the_next_probe(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, SARK_SYNC_RETRY={"attempts": 1},
                   SARK_SYNC_BREAKER={"failure_threshold": 1, "recovery_timeout": 30})
    gateway.add_fault(Fault(status=502))
    client = app.test_client()
    assert client.get("/echo/1").status_code == 502
    response = client.get("/echo/2")
    assert response.status_code == 503
    assert 29 <= int(response.headers["Retry-After"]) <= 30
    assert sum(r.path == "/api/v1/invoke" for r in gateway.requests) == 1


def test_the_applications_own_mistake_stays_a_500(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, PROPAGATE_EXCEPTIONS=False)
    assert app.test_client().get("/bad-name").status_code == 500
    assert gateway.requests == []


def test_error_handlers_can_be_left_out(
        gateway: LocalGateway, make_app: Callable[..., Flask]) -> None:
    app = make_app(gateway, SARK_SYNC_ERROR_HANDLERS=False, SARK_SYNC_RETRY={"attempts": 1},
                   PROPAGATE_EXCEPTIONS=True)
    gateway.add_fault(Fault(status=503))
    with pytest.raises(sark_sync.ServiceUnavailableError):
        app.test_client().get("/echo/1")


# -- the documentation ---------------------------------------------------------------------


def test_the_flask_page_runs_as_a_test_module(pytester: pytest.Pytester) -> None:
    """docs/integrations/flask.md, its blocks in order as one test module (tests/integration/
    e2e/test_docs.py runs them too, but only defines its test): its test passes against the
    pytest plugin's gateway."""
    page = Path(__file__).resolve().parents[3] / "docs" / "integrations" / "flask.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"),
                        flags=re.S | re.M)
    pytester.makepyfile(test_flask_page="\n\n".join(blocks))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:django",
                                           timeout=60)
    result.assert_outcomes(passed=1)
