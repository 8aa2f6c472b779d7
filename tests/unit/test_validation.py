"""Argument checks made before any request: names, pages, parameters, header values (the
client talks to a fake gateway behind a MockTransport, which records every request)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from mock_gateway import SERVERS, FakeGateway

from sark_sync import ConfigurationError, GatewayClient, ValidationError
from sark_sync._validation import (
    validate_command,
    validate_env,
    validate_header_value,
    validate_name,
    validate_page,
)

VALID_NAMES = ["a", "A", "0", "postgres-mcp", "a.b_c-1", "x" * 128, "Z9.._--"]
INVALID_NAMES: list[object] = [
    "", "x" * 129, "../etc", "a/b", "a b", "-x", ".x", "_x", "é", "caf\u00e9", "a\nb", "a%2Fb",
    "a?b", "a#b", "a\\b", None, 1, b"abc", ["a"],
]


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[GatewayClient]:
    with gateway.client() as made:
        yield made


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name, "server") == name


@pytest.mark.parametrize("name", INVALID_NAMES, ids=repr)
def test_invalid_names_raise_validation_error(name: object) -> None:
    with pytest.raises(ValidationError, match="server name"):
        validate_name(name, "server")


def test_validation_error_is_a_configuration_error_and_a_value_error() -> None:
    with pytest.raises(ValidationError) as info:
        validate_name("a/b", "tool")
    assert isinstance(info.value, ConfigurationError) and isinstance(info.value, ValueError)


def test_a_long_invalid_name_is_shortened_in_the_message() -> None:
    with pytest.raises(ValidationError) as info:
        validate_name("x" * 200 + "/", "server")
    assert "x" * 64 + "..." in str(info.value) and "x" * 65 not in str(info.value)


OPERATIONS: list[tuple[str, Callable[[GatewayClient, Any], object]]] = [
    ("get_server", lambda c, name: c.get_server(name)),
    ("list_tools", lambda c, name: c.list_tools(name)),
    ("iter_tools", lambda c, name: c.iter_tools(name)),
    ("invoke_tool server", lambda c, name: c.invoke_tool(name, "echo", {})),
    ("invoke_tool tool", lambda c, name: c.invoke_tool("demo", name, {})),
]


@pytest.mark.parametrize("name", ["../etc", "a/b", "a b", "-x", "é", "", "x" * 129, 5], ids=repr)
@pytest.mark.parametrize(("operation", "call"), OPERATIONS, ids=[op for op, _ in OPERATIONS])
def test_client_rejects_invalid_names_before_any_request(
    gateway: FakeGateway, client: GatewayClient, operation: str,
    call: Callable[[GatewayClient, Any], object], name: object
) -> None:
    with pytest.raises(ValidationError):
        call(client, name)
    assert gateway.requests == []


def test_a_valid_name_is_url_encoded_into_the_path(gateway: FakeGateway,
                                                  client: GatewayClient) -> None:
    gateway.add("GET", f"{SERVERS}/a.b_c-1", json={"server_name": "a.b_c-1"})
    assert client.get_server("a.b_c-1").server_name == "a.b_c-1"
    assert gateway.sent() == ["GET /api/v1/servers/a.b_c-1"]


# -- pages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "page_size"), [(1, 1), (1, 1000), (99, 100)])
def test_valid_pages_are_accepted_and_returned_as_plain_ints(page: int, page_size: int) -> None:
    assert validate_page(page, page_size) == (page, page_size)


@pytest.mark.parametrize(
    ("page", "page_size", "argument"),
    [(0, 100, "page"), (-1, 100, "page"), (True, 100, "page"), ("1", 100, "page"),
     (1.0, 100, "page"), (1, 0, "page_size"), (1, 1001, "page_size"), (1, False, "page_size"),
     (1, "10", "page_size"), (1, None, "page_size")],
)
def test_invalid_pages_raise_validation_error_naming_the_argument(page: object, page_size: object,
                                                                  argument: str) -> None:
    with pytest.raises(ValidationError, match=f"^{argument} must be"):
        validate_page(page, page_size)


@pytest.mark.parametrize("kwargs", [{"page": 0}, {"page_size": 1001}, {"page_size": 0}])
def test_client_listings_reject_bad_pages_before_any_request(
    gateway: FakeGateway, client: GatewayClient, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        client.list_servers(**kwargs)
    with pytest.raises(ValidationError):
        client.list_tools(**kwargs)
    assert gateway.requests == []


# -- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"password": {"hunter2"}}, "parameters contain a value JSON cannot represent"),
        ({"password": b"hunter2"}, "parameters contain a value JSON cannot represent"),
        ({"nested": {"password": object()}}, "parameters contain a value JSON cannot represent"),
        ({"ratio": math.nan}, "parameters contain NaN or infinity"),
        ({"ratio": [math.inf]}, "parameters contain NaN or infinity"),
        ({1: "hunter2"}, "parameter names must be str, not int"),
        ({("hunter2",): 1}, "parameter names must be str, not tuple"),
    ],
    ids=["set", "bytes", "object", "nan", "inf", "int-key", "tuple-key"],
)
def test_parameters_json_cannot_carry_raise_before_any_request_without_the_value(
    gateway: FakeGateway, client: GatewayClient, parameters: dict[Any, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as info:
        client.invoke_tool("demo", "echo", parameters)
    assert str(info.value).startswith(expected)
    assert "hunter2" not in str(info.value)
    error = info.value  # nor is it chained to an error that could show the value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert gateway.requests == []


@pytest.mark.parametrize("parameters", [["a"], "a=1", 3], ids=repr)
def test_parameters_must_be_a_mapping(gateway: FakeGateway, client: GatewayClient,
                                      parameters: object) -> None:
    with pytest.raises(ValidationError, match="parameters must be a mapping"):
        client.invoke_tool("demo", "echo", parameters)  # type: ignore[arg-type]
    assert gateway.requests == []


# -- header values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["abc\r\nX-Evil: 1", "abc\nX-Evil: 1", "abc\rdef", "a\x00b", "a\tb", "", None, 5],
    ids=repr,
)
def test_header_values_with_control_characters_or_empty_are_rejected(value: object) -> None:
    with pytest.raises(ValidationError, match=r"^user_token "):
        validate_header_value(value, "user_token")


def test_a_plain_header_value_is_accepted() -> None:
    assert validate_header_value("eyJ.abc-_.x~+/=", "user_token") == "eyJ.abc-_.x~+/="


@pytest.mark.parametrize("argument", ["user_token", "idempotency_key"])
def test_client_rejects_header_injection_before_any_request(
    gateway: FakeGateway, client: GatewayClient, argument: str
) -> None:
    with pytest.raises(ValidationError) as info:
        client.invoke_tool("demo", "echo", {},
                           **{argument: "s3cr3t\r\nX-Evil: 1"})  # type: ignore[arg-type]
    assert "s3cr3t" not in str(info.value)
    assert gateway.requests == []


# -- commands and environments of local servers ----------------------------------------------------


@pytest.mark.parametrize("command", [["python"], ("python", "-m", "x"), ["a b", ""]], ids=repr)
def test_a_command_is_a_non_empty_sequence_of_str_returned_as_a_list(command: Any) -> None:
    assert validate_command(command) == list(command)


@pytest.mark.parametrize(
    "command", ["python server.py", b"python", [], (), ["python", 1], [b"python"], None, 3,
                {"python": 1}],
    ids=repr,
)
def test_a_bad_command_raises_validation_error_with_an_example(command: object) -> None:
    with pytest.raises(ValidationError, match=r"command must be a non-empty list of str, e\.g\."):
        validate_command(command)


def test_env_none_is_empty_and_a_mapping_is_copied() -> None:
    source = {"A": "1"}
    assert validate_env(None) == {}
    copied = validate_env(source)
    assert copied == source and copied is not source


@pytest.mark.parametrize("env", [{"A": 1}, {1: "a"}, {"A": None}, [("A", "1")], "A=1"], ids=repr)
def test_a_bad_env_raises_validation_error(env: object) -> None:
    with pytest.raises(ValidationError, match="env must map str to str"):
        validate_env(env)
