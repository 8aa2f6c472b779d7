"""Timeouts, RetryPolicy, BreakerPolicy, environment handling and client construction."""

from __future__ import annotations

import dataclasses
import math

import pytest
import responses

from sark_sync import (
    Breaker,
    BreakerPolicy,
    ConfigurationError,
    ConnectionFailed,
    GatewayClient,
    RetryPolicy,
    Timeouts,
)
from sark_sync._config import resolve_api_key, resolve_base_url

BAD_SECONDS = [0, -1, -0.5, math.nan, math.inf, True, "5", None]
BAD_NON_NEGATIVE = [-1, -0.001, math.nan, math.inf, -math.inf, True, False, "1", None]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SARK_GATEWAY_URL", raising=False)
    monkeypatch.delenv("SARK_API_KEY", raising=False)
    return monkeypatch


# -- defaults ------------------------------------------------------------------------------------


def test_timeouts_defaults_are_5s_connect_30s_read_30s_deadline() -> None:
    assert (Timeouts().connect, Timeouts().read, Timeouts().deadline) == (5.0, 30.0, 30.0)


def test_retry_policy_defaults_match_the_design() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.backoff_base, policy.backoff_multiplier, policy.backoff_max,
            policy.jitter, policy.retry_after_max) == (3, 0.5, 2.0, 8.0, True, 120.0)


def test_retry_policy_default_statuses_are_408_429_502_503_504() -> None:
    assert RetryPolicy().statuses == frozenset({408, 429, 502, 503, 504})


def test_breaker_policy_defaults_are_5_failures_and_30s_recovery() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_threshold, policy.recovery_timeout, policy.enabled) == (5, 30.0, True)


# -- immutability --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [(Timeouts(), "deadline"), (RetryPolicy(), "attempts"), (BreakerPolicy(), "failure_threshold")],
)
def test_config_values_are_frozen(value: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, 1)


def test_replace_makes_a_variant_and_keeps_the_original() -> None:
    policy = RetryPolicy()
    variant = dataclasses.replace(policy, attempts=5)
    assert (variant.attempts, variant.backoff_base, policy.attempts) == (5, 0.5, 3)


def test_replace_validates_the_new_value() -> None:
    with pytest.raises(ConfigurationError):
        dataclasses.replace(BreakerPolicy(), failure_threshold=0)


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["connect", "read", "deadline"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_timeouts_reject_non_positive_or_non_finite_or_non_number(field: str,
                                                                  value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None], ids=repr)
def test_retry_attempts_must_be_an_int_of_at_least_1(value: object) -> None:
    with pytest.raises(ConfigurationError, match="attempts"):
        RetryPolicy(attempts=value)  # type: ignore[arg-type]


def test_retry_attempts_1_is_valid_and_means_no_retry() -> None:
    assert RetryPolicy(attempts=1).attempts == 1


@pytest.mark.parametrize("field", ["backoff_base", "backoff_max", "retry_after_max"])
@pytest.mark.parametrize("value", BAD_NON_NEGATIVE, ids=repr)
def test_retry_seconds_reject_negative_or_non_finite_or_non_number(field: str,
                                                                  value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.5, 0, -2, math.nan, math.inf, True, "2"], ids=repr)
def test_retry_multiplier_must_be_a_finite_number_of_at_least_1(value: object) -> None:
    with pytest.raises(ConfigurationError, match="backoff_multiplier"):
        RetryPolicy(backoff_multiplier=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("statuses", [{200}, {399}, {600}, {"503"}], ids=repr)
def test_retry_statuses_must_be_4xx_or_5xx_ints(statuses: set[object]) -> None:
    with pytest.raises(ConfigurationError, match="statuses"):
        RetryPolicy(statuses=statuses)  # type: ignore[arg-type]


def test_retry_backoff_base_0_is_valid_and_means_retry_at_once() -> None:
    policy = RetryPolicy(backoff_base=0)
    assert [policy.backoff_ceiling(n) for n in (1, 2, 3)] == [0, 0, 0]


def test_backoff_ceiling_doubles_from_half_a_second_up_to_8() -> None:
    policy = RetryPolicy()
    assert [policy.backoff_ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_backoff_ceiling_does_not_overflow_on_huge_retry_numbers() -> None:
    assert RetryPolicy().backoff_ceiling(100_000) == 8.0


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "5", None], ids=repr)
def test_breaker_failure_threshold_must_be_an_int_of_at_least_1(value: object) -> None:
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        BreakerPolicy(failure_threshold=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD_NON_NEGATIVE, ids=repr)
def test_breaker_recovery_timeout_rejects_negative_or_non_finite(value: object) -> None:
    with pytest.raises(ConfigurationError, match="recovery_timeout"):
        BreakerPolicy(recovery_timeout=value)  # type: ignore[arg-type]


def test_breaker_recovery_timeout_0_is_honoured_not_replaced_by_a_default() -> None:
    now = [100.0]
    breaker = Breaker("b", BreakerPolicy(failure_threshold=1, recovery_timeout=0),
                      clock=lambda: now[0])

    def fail() -> None:
        raise ConnectionFailed("down")

    with pytest.raises(ConnectionFailed):
        breaker.call(fail)
    assert breaker.state == "half_open"
    # No time passes, and still the next call is admitted as the probe.
    assert breaker.call(lambda: "probe") == "probe"
    assert breaker.state == "closed"


# -- Timeouts.coerce -----------------------------------------------------------------------------


def test_coerce_a_number_sets_deadline_and_read_and_caps_connect() -> None:
    assert Timeouts.coerce(2.5) == Timeouts(connect=2.5, read=2.5, deadline=2.5)
    assert Timeouts.coerce(60) == Timeouts(connect=5.0, read=60.0, deadline=60.0)


def test_coerce_none_gives_the_defaults_and_timeouts_pass_through() -> None:
    custom = Timeouts(connect=1, read=2, deadline=3)
    assert (Timeouts.coerce(None), Timeouts.coerce(custom)) == (Timeouts(), custom)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True, "2"], ids=repr)
def test_coerce_rejects_invalid_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Timeouts.coerce(value)  # type: ignore[arg-type]


# -- environment ---------------------------------------------------------------------------------


def test_base_url_comes_from_the_environment_when_not_given(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("SARK_GATEWAY_URL", "https://gw.example:8443")
    assert resolve_base_url(None) == "https://gw.example:8443"


def test_base_url_argument_wins_over_the_environment(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("SARK_GATEWAY_URL", "https://env.example")
    assert resolve_base_url("http://arg.example") == "http://arg.example"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://gw.test/", "http://gw.test"), ("https://gw.test/base/", "https://gw.test/base"),
     ("http://gw.test//", "http://gw.test")],
)
def test_base_url_trailing_slashes_are_stripped(url: str, expected: str) -> None:
    assert resolve_base_url(url) == expected


def test_missing_base_url_names_the_environment_variable(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="SARK_GATEWAY_URL"):
        resolve_base_url(None)


@pytest.mark.parametrize(
    "url",
    ["ftp://gw.test", "gw.test", "file:///etc/passwd", "http://", "https:///path", "ws://gw.test"],
)
def test_base_url_must_be_http_or_https_with_a_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        resolve_base_url(url)


@pytest.mark.parametrize("url", ["http://user:pw@gw.test", "https://user@gw.test/"])
def test_base_url_with_credentials_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="must not carry credentials"):
        resolve_base_url(url)


@pytest.mark.parametrize("url", ["http://gw.test/?a=1", "http://gw.test/#frag"])
def test_base_url_with_query_or_fragment_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="query or fragment"):
        resolve_base_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://admin:hunter2@gw.test/?x=1", "ftp://admin:hunter2@gw.test",
     "http://gw.test/?api_key=hunter2", "gw.test?token=hunter2"],
)
def test_rejected_base_url_message_never_contains_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_base_url(url)
    assert "hunter2" not in str(info.value)


def test_base_url_must_be_a_str() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        resolve_base_url(b"http://gw.test")  # type: ignore[arg-type]


def test_api_key_comes_from_the_environment_when_not_given(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("SARK_API_KEY", "env-key")
    assert resolve_api_key(None) == "env-key"


def test_api_key_argument_wins_over_the_environment(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("SARK_API_KEY", "env-key")
    assert resolve_api_key("arg-key") == "arg-key"


def test_no_api_key_anywhere_means_none(no_env: pytest.MonkeyPatch) -> None:
    assert resolve_api_key(None) is None


@pytest.mark.parametrize("key", ["", "a\nb", "a\rb", 123], ids=repr)
def test_api_key_must_be_a_non_empty_single_line_str(key: object) -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        resolve_api_key(key)  # type: ignore[arg-type]


# -- GatewayClient construction ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "8"], ids=repr)
def test_client_rejects_bad_max_workers(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_workers"):
        GatewayClient("http://gateway.test", max_workers=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["grpc", "HTTP", "", None], ids=repr)
def test_client_rejects_unknown_transport_mode(mode: object) -> None:
    with pytest.raises(ConfigurationError, match="transport_mode"):
        GatewayClient("http://gateway.test", transport_mode=mode)  # type: ignore[arg-type]


def test_client_without_url_or_environment_raises(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="no gateway URL"):
        GatewayClient()


@pytest.mark.parametrize(("arg", "value"), [("retry", 3), ("breaker", {"failure_threshold": 1})])
def test_client_rejects_policies_of_the_wrong_type(arg: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy and BreakerPolicy"):
        GatewayClient("http://gateway.test", **{arg: value})  # type: ignore[arg-type]


def test_client_number_timeout_is_coerced() -> None:
    client = GatewayClient("http://gateway.test", timeout=2.5)
    assert client.timeouts == Timeouts(connect=2.5, read=2.5, deadline=2.5)
    client.close()


# `responses`, not a MockTransport: the URL and X-API-Key are pinned as the HTTP transport puts
# them on the wire, and a MockTransport would replace that transport.
@responses.activate
def test_client_picks_up_url_and_api_key_from_the_environment(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("SARK_GATEWAY_URL", "http://env-gateway.test/")
    no_env.setenv("SARK_API_KEY", "env-key")
    responses.get("http://env-gateway.test/health", json={"status": "healthy"})
    with GatewayClient(retry=RetryPolicy(attempts=1)) as client:
        assert client.base_url == "http://env-gateway.test"
        client.health()
    assert [call.request.url for call in responses.calls] == ["http://env-gateway.test/health"]
    assert responses.calls[0].request.headers["X-API-Key"] == "env-key"
