"""sark_sync.contrib.django with a real Django (test Client, in-process) against real
LocalGateways: the lazy per-process client and its rebuilds (settings, fork), the token getter,
the middleware's mapping, the readiness view and the system checks (also through a real
``manage.py check`` in a child process).

Django is configured from tests/django_project (no ``DJANGO_SETTINGS_MODULE``): pytest-django
sees settings only once this module was imported, and the rest of the suite never uses them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django_project
import pytest
from support import API_KEY, child_env, token_of

import sark_sync
from sark_sync.testing import Fault, LocalGateway

django_project.configure()

from django.test import Client, override_settings  # noqa: E402

from sark_sync.contrib.django import close_client, get_client  # noqa: E402
from sark_sync.contrib.django.checks import check_settings  # noqa: E402

MANAGE = Path(django_project.__file__).resolve().parent / "manage.py"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


def sark_settings(gateway: LocalGateway, **more: Any) -> dict[str, Any]:
    """A SARK_SYNC setting for ``gateway``."""
    return {"BASE_URL": gateway.url, "API_KEY": API_KEY, "RETRY": FAST, **more}


@pytest.fixture(autouse=True)
def _fresh_client() -> Iterator[None]:
    """Each test starts without a process client and leaves none behind."""
    close_client()
    yield
    close_client()


# -- the process's client ------------------------------------------------------------------


def test_get_client_is_built_once_for_every_thread(gateway: LocalGateway) -> None:
    with override_settings(SARK_SYNC=sark_settings(gateway)):
        barrier = threading.Barrier(8)
        got: list[sark_sync.GatewayClient] = []

        def first_use() -> None:
            barrier.wait()
            got.append(get_client())

        threads = [threading.Thread(target=first_use, name=f"first-use-{i}") for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and all(client is got[0] for client in got)
        assert got[0].base_url == gateway.url and got[0].retry == sark_sync.RetryPolicy(**FAST)
        assert get_client() is got[0]


@pytest.mark.parametrize("which", ["first", "second"])
def test_each_test_gets_the_client_of_its_own_gateway(
        which: str, make_gateway: Any) -> None:
    # Two tests, two gateways on two ports: the second would get a 502 if the client of the
    # first were kept.
    gateway = make_gateway()
    with override_settings(SARK_SYNC=sark_settings(gateway)):
        response = Client().get("/echo/", {"text": which})
    assert response.status_code == 200, response.content
    assert response.json()["base_url"] == gateway.url
    assert gateway.tool_runs("demo", "echo") == 1


def test_a_settings_change_closes_the_old_client(make_gateway: Any) -> None:
    first, second = make_gateway(), make_gateway()
    with override_settings(SARK_SYNC=sark_settings(first)):
        old = get_client()
        with override_settings(SARK_SYNC=sark_settings(second)):
            assert old.closed
            new = get_client()
            assert new.base_url == second.url
        assert new.closed
        assert get_client().base_url == first.url


def test_the_client_is_rebuilt_in_a_forked_child(gateway: LocalGateway) -> None:
    with override_settings(SARK_SYNC=sark_settings(gateway)):
        parent = get_client()
        parent.invoke_tool("demo", "echo", {"who": "parent"})
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if it built its own client and it works
            code = 1
            try:
                child = get_client()
                if child is not parent and get_client() is child:
                    code = 2
                    child.invoke_tool("demo", "echo", {"who": "child"})
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert get_client() is parent and not parent.closed
        parent.invoke_tool("demo", "echo", {"who": "parent again"})
    assert gateway.tool_runs("demo", "echo") == 3


def test_client_arguments_timeout_env_and_dotted_paths_reach_the_client(
        gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_project.views import AUDITED

    AUDITED.clear()
    monkeypatch.setenv("SARK_TIMEOUT", "7.5")
    setting = sark_settings(gateway, MAX_WORKERS=3,
                            AUDIT=["django_project.views.record_audit"])
    with override_settings(SARK_SYNC=setting):
        client = get_client()
        client.invoke_tool("demo", "echo", {"n": 1})
    assert (client.max_workers, client.timeouts.deadline) == (3, 7.5)
    assert [(e.server, e.tool, e.outcome) for e in AUDITED] == [("demo", "echo", "success")]


def test_without_settings_get_client_raises_configuration_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    with override_settings(SARK_SYNC=None):
        with pytest.raises(sark_sync.ConfigurationError, match="SARK_GATEWAY_URL"):
            get_client()


def test_the_environment_is_the_fallback(gateway: LocalGateway,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("SARK_API_KEY", API_KEY)
    with override_settings(SARK_SYNC={"RETRY": FAST}):
        assert Client().get("/echo/", {"text": "env"}).status_code == 200
    assert gateway.requests[-1].headers["X-API-Key"] == API_KEY


# -- the user's token ----------------------------------------------------------------------


def test_the_bearer_token_of_the_request_goes_with_the_call(make_gateway: Any) -> None:
    gateway = make_gateway(require_user_token=True)
    token = token_of(gateway, "alice")
    with override_settings(SARK_SYNC=sark_settings(gateway)):
        answered = Client().get("/echo/", {"text": "hi"}, HTTP_AUTHORIZATION=f"Bearer {token}")
        refused = Client().get("/echo/", {"text": "hi"})
    assert answered.status_code == 200, answered.content
    assert answered.json()["echo"] == {"text": "hi"}
    invokes = [r for r in gateway.requests if r.path == "/api/v1/invoke"]
    assert invokes[0].headers["Authorization"] == f"Bearer {token}"
    assert refused.status_code == 502  # the gateway's 401: the application's call failed
    assert "Authorization" not in invokes[1].headers


def test_a_token_getter_given_by_dotted_path(make_gateway: Any) -> None:
    gateway = make_gateway(require_user_token=True)
    token = token_of(gateway, "bob")
    getter = "django_project.views.token_from_header"
    with override_settings(SARK_SYNC=sark_settings(gateway, TOKEN_GETTER=getter)):
        response = Client().get("/echo/", HTTP_X_USER_TOKEN=token,
                                HTTP_AUTHORIZATION="Bearer not-this-one")
    assert response.status_code == 200, response.content
    assert gateway.requests[-1].headers["Authorization"] == f"Bearer {token}"


# -- the middleware ------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status", "retry_after"), [
    (Fault(status=429, retry_after=3, times=None), 429, "3"),
    (Fault(status=503, retry_after=2, times=None), 503, "2"),
    (Fault(status=502, times=None), 502, None),
    (Fault(status=504, times=None), 504, None),
    (Fault(status=500, times=None), 502, None),
], ids=["429", "503", "502", "504", "500"])
def test_gateway_failures_answer_the_mapped_status(
        gateway: LocalGateway, fault: Fault, status: int, retry_after: str | None) -> None:
    gateway.add_fault(fault)
    no_retry = sark_settings(gateway, RETRY={"attempts": 1})
    with override_settings(SARK_SYNC=no_retry):
        response = Client().get("/echo/", {"text": "x"})
    assert response.status_code == status
    assert response.get("Retry-After") == retry_after
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"} and error["request_id"]
    assert API_KEY not in response.content.decode()


def test_a_retry_after_longer_than_the_deadline_answers_503_with_it(
        gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=503, retry_after=60, times=None))
    with override_settings(SARK_SYNC=sark_settings(gateway, TIMEOUT=2)):
        started = time.monotonic()
        response = Client().get("/echo/")
    assert time.monotonic() - started < 2  # not waited out
    assert (response.status_code, response["Retry-After"]) == (503, "60")


@pytest.mark.parametrize(("kind", "status", "retry_after"), [
    ("AuthorizationDenied", 403, None),
    ("CircuitOpenError", 503, "8"),
    ("RateLimitError", 429, "8"),
    ("DeadlineExceeded", 504, None),
    ("UpstreamError", 502, None),
])
def test_errors_raised_in_views_answer_json_without_details(
        kind: str, status: int, retry_after: str | None) -> None:
    response = Client().get(f"/fail/{kind}/")
    assert response.status_code == status
    assert response.get("Retry-After") == retry_after
    assert response.json()["error"]["request_id"] == "req-123"
    assert "secret-server" not in response.content.decode()


def test_the_applications_own_mistakes_stay_server_errors() -> None:
    client = Client(raise_request_exception=False)
    assert client.get("/fail/ConfigurationError/").status_code == 500
    with pytest.raises(sark_sync.ConfigurationError):
        Client().get("/fail/ConfigurationError/")


# -- readiness -----------------------------------------------------------------------------


def test_readiness_follows_the_gateways_health(gateway: LocalGateway) -> None:
    with override_settings(SARK_SYNC=sark_settings(gateway)):
        ready = Client().get("/ready/")
        gateway.set_health("degraded")
        unhealthy = Client().get("/ready/")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (unhealthy.status_code, unhealthy.json()) == (
        503, {"status": "unavailable", "reason": "unhealthy"})


def test_readiness_is_bounded_when_the_gateway_hangs(gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(path="/health", delay=30, times=None))
    with override_settings(SARK_SYNC=sark_settings(gateway, READINESS_TIMEOUT=0.5)):
        started = time.monotonic()
        response = Client().get("/ready/")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert elapsed < 3


def test_readiness_without_settings_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    with override_settings(SARK_SYNC=None):
        response = Client().get("/ready/")
    assert (response.status_code, response.json()) == (
        503, {"status": "unavailable", "reason": "ConfigurationError"})


# -- system checks -------------------------------------------------------------------------


def _ids(monkeypatch: pytest.MonkeyPatch, value: object) -> list[str]:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    with override_settings(SARK_SYNC=value):
        return [error.id for error in check_settings()]


@pytest.mark.parametrize(("value", "ids"), [
    ({"BASE_URL": "http://127.0.0.1:9", "API_KEY": "k"}, []),
    (None, ["sark_sync.E001"]),
    ({"API_KEY": "k"}, ["sark_sync.E001"]),
    ("http://127.0.0.1:9", ["sark_sync.E002"]),
    ({"BASE_URL": "http://127.0.0.1:9", "RETYR": {}}, ["sark_sync.E002"]),
    ({"BASE_URL": "http://127.0.0.1:9", "MAX_WORKERS": 0}, ["sark_sync.E003"]),
    ({"BASE_URL": "ftp://127.0.0.1:9"}, ["sark_sync.E003"]),
    ({"BASE_URL": "http://127.0.0.1:9", "RETRY": {"attempts": 0}}, ["sark_sync.E003"]),
    ({"BASE_URL": "http://127.0.0.1:9", "BREAKER": {"threshold": 3}}, ["sark_sync.E003"]),
    ({"BASE_URL": "http://127.0.0.1:9", "AUTHORIZER": "no.such.thing"}, ["sark_sync.E003"]),
    ({"BASE_URL": "http://127.0.0.1:9", "TOKEN_GETTER": "no.such.getter"}, ["sark_sync.E004"]),
    ({"BASE_URL": "http://127.0.0.1:9", "READINESS_TIMEOUT": 0}, ["sark_sync.E004"]),
], ids=["valid", "absent", "no-url", "not-a-dict", "unknown-key", "bad-max-workers", "bad-url",
        "bad-retry", "bad-breaker-field", "bad-authorizer", "bad-token-getter", "bad-readiness"])
def test_system_checks(monkeypatch: pytest.MonkeyPatch, value: object, ids: list[str]) -> None:
    assert _ids(monkeypatch, value) == ids


def test_a_check_message_never_shows_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    key = "sk-very-secret-key\n"  # invalid: a newline cannot go in a header
    with override_settings(SARK_SYNC={"BASE_URL": "http://127.0.0.1:9", "API_KEY": key}):
        errors = check_settings()
    assert [e.id for e in errors] == ["sark_sync.E003"]
    assert "very-secret" not in errors[0].msg and errors[0].hint


def test_importing_the_integration_reads_no_setting() -> None:
    # The client is built by get_client(), never at import: a project whose settings are not
    # configured yet (a management command starting, a test collecting) can import it all.
    code = ("import sark_sync.contrib.django, sark_sync.contrib.django.apps, "
            "sark_sync.contrib.django.checks, sark_sync.contrib.django.middleware, "
            "sark_sync.contrib.django.views\n"
            "from django.conf import settings\n"
            "assert not settings.configured\n")
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ.update(child_env())
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("SARK_") and k != "DJANGO_SETTINGS_MODULE"}
    environ.update(child_env(**env))
    return subprocess.run([sys.executable, str(MANAGE), *args], env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_manage_py_check_without_settings_reports_e001_without_a_traceback() -> None:
    done = _manage("check")
    assert done.returncode == 1
    assert "(sark_sync.E001) no SARK gateway URL is configured" in done.stderr
    assert "HINT:" in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_manage_py_check_passes_with_the_url_in_the_environment() -> None:
    done = _manage("check", SARK_GATEWAY_URL="http://127.0.0.1:9")
    assert (done.returncode, done.stderr) == (0, "")
    assert "no issues" in done.stdout
