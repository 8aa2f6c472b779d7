"""Secrets never shown: redact(), redact_headers(), Secret."""

from __future__ import annotations

import copy

import pytest

from sark_sync._redact import REDACTED, Secret, redact, redact_headers


@pytest.mark.parametrize(
    "key",
    ["password", "PASSWORD", "DB-Password", "db_password", "db password", "refresh_token",
     "Refresh-Token", "access token", "api_key", "API-KEY", "apikey", "client_secret",
     "private_key", "Private-Key", "credentials", "Authorization", "cookie", "session_id",
     "credit_card", "cvv", "passphrase", "ssh_passwd"],
)
def test_sensitive_keys_are_redacted_whatever_their_case_and_separators(key: str) -> None:
    assert redact({key: "s3cret", "keep": 1}) == {key: REDACTED, "keep": 1}


@pytest.mark.parametrize(
    "key",
    ["apiKey", "ApiKey", "accessToken", "clientSecret", "dbPassword",
     "privateKey", "sessionId", "creditCard", "cardNumber"],
)
def test_camel_case_sensitive_keys_are_redacted(key: str) -> None:
    assert redact({key: "s3cret"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["api.key", "private.key", "session.id"])
def test_keys_with_dot_separators_are_redacted(key: str) -> None:
    assert redact({key: "s3cret"}) == {key: REDACTED}


def test_sensitive_values_are_redacted_at_any_depth() -> None:
    value = {"a": {"b": {"c": {"d": {"password": "x", "ok": "y"}}}}}
    assert redact(value) == {"a": {"b": {"c": {"d": {"password": REDACTED, "ok": "y"}}}}}


def test_sensitive_values_inside_lists_are_redacted() -> None:
    value = {"users": [{"name": "a", "token": "t1"}, {"name": "b", "token": "t2"}], "n": [1, 2]}
    assert redact(value) == {
        "users": [{"name": "a", "token": REDACTED}, {"name": "b", "token": REDACTED}],
        "n": [1, 2],
    }


def test_a_sensitive_key_hides_its_whole_subtree() -> None:
    assert redact({"credentials": {"user": "u", "pw": "p"}}) == {"credentials": REDACTED}


def test_non_sensitive_values_are_untouched() -> None:
    value = {"query": "SELECT 1", "limit": 10, "ratio": 0.5, "flag": True, "none": None,
             "keyboard": "qwerty", "monkey": "business", "author": "ann"}
    assert redact(value) == value


def test_redact_does_not_mutate_its_input() -> None:
    value = {"password": "x", "nested": [{"token": "y"}], "t": ("a", {"secret": "z"})}
    before = copy.deepcopy(value)
    redact(value)
    assert value == before


def test_redact_turns_tuples_into_lists_like_json() -> None:
    assert redact({"t": ("a", {"secret": "z"})}) == {"t": ["a", {"secret": REDACTED}]}


def test_redact_hides_secret_objects_anywhere() -> None:
    assert redact({"header": Secret("k"), "list": [Secret("k")]}) == {
        "header": REDACTED, "list": [REDACTED]}


def test_redact_of_a_scalar_returns_it() -> None:
    assert (redact("password"), redact(3), redact(None)) == ("password", 3, None)


def test_redact_cuts_off_absurdly_deep_structures() -> None:
    value: object = "leaf"
    for _ in range(100):
        value = [value]
    result = redact(value)
    for _ in range(64):
        result = result[0]  # type: ignore[index]
    assert result == REDACTED


def test_redact_headers_hides_api_key_and_authorization() -> None:
    headers = {"X-API-Key": "sk-1", "Authorization": "Bearer jwt", "Accept": "application/json",
               "X-Request-ID": "r-1", "Cookie": "sid=1", "Proxy-Authorization": "Basic x"}
    assert redact_headers(headers) == {
        "X-API-Key": REDACTED, "Authorization": REDACTED, "Accept": "application/json",
        "X-Request-ID": "r-1", "Cookie": REDACTED, "Proxy-Authorization": REDACTED,
    }


def test_redact_headers_is_case_insensitive() -> None:
    assert redact_headers({"x-api-key": "sk", "AUTHORIZATION": "b"}) == {
        "x-api-key": REDACTED, "AUTHORIZATION": REDACTED}


def test_secret_repr_and_str_are_secure() -> None:
    secret = Secret("sk-live-123")
    assert (repr(secret), str(secret), f"{secret}") == ("[secure]", "[secure]", "[secure]")


def test_secret_reveal_returns_the_value() -> None:
    assert Secret("sk-live-123").reveal() == "sk-live-123"


def test_secret_in_a_container_repr_stays_hidden() -> None:
    assert "sk-live-123" not in repr({"k": Secret("sk-live-123")})
