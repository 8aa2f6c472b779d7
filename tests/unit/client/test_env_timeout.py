"""``SARK_TIMEOUT``: the library's default ``timeout`` (not only the CLI's) when none is given;
an explicit ``timeout=`` wins; an invalid value is a ConfigurationError naming the variable."""

from __future__ import annotations

import pytest

from sark_sync import ConfigurationError, GatewayClient, Timeouts
from sark_sync.testing import MockResponse, MockTransport
from sark_sync.transports import Request


def ok(request: Request) -> MockResponse:
    return MockResponse(200, json={"result": {"content": [], "structuredContent": {}}})


def client() -> GatewayClient:
    return GatewayClient(transport=MockTransport(ok))


def test_sark_timeout_is_the_clients_default_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", "2.5")
    with client() as made:
        assert made.timeouts == Timeouts.coerce(2.5)
        assert made._pipeline.deadline(None).timeout == 2.5
        assert made.with_options(retry=None).timeouts.deadline == 2.5


def test_an_explicit_timeout_wins_over_sark_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", "2.5")
    with GatewayClient(transport=MockTransport(ok), timeout=9) as made:
        assert made.timeouts.deadline == 9
    with GatewayClient(transport=MockTransport(ok), timeout=Timeouts(deadline=4)) as made:
        assert made.timeouts.deadline == 4


@pytest.mark.parametrize("value", ["", "   "])
def test_an_unset_or_empty_sark_timeout_means_the_default(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", value)
    with client() as made:
        assert made.timeouts == Timeouts()
    monkeypatch.delenv("SARK_TIMEOUT")
    with client() as made:
        assert made.timeouts == Timeouts()


def test_whitespace_around_the_number_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", " 12 ")
    with client() as made:
        assert made.timeouts.deadline == 12


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e9", "30s", "0x10"])
def test_an_invalid_sark_timeout_is_a_configuration_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", value)
    with pytest.raises(ConfigurationError) as caught:
        client()
    # The rule, never the value (a variable set by mistake may hold anything).
    assert str(caught.value) == ("SARK_TIMEOUT must be a number of seconds > 0 and at most "
                                 "86400 (24 h)")


def test_an_invalid_sark_timeout_does_not_matter_when_timeout_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARK_TIMEOUT", "abc")
    with GatewayClient(transport=MockTransport(ok), timeout=3) as made:
        assert made.invoke_tool("demo", "echo").attempts == 1
