"""Every option of a local server is checked where it is given, never quoting a secret.

GatewayClient's local-server options, ServerSpec and RestartPolicy are configuration:
ConfigurationError (exactly). LocalServer's arguments and those of one call
(connect_local_server, call_tool) are ValidationError (a ConfigurationError too). Each
message names the argument and the rule; environment values never appear, they may be
secrets. Nothing is spawned for a refused option (the leak guard would see it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hostile.stdio_peer import peer_command
from support import child_env

import sark_sync
from sark_sync.transports._mcp_pool import ServerSpec

SECRET = "hunter2-env-secret"
URL = "http://127.0.0.1:9"
COMMAND = peer_command("normal")


@pytest.mark.parametrize(("options", "message"), [
    ({"local_servers": [1]},
     "local_servers must be a mapping of names to commands, like {'files': ['python', "
     "'server.py']}, not list"),
    ({"local_servers": {1: COMMAND}}, "local_servers names must be str, not int"),
    ({"local_servers": {"bad name": COMMAND}}, "local_servers: invalid local server name "
     "'bad name': names are 1-128 characters of letters, digits, '.', '_' and '-', starting "
     "with a letter or digit"),
    ({"local_servers": {"x": {"command": COMMAND, "env": 5}}},
     "local_servers['x'].env must be a mapping of str to str, not int"),
    ({"local_servers": {"x": {"command": COMMAND, "env": {"TOKEN": 5}}}},
     "local_servers['x'].env must map str to str"),
    ({"local_servers": {"x": {"command": COMMAND, "env": {"A=B": SECRET}}}},
     "local_servers['x'].env has a variable name that is empty or holds '=' or NUL"),
    ({"local_servers": {"x": {"command": COMMAND, "env": {"TOKEN": SECRET + "\0"}}}},
     "local_servers['x'].env['TOKEN'] holds a NUL character"),
    ({"local_servers": {"x": {"command": COMMAND, "cwd": 5}}},
     "local_servers['x'].cwd must be a str or a path, not int"),
    ({"local_servers": {"x": {"command": COMMAND, "startup_timeout": "x"}}},
     "local_servers['x'].startup_timeout must be a number of seconds, not str"),
    ({"local_servers": {"x": {"command": COMMAND, "inherit_env": "yes"}}},
     "local_servers['x'].inherit_env must be True or False, not str"),
    ({"local_servers": {"x": {"command": "python server.py"}}},
     "local_servers['x']: command must be a non-empty list of str, e.g. ['python', "
     "'server.py']"),
    ({"local_servers": {"x": 5}},
     "local_servers['x'] must be a command list like ['python', 'server.py'] or a mapping "
     "with 'command'"),
    ({"restart": 5}, "restart must be a RestartPolicy, not int"),
    ({"on_notification": 5}, "on_notification must be a callable or None, not int"),
    ({"startup_timeout": "x"}, "startup_timeout must be a number of seconds, not str"),
    ({"startup_timeout": float("nan")}, "startup_timeout must be a finite number of seconds"),
    ({"startup_timeout": 0}, "startup_timeout must be > 0 seconds"),
], ids=lambda v: str(v)[:40] if isinstance(v, str) else None)
def test_client_local_server_options_are_configuration_errors(
    options: dict[str, Any], message: str,
) -> None:
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        sark_sync.GatewayClient(URL, **options)
    assert type(caught.value) is sark_sync.ConfigurationError
    assert str(caught.value) == message
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"env": 5}, "env must be a mapping of str to str, not int"),
    ({"env": {"TOKEN": SECRET + "\0"}}, "env['TOKEN'] holds a NUL character"),
    ({"cwd": 5}, "cwd must be a str or a path, not int"),
    ({"startup_timeout": "x"}, "startup_timeout must be a number of seconds, not str"),
    ({"timeout": -1}, "timeout must be > 0 seconds"),
    ({"inherit_env": None}, "inherit_env must be True or False, not NoneType"),
    ({"on_notification": "print"}, "on_notification must be a callable or None, not str"),
    ({"max_line_bytes": 0}, "max_line_bytes must be an int >= 1"),
    ({"name": "a b"}, "invalid local server name 'a b': names are 1-128 characters of "
     "letters, digits, '.', '_' and '-', starting with a letter or digit"),
])
def test_local_server_arguments_are_validation_errors(options: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(sark_sync.ValidationError) as caught:
        sark_sync.LocalServer(COMMAND, **options)
    assert str(caught.value) == message
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"env": 5}, "env must be a mapping of str to str, not int"),
    ({"cwd": 5}, "cwd must be a str or a path, not int"),
    ({"timeout": "x"}, "timeout must be a number of seconds, not str"),
    ({"startup_timeout": "x"}, "startup_timeout must be a number of seconds, not str"),
    ({"on_notification": 5}, "on_notification must be a callable or None, not int"),
    ({"inherit_env": 1}, "inherit_env must be True or False, not int"),
])
def test_connect_local_server_arguments_are_validation_errors(options: dict[str, Any],
                                                              message: str) -> None:
    with sark_sync.GatewayClient(URL) as client:
        with pytest.raises(sark_sync.ValidationError) as caught:
            client.connect_local_server(COMMAND, **options)
        assert str(caught.value) == message


def test_server_spec_checks_its_arguments() -> None:
    with pytest.raises(sark_sync.ConfigurationError) as caught:
        ServerSpec(COMMAND, env={"K": SECRET}, startup_timeout=-1)
    assert str(caught.value) == "ServerSpec.startup_timeout must be > 0 seconds"
    assert SECRET not in repr(caught.value)


@pytest.fixture
def server() -> Iterator[sark_sync.LocalServer]:
    with sark_sync.LocalServer(COMMAND, env=child_env(), name="opts") as local:
        yield local


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.call_tool(5), "tool name must be a non-empty str"),
    (lambda s: s.call_tool(""), "tool name must be a non-empty str"),
    (lambda s: s.call_tool("echo", timeout="1"), "timeout must be a number of seconds, not str"),
    (lambda s: s.call_tool("echo", timeout=float("nan")),
     "timeout must be a finite number of seconds"),
    (lambda s: s.call_tool("echo", timeout=-1), "timeout must be >= 0 seconds"),
    (lambda s: s.call_tool("echo", progress=5), "progress must be a callable or None, not int"),
    (lambda s: s.list_tools(timeout="x"), "timeout must be a number of seconds, not str"),
], ids=["int-name", "empty-name", "str-timeout", "nan-timeout", "negative-timeout",
        "progress", "list-timeout"])
def test_per_call_arguments_are_validation_errors_and_the_session_goes_on(
    server: sark_sync.LocalServer, call: Any, message: str,
) -> None:
    with pytest.raises(sark_sync.ValidationError) as caught:
        call(server)
    assert str(caught.value) == message
    assert server.call_tool("echo", {"n": 1}).text == '{"n": 1}'
