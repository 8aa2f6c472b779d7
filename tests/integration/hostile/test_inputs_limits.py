"""Every public argument is checked where it is given, against a documented maximum (issue 11,
item 11), and the hostile inputs no item names.

Against a real LocalGateway: each refused value raises ConfigurationError (construction) or
ValidationError (a call) naming the argument and the rule, fast, and the gateway received
nothing; the good call after it does reach the gateway.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import pytest
from support import API_KEY, paths

import sark_sync
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.timeout(20)

Make = Callable[..., sark_sync.GatewayClient]


def _then_a_good_call_goes_through(client: sark_sync.GatewayClient,
                                   gateway: LocalGateway) -> None:
    assert gateway.requests == []
    assert client.invoke_tool("demo", "echo", {"ok": 1}).structured == {"ok": 1}
    assert paths(gateway) == ["POST /api/v1/invoke"]


def test_a_timeout_of_1e10_is_refused_before_sending_not_an_overflow_error(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool("demo", "echo", timeout=1e10)
    assert str(caught.value) == "timeout must be at most 86400 seconds (24 h), got 10000000000.0"
    with pytest.raises(sark_sync.ConfigurationError) as at_construction:
        make_client(timeout=1e10)
    assert type(at_construction.value) is sark_sync.ConfigurationError
    _then_a_good_call_goes_through(client, gateway)


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://[::1", "gateway URL cannot be parsed: unbalanced brackets or an invalid IPv6 host"),
     ("http://127.0.0.1:65536", "gateway URL has an invalid port: ports are 1 to 65535"),
     ("http://127.0.0.1:80a", "gateway URL has an invalid port: ports are 1 to 65535"),
     ("gopher://127.0.0.1", "gateway URL must be http:// or https:// with a host, got scheme "
                            "'gopher' and host '127.0.0.1'"),
     ("http://127.0.0.1 /", "gateway URL has whitespace or a control character at index 16")],
    ids=["unbalanced-bracket", "port-above-65535", "port-not-a-number", "scheme", "space"],
)
def test_a_malformed_url_is_a_configuration_error_not_a_value_error(
    gateway: LocalGateway, make_client: Make, url: str, message: str
) -> None:
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        sark_sync.GatewayClient(url, api_key=API_KEY)
    assert type(caught.value) is sark_sync.ConfigurationError
    assert str(caught.value) == message
    _then_a_good_call_goes_through(make_client(), gateway)


def test_an_unhashable_server_name_is_a_validation_error_not_a_type_error(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool(["x"], "echo")  # type: ignore[arg-type]
    assert str(caught.value) == "server name must be a str, not list"
    _then_a_good_call_goes_through(client, gateway)


def test_five_million_workers_are_refused_at_once(gateway: LocalGateway, make_client: Make
                                                  ) -> None:
    started = time.monotonic()
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        make_client(max_workers=5_000_000)
    assert time.monotonic() - started < 0.5
    assert str(caught.value) == "max_workers must be an int from 1 to 1,024, got 5000000"
    _then_a_good_call_goes_through(make_client(max_workers=1_024), gateway)


def test_a_huge_page_number_is_refused_not_sent_as_a_huge_offset(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.list_servers(page=10**30)
    assert str(caught.value) == "page must be an int from 1 to 1,000,000, got an int of 100 bits"
    _then_a_good_call_goes_through(client, gateway)


# -- hostile inputs no item names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "message"),
    [(True, "timeout must be a number of seconds, not bool"),
     (math.nan, "timeout must be finite, got nan"),
     (math.inf, "timeout must be finite, got inf"),
     (-0.0, "timeout must be > 0, got 0.0")],
    ids=["bool", "nan", "inf", "negative-zero"],
)
def test_a_bool_nan_infinite_or_negative_zero_timeout_is_refused(
    gateway: LocalGateway, make_client: Make, timeout: float, message: str
) -> None:
    client = make_client()
    for call in (lambda: client.invoke_tool("demo", "echo", timeout=timeout),
                 lambda: client.list_tools("demo", timeout=timeout),
                 lambda: client.iter_servers(timeout=timeout)):
        with pytest.raises(sark_sync.ValidationError) as caught:
            call()
        assert str(caught.value) == message
    _then_a_good_call_goes_through(client, gateway)


class LyingStr(str):
    """A str whose every rendering names another server."""

    def __str__(self) -> str:
        return "../../admin"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return "../../admin"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


def test_a_str_subclass_whose_str_lies_is_sent_as_the_name_it_holds(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    assert client.get_server(LyingStr("demo")).server_name == "demo"
    result = client.invoke_tool(LyingStr("demo"), LyingStr("echo"), {"a": 1})
    assert (result.server, result.tool, result.structured) == ("demo", "echo", {"a": 1})
    assert paths(gateway) == ["GET /api/v1/servers/demo", "POST /api/v1/invoke"]
    assert b'"server":"demo","tool":"echo"' in gateway.requests[-1].body


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("the caller's mapping broke")

    def __len__(self) -> int:
        return 3


def test_a_mapping_whose_iteration_raises_is_a_validation_error(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool("demo", "echo", ExplodingMapping())
    assert str(caught.value) == "parameters could not be read: iterating them raised RuntimeError"
    assert "broke" not in str(caught.value)
    _then_a_good_call_goes_through(client, gateway)


def test_a_name_of_10000_characters_is_refused_with_a_short_message(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    for call in (lambda: client.invoke_tool("s" * 10_000, "echo"),
                 lambda: client.get_server("s" * 10_000),
                 lambda: client.breaker_for("s" * 10_000)):
        with pytest.raises(sark_sync.ValidationError) as caught:
            call()
        assert str(caught.value) == (
            "invalid server name '" + "s" * 64 + "...': names are 1-128 characters of letters, "
            "digits, '.', '_' and '-', starting with a letter or digit")
    _then_a_good_call_goes_through(client, gateway)


def test_a_server_name_with_a_unicode_lookalike_is_refused_not_sent(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool("d\u0435mo", "echo")  # a Cyrillic "е"
    assert str(caught.value).startswith("invalid server name 'd\u0435mo': names are 1-128")
    _then_a_good_call_goes_through(client, gateway)


def test_a_batch_whose_iterator_raises_midway_runs_nothing(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()

    def calls() -> Iterator[sark_sync.ToolCall]:
        yield sark_sync.ToolCall("demo", "echo", {"first": True})
        raise ValueError("the caller's generator broke")

    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_many(calls())
    assert str(caught.value) == "invoke_many could not iterate its calls: item 1 raised ValueError"
    _then_a_good_call_goes_through(client, gateway)
