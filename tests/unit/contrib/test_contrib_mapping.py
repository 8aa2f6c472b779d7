"""The framework-free parts of sark_sync.contrib: the GatewayError -> HTTP answer mapping that
Django's middleware and Flask's error handler share, and the settings shape -> client options.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import sark_sync
from sark_sync.contrib._http_errors import NOT_MAPPED, ErrorResponse, error_response
from sark_sync.contrib._settings import SETTING_KEYS, client_options


def status_of(error: BaseException) -> tuple[int, str | None] | None:
    answer = error_response(error)
    return None if answer is None else (answer.status, answer.headers.get("Retry-After"))


@pytest.mark.parametrize(("error", "expected"), [
    (sark_sync.AuthorizationDenied("no", reason="r"), (403, None)),
    (sark_sync.RateLimitError("slow down", retry_after=7.0), (429, "7")),
    (sark_sync.RateLimitError("slow down"), (429, None)),
    (sark_sync.ServiceUnavailableError("down", retry_after=0.2), (503, "1")),
    (sark_sync.ServiceUnavailableError("down", retry_after=0), (503, "0")),
    (sark_sync.AuthorizationUnavailable("opa down"), (503, None)),
    (sark_sync.UpstreamTimeoutError("slow tool"), (504, None)),
    (sark_sync.TransportTimeout("read timed out"), (504, None)),
    (sark_sync.DeadlineExceeded("late"), (504, None)),
    (sark_sync.UpstreamError("tool broke"), (502, None)),
    (sark_sync.ServerError("500", status_code=500), (502, None)),
    (sark_sync.AuthenticationError("bad key"), (502, None)),
    (sark_sync.NotFoundError("no tool"), (502, None)),
    (sark_sync.ConnectionFailed("refused"), (502, None)),
    (sark_sync.ProtocolError("not json"), (502, None)),
    (sark_sync.RPCError("rpc", code=-32603), (502, None)),
    (sark_sync.ToolExecutionError("tool said no"), (502, None)),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_each_error_kind_has_its_status(error: sark_sync.GatewayError,
                                        expected: tuple[int, str | None]) -> None:
    assert status_of(error) == expected


def test_a_deadline_spent_waiting_on_a_refusal_answers_as_the_refusal() -> None:
    last = sark_sync.ServiceUnavailableError("down", retry_after=60.0)
    assert status_of(sark_sync.DeadlineExceeded("late", last_error=last)) == (503, "60")
    own = sark_sync.DeadlineExceeded("late", last_error=last, retry_after=90.0)
    assert status_of(own) == (503, "90")
    limited = sark_sync.DeadlineExceeded("late", last_error=sark_sync.RateLimitError("x"))
    assert status_of(limited) == (429, None)
    other = sark_sync.DeadlineExceeded("late", last_error=sark_sync.UpstreamError("x"))
    assert status_of(other) == (504, None)


def test_an_open_breaker_says_when_it_probes_again() -> None:
    probe_at = datetime.now(timezone.utc) + timedelta(seconds=12.2)
    error = sark_sync.CircuitOpenError("open", breaker="demo", probe_at=probe_at)
    status, retry_after = status_of(error) or (0, None)
    assert status == 503 and retry_after in ("12", "13")
    past = sark_sync.CircuitOpenError("open", breaker="demo",
                                      probe_at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert status_of(past) == (503, "0")
    assert status_of(sark_sync.CircuitOpenError("open", breaker="demo")) == (503, None)


@pytest.mark.parametrize("error", [
    sark_sync.ConfigurationError("bad"), sark_sync.ValidationError("bad name"),
    sark_sync.ClientClosedError("closed"), sark_sync.TransportNotAvailableError("no stdio"),
    ValueError("not ours"), KeyError("x"),
])
def test_the_applications_own_mistakes_and_foreign_errors_are_not_mapped(
        error: BaseException) -> None:
    assert error_response(error) is None


def test_not_mapped_names_only_mistakes_of_the_application() -> None:
    assert set(NOT_MAPPED) == {sark_sync.ConfigurationError, sark_sync.ClientClosedError,
                               sark_sync.TransportNotAvailableError}


def test_the_body_has_a_fixed_message_and_the_request_id_never_the_errors_text() -> None:
    error = sark_sync.UpstreamError("secret-server/secret-tool failed: token=abc",
                                    request_id="req-1", server="secret-server")
    answer = error_response(error)
    assert answer == ErrorResponse(502, {"error": {
        "code": "upstream_error", "message": "A service this request depends on failed.",
        "request_id": "req-1"}})
    assert "secret" not in repr(answer)
    assert error_response(sark_sync.UpstreamError("x")) == ErrorResponse(502, {"error": {
        "code": "upstream_error", "message": "A service this request depends on failed."}})


# -- settings ------------------------------------------------------------------------------


def test_settings_become_client_arguments_and_policy_dicts_become_policies() -> None:
    authorizer = object()
    options = client_options({
        "BASE_URL": "http://gw:8080", "API_KEY": "k", "TIMEOUT": {"deadline": 9},
        "RETRY": {"attempts": 2}, "BREAKER": sark_sync.BreakerPolicy(failure_threshold=3),
        "AUTHORIZER": authorizer, "AUDIT": [], "LOCAL_SERVERS": {"a": ["x"]},
        "REMOTE_SERVERS": {"b": "http://b"}, "MAX_WORKERS": 4, "TRANSPORT_MODE": "http",
        "IDEMPOTENCY_KEYS": False, "VERIFY": False, "MAX_RESPONSE_BYTES": 10,
        "STARTUP_TIMEOUT": 3,
    })
    assert options == {
        "base_url": "http://gw:8080", "api_key": "k", "timeout": sark_sync.Timeouts(deadline=9),
        "retry": sark_sync.RetryPolicy(attempts=2),
        "breaker": sark_sync.BreakerPolicy(failure_threshold=3), "authorizer": authorizer,
        "audit": [], "local_servers": {"a": ["x"]}, "remote_servers": {"b": "http://b"},
        "max_workers": 4, "transport_mode": "http", "idempotency_keys": False,
        "verify": False, "max_response_bytes": 10, "startup_timeout": 3,
    }
    assert set(options) == set(SETTING_KEYS.values())


def test_none_and_absent_settings_leave_the_clients_defaults() -> None:
    assert client_options({"BASE_URL": None, "TIMEOUT": None}) == {}


def test_mistakes_name_the_setting_in_the_frameworks_spelling() -> None:
    with pytest.raises(sark_sync.ConfigurationError, match="unknown SARK_SYNC setting"):
        client_options({"BASEURL": "x"})
    with pytest.raises(sark_sync.ConfigurationError, match=r'SARK_SYNC\["RETRY"\] has a field'):
        client_options({"RETRY": {"attempt": 2}})
    with pytest.raises(sark_sync.ConfigurationError, match="SARK_SYNC_BREAKER has a field"):
        client_options({"BREAKER": {"threshold": 2}}, prefix="SARK_SYNC_")
    with pytest.raises(sark_sync.ConfigurationError, match="SARK_SYNC must be a dict"):
        client_options(["BASE_URL"])  # type: ignore[arg-type]


def test_a_credential_in_a_bad_setting_is_never_quoted() -> None:
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        client_options({"API_KEY": "sk-secret", "RETRY": {"sk-secret": 1}})
    assert "sk-secret" not in str(caught.value)
