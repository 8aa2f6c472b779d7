"""A credential the user gives is checked where it is given and never shown (issue 11, item 3).

Against a real LocalGateway: a refused api_key (argument or ``SARK_API_KEY``), user_token or
idempotency_key raises ConfigurationError/ValidationError saying what is wrong, the secret is
in no str, repr, formatted traceback or log record, and the gateway received nothing; a good
value afterwards does reach it, so "nothing received" is not the recorder failing.
"""

from __future__ import annotations

import logging
import traceback
from typing import Callable

import pytest
from support import API_KEY, paths

import sark_sync
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.timeout(20)

Make = Callable[..., sark_sync.GatewayClient]

SECRET = "Zq9SecretToken4Zq"
RULE = ("header values are 1 to 8192 visible ASCII characters, with spaces allowed only "
        "between them")


def _assert_hidden(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    shown = str(error) + repr(error) + "".join(
        traceback.format_exception(type(error), error, error.__traceback__))
    assert SECRET not in shown
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


def _a_good_call_reaches_the_gateway(make_client: Make, gateway: LocalGateway) -> None:
    assert make_client().invoke_tool("demo", "echo", {"x": 1}).structured == {"x": 1}
    assert paths(gateway) == ["POST /api/v1/invoke"]


BAD_KEYS = [
    (" " + SECRET, "api_key starts with whitespace"),
    (SECRET + "\u20ac", "api_key has a non-ASCII character at index 17"),
    (SECRET[:3] + "\x00" + SECRET, "api_key has a control character at index 3"),
    (SECRET + "\r\nX-Injected: 1", "api_key has a control character at index 17"),
]


@pytest.mark.parametrize(("key", "message"), BAD_KEYS,
                         ids=["leading-space", "non-latin-1", "nul", "crlf"])
def test_a_bad_api_key_is_refused_at_construction_and_nothing_is_sent(
    gateway: LocalGateway, make_client: Make, caplog: pytest.LogCaptureFixture, key: str,
    message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        sark_sync.GatewayClient(gateway.url, api_key=key)
    assert type(caught.value) is sark_sync.ConfigurationError
    assert str(caught.value) == f"{message}; {RULE}"
    _assert_hidden(caught.value, caplog)
    assert gateway.requests == []
    _a_good_call_reaches_the_gateway(make_client, gateway)


def test_a_bad_sark_api_key_variable_is_refused_naming_the_variable(
    gateway: LocalGateway, make_client: Make, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SARK_API_KEY", SECRET + "\u00e9")
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        sark_sync.GatewayClient(gateway.url)
    assert str(caught.value) == (
        f"the environment variable SARK_API_KEY has a non-ASCII character at index 17; {RULE}")
    _assert_hidden(caught.value, caplog)
    assert gateway.requests == []
    monkeypatch.delenv("SARK_API_KEY")
    _a_good_call_reaches_the_gateway(make_client, gateway)


@pytest.mark.parametrize(
    ("argument", "value", "problem"),
    [("user_token", "eyJ" + SECRET + "\u20ac", "has a non-ASCII character at index 20"),
     ("user_token", " " + SECRET, "starts with whitespace"),
     ("user_token", SECRET + "\x00", "has a control character at index 17"),
     ("idempotency_key", SECRET + "\r\nX-Injected: 1", "has a control character at index 17"),
     ("idempotency_key", SECRET + "\t", "ends with whitespace")],
    ids=["token-non-latin-1", "token-leading-space", "token-nul", "key-crlf", "key-tab"],
)
def test_a_bad_header_argument_of_a_call_is_refused_and_nothing_is_sent(
    gateway: LocalGateway, make_client: Make, caplog: pytest.LogCaptureFixture, argument: str,
    value: str, problem: str
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    for call in (lambda: client.invoke_tool("demo", "echo", {}, **{argument: value}),
                 lambda: client.submit("demo", "echo", {}, **{argument: value}),
                 lambda: client.invoke_many([sark_sync.ToolCall("demo", "echo",
                                                                **{argument: value})])):
        with pytest.raises(sark_sync.ValidationError) as caught:
            call()
        assert str(caught.value) == f"{argument} {problem}; {RULE}"
        _assert_hidden(caught.value, caplog)
    assert gateway.requests == []
    _a_good_call_reaches_the_gateway(make_client, gateway)


def test_credentials_in_the_gateway_url_are_refused_without_quoting_them(
    gateway: LocalGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host_port = gateway.url.split("://", 1)[1]
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        sark_sync.GatewayClient(f"http://admin:{SECRET}@{host_port}", api_key=API_KEY)
    assert str(caught.value) == (
        "gateway URL must not carry credentials (user:password@); use api_key=")
    _assert_hidden(caught.value, caplog)
    assert gateway.requests == []


def test_the_key_of_a_good_client_is_never_in_an_error_of_the_gateway(
    gateway: LocalGateway, make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(api_key=SECRET)  # a key the gateway does not know: 401
    with pytest.raises(sark_sync.AuthenticationError) as caught:
        client.invoke_tool("demo", "echo", user_token="eyJ" + SECRET)
    assert caught.value.status_code == 401
    _assert_hidden(caught.value, caplog)
    assert SECRET not in repr(client)
