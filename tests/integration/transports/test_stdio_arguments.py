"""What LocalServer checks before it writes, and the raw MCP tool listing.

Bad input is refused where the mistake is made, with a ValidationError that names the rule and
never the value: a command given as one string, an environment that is not str to str,
arguments JSON cannot carry. Nothing is written to the server for a refused call, so the
session stays usable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from support import child_env, demo_server_command

import sark_sync
from sark_sync.transports.stdio import StdioTransport

SECRET = "hunter2-not-for-logs"


@pytest.fixture
def server() -> Iterator[sark_sync.LocalServer]:
    with sark_sync.LocalServer(demo_server_command(), env=child_env(), name="demo") as local:
        yield local


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"text": {SECRET}}, "parameters contain a value JSON cannot represent: TypeError"),
        ({"text": [math.nan], "note": SECRET}, "parameters contain NaN or infinity: ValueError"),
        ({1: SECRET}, "parameter names must be str, not int"),
        ([SECRET], "parameters must be a mapping, not list"),
    ],
    ids=["set", "nan", "int-key", "list"],
)
def test_arguments_json_cannot_carry_raise_validation_error_and_the_session_goes_on(
    server: sark_sync.LocalServer, arguments: Any, expected: str
) -> None:
    with pytest.raises(sark_sync.ValidationError) as info:
        server.call_tool("echo", arguments)
    assert str(info.value) == expected
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    error = info.value  # nor is it chained to an error that could show the value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert server.call_tool("echo", {"text": "still here"}).text == "still here"


def test_arguments_are_checked_before_anything_is_written() -> None:
    """A transport that was never started has nowhere to write: the ValidationError, not
    "not running", proves the check comes first."""
    transport = StdioTransport(["never-started"])
    with pytest.raises(sark_sync.ValidationError, match="NaN or infinity"):
        transport.request("tools/call", {"arguments": {"x": math.inf}}, 1.0)
    with pytest.raises(sark_sync.ProcessExitedError, match="not running"):
        transport.request("tools/call", {"arguments": {"x": 1}}, 1.0)


@pytest.mark.parametrize("command", ["python server.py", [], ["python", 3]], ids=repr)
def test_a_bad_command_is_a_validation_error_before_any_spawn(command: Any) -> None:
    with pytest.raises(sark_sync.ValidationError, match="command must be a non-empty list"):
        sark_sync.LocalServer(command)


def test_a_bad_env_is_a_validation_error_before_any_spawn() -> None:
    with pytest.raises(sark_sync.ValidationError, match="env must map str to str"):
        sark_sync.LocalServer(demo_server_command(), env={"PORT": 8080})  # type: ignore[dict-item]


def test_list_mcp_tools_returns_the_tools_as_declared(server: sark_sync.LocalServer) -> None:
    raw = {tool["name"]: tool for tool in server.list_mcp_tools()}
    parsed = {tool.name: tool for tool in server.list_tools()}
    assert raw.keys() == parsed.keys()
    # What ToolInfo keeps, it keeps unchanged ...
    for name, tool in parsed.items():
        assert tool.input_schema == raw[name]["inputSchema"]
        assert tool.description == raw[name].get("description", "")
    # ... and what it does not keep is in the raw listing.
    assert raw["add"]["outputSchema"]["required"] == ["sum"]
    assert raw["echo"]["annotations"]["readOnlyHint"] is True
