"""Arguments checked where they are given: a ToolCall when built, an HTTPSink's key and URL,
the CLI's SARK_USER_TOKEN; each refusal names the argument and never quotes a secret."""

from __future__ import annotations

import argparse
import traceback

import pytest

import sark_sync
from sark_sync.cli._common import UsageError, resolve_settings
from sark_sync.governance import HTTPSink

SECRET = "s3cr3t-\u00e9-value"


def text_of(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


@pytest.mark.parametrize(("options", "message"), [
    ({"server": "bad name"}, "invalid server name 'bad name'"),
    ({"tool": "../x"}, "invalid tool name '../x'"),
    ({"user_token": SECRET}, "user_token has a non-ASCII character at index 7"),
    ({"idempotency_key": " k"}, "idempotency_key starts with whitespace"),
    ({"timeout": 1e10}, "timeout must be at most 86400 seconds"),
    ({"timeout": float("nan")}, "timeout"),
    ({"parameters": ["not", "a", "mapping"]}, "parameters must be a mapping, not list"),
    ({"principal": "alice"}, "principal must be a Principal, not str"),
])
def test_a_bad_tool_call_is_refused_when_it_is_built(options: dict[str, object],
                                                     message: str) -> None:
    arguments: dict[str, object] = {"server": "demo", "tool": "echo", **options}
    with pytest.raises(sark_sync.ValidationError) as info:
        sark_sync.ToolCall(**arguments)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert SECRET not in text_of(info.value)


def test_a_good_tool_call_hides_its_token() -> None:
    call = sark_sync.ToolCall("demo", "echo", {"password": "pw"}, user_token="tok-123",
                              timeout=2, idempotency_key="key-1")
    assert "tok-123" not in repr(call) and "pw" not in repr(call)


@pytest.mark.parametrize(("key", "message"), [
    (" key", "HTTPSink api_key starts with whitespace"),
    (SECRET, "HTTPSink api_key has a non-ASCII character at index 7"),
    ("a\x00b", "HTTPSink api_key has a control character at index 1"),
    ("a\r\nX-Evil: 1", "HTTPSink api_key has a control character at index 1"),
    ("", "HTTPSink api_key is empty"),
    (5, "HTTPSink api_key must be a str, not int"),
])
def test_an_http_sinks_key_is_a_header_value_never_quoted(key: object, message: str) -> None:
    with pytest.raises(sark_sync.ConfigurationError) as info:
        HTTPSink("http://127.0.0.1:9", api_key=key)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    if isinstance(key, str) and key:
        assert key not in text_of(info.value)


def test_an_http_sinks_url_is_named_as_its_own() -> None:
    with pytest.raises(sark_sync.ConfigurationError) as info:
        HTTPSink("http://[::1", api_key="k")
    assert str(info.value).startswith("HTTPSink url cannot be parsed")


def test_the_clis_user_token_variable_is_checked_and_named_never_quoted() -> None:
    with pytest.raises(UsageError) as info:
        resolve_settings(argparse.Namespace(), {"SARK_USER_TOKEN": SECRET})
    assert str(info.value).startswith("SARK_USER_TOKEN has a non-ASCII character at index 7")
    assert SECRET not in text_of(info.value)


def test_an_empty_user_token_variable_counts_as_unset() -> None:
    assert resolve_settings(argparse.Namespace(), {"SARK_USER_TOKEN": ""}).user_token is None


@pytest.mark.parametrize(("options", "message"), [
    ({"idle_timeout": 1e10}, "idle_timeout must be at most 86400 seconds (24 h)"),
    ({"idle_timeout": True}, "idle_timeout must be a number of seconds, not bool"),
    ({"idle_timeout": 0}, "idle_timeout must be > 0"),
    ({"max_reconnects": 10**9}, "max_reconnects must be an int from 0 to 10,000"),
    ({"max_reconnects": -1}, "max_reconnects must be an int from 0 to 10,000"),
    ({"max_event_bytes": 0}, "max_event_bytes must be an int from 1 to 1,073,741,824"),
    ({"max_event_bytes": 2**40}, "max_event_bytes must be an int from 1 to 1,073,741,824"),
])
def test_stream_events_refuses_values_beyond_their_limits_before_connecting(
        options: dict[str, object], message: str) -> None:
    with sark_sync.GatewayClient("http://127.0.0.1:9", api_key="k") as client:
        with pytest.raises(sark_sync.ValidationError) as info:
            client.stream_events(**options)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
