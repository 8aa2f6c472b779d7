"""The ``sark-sync`` subcommands that use the client: servers, tools, invoke, events, health,
local.

Design: each subcommand is a ``configure_*`` function (its own arguments) and a ``run_*``
function that resolves the settings (:func:`~._cli_common.resolve_settings`), opens one
:class:`~sark_sync.GatewayClient` (or one :class:`~sark_sync.LocalServer`) for the command's
lifetime, prints, and returns the exit status. Errors are raised, never printed here:
:func:`sark_sync.cli.main` turns them into one line and an exit code. Each call is bounded by
the client's deadline (``--timeout``/``SARK_TIMEOUT``, default 30 s); ``events`` streams until
``--count`` events, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, Callable, TypeVar

from .._config import DEFAULT_DEADLINE
from .._exceptions import NotFoundError
from .._models import ToolResult
from ..client import GatewayClient
from ..transports import LocalServer
from ._common import (
    EXIT_OK,
    EXIT_TOOL_ERROR,
    EXIT_UNAVAILABLE,
    Settings,
    UsageError,
    parse_parameters,
    resolve_settings,
)
from ._output import (
    dump_json,
    event_json,
    event_line,
    health_json,
    print_result,
    server_json,
    server_rows,
    table,
    tool_json,
    tool_rows,
)

__all__ = [
    "configure_events", "configure_health", "configure_invoke", "configure_local",
    "configure_servers", "configure_tools", "run_events", "run_health", "run_invoke",
    "run_local", "run_servers", "run_tools",
]

_T = TypeVar("_T")

_PARAMS_HELP = ("tool parameters as key=value; a value that parses as JSON is that value "
                "(a=2 is a number, ok=true a boolean, name='\"2\"' the string \"2\"), "
                "anything else is text")


def _client(settings: Settings) -> GatewayClient:
    return GatewayClient(settings.require_url(), api_key=settings.api_key,
                         timeout=settings.timeout)


def _print_list(items: Sequence[_T], as_json: bool, to_json: Callable[[_T], dict[str, Any]],
                to_rows: Callable[[Sequence[_T]], tuple[list[str], list[list[object]]]],
                empty: str) -> None:
    """A JSON array of ``items``, or their table (``empty`` when there are none)."""
    if as_json:
        dump_json([to_json(item) for item in items])
    else:
        sys.stdout.write((table(*to_rows(items)) if items else empty) + "\n")


def _add_parameter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json-params", metavar="JSON",
                        help="the parameters as one JSON object (key=value words win)")
    parser.add_argument("--params-file", metavar="FILE",
                        help="read the parameters as a JSON object from FILE ('-': standard "
                        "input); --json-params and key=value words win")


# -- servers, tools, health ----------------------------------------------------------------


def configure_servers(parser: argparse.ArgumentParser) -> None:
    """``sark-sync servers``: no arguments of its own."""


def run_servers(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    with _client(settings) as client:
        servers = list(client.iter_servers())
    _print_list(servers, settings.json, server_json, server_rows, empty="(no servers)")
    return EXIT_OK


def configure_tools(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="SERVER", help="only the tools of this server")


def run_tools(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    with _client(settings) as client:
        if args.server is not None:
            client.get_server(args.server)  # an unknown server is a 404, not an empty table
        tools = list(client.iter_tools(server=args.server))
    _print_list(tools, settings.json, tool_json, tool_rows, empty="(no tools)")
    return EXIT_OK


def configure_health(parser: argparse.ArgumentParser) -> None:
    """``sark-sync health``: no arguments of its own."""


def run_health(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    with _client(settings) as client:
        health = client.health()
    if settings.json:
        dump_json(health_json(health))
    else:
        version = f"gateway {health.version}, " if health.version else ""
        sys.stdout.write(f"{health.status} ({version}{health.servers} servers)\n")
    return EXIT_OK if health.healthy else EXIT_UNAVAILABLE


# -- invoke ----------------------------------------------------------------------------------


def configure_invoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="SERVER", help="the server, as `servers` lists it")
    parser.add_argument("tool", metavar="TOOL", help="the tool, as `tools` lists it")
    parser.add_argument("params", nargs="*", metavar="key=value", help=_PARAMS_HELP)
    _add_parameter_options(parser)


def _finish_call(result: ToolResult, settings: Settings) -> int:
    print_result(result, settings.json, sys.stdout, sys.stderr)
    if result.is_error:
        sys.stderr.write(f"sark-sync: error: tool {result.server}/{result.tool} reported an "
                         "error (its output is above)\n")
        return EXIT_TOOL_ERROR
    return EXIT_OK


def run_invoke(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    parameters = parse_parameters(args.params, args.json_params, args.params_file)
    with _client(settings) as client:
        result = client.invoke_tool(args.server, args.tool, parameters,
                                    user_token=settings.user_token)
    return _finish_call(result, settings)


# -- events ----------------------------------------------------------------------------------


def configure_events(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--types", metavar="TYPE[,TYPE...]",
                        help="only these event types, e.g. tool_invoked,authorization_denied")
    parser.add_argument("--last-event-id", metavar="ID",
                        help="resume after this event id (0: everything the gateway still has)")
    parser.add_argument("--count", type=int, metavar="N",
                        help="stop after N events (default: stream until Ctrl-C)")


class _Stop(BaseException):
    """SIGTERM while streaming: end like Ctrl-C does. A BaseException, as KeyboardInterrupt
    is: raised by a signal handler wherever the main thread is, it must not be caught by an
    ``except Exception`` on its way out."""


def run_events(args: argparse.Namespace) -> int:
    """Print events as they come; Ctrl-C (or SIGTERM) ends the stream with exit status 0,
    since that is how a stream without ``--count`` is meant to end."""
    settings = resolve_settings(args)
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be >= 1")
    previous: Any = None
    main_thread = threading.current_thread() is threading.main_thread()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    if main_thread:
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with _client(settings) as client, client.stream_events(
            args.types, args.last_event_id, user_token=settings.user_token
        ) as stream:
            for seen, event in enumerate(stream, start=1):
                if settings.json:
                    dump_json(event_json(event), indent=None)
                else:
                    sys.stdout.write(event_line(event) + "\n")
                    sys.stdout.flush()
                if args.count is not None and seen >= args.count:
                    break
    except (KeyboardInterrupt, _Stop):
        return EXIT_OK
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


# -- local -----------------------------------------------------------------------------------


def configure_local(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("sark-sync local [options] [--call TOOL [key=value ...]] -- COMMAND "
                    "[ARGS ...]")
    parser.add_argument("--call", metavar="TOOL",
                        help="call this tool (default: list the server's tools)")
    parser.add_argument("params", nargs="*", metavar="key=value",
                        help=f"with --call: {_PARAMS_HELP}")
    _add_parameter_options(parser)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="add a variable to the server's environment, which otherwise "
                        "holds only HOME, LOGNAME, PATH, SHELL, TERM, USER and LANG "
                        "(repeatable)")
    parser.add_argument("--inherit-env", action="store_true",
                        help="give the server this process's whole environment")
    parser.set_defaults(server_command=[])  # what follows --, set by sark_sync.cli.main


def _environment(words: list[str]) -> dict[str, str]:
    env = {}
    for position, word in enumerate(words, start=1):
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {position} is not NAME=VALUE")
        env[name] = value
    return env


def run_local(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    command = list(args.server_command)
    if not command:
        raise UsageError("local needs the server's command after --, e.g. "
                         "sark-sync local -- python -m sark_sync.testing.demo_server")
    if args.call is None and (args.params or args.json_params or args.params_file):
        raise UsageError("parameters need --call TOOL")
    parameters = (parse_parameters(args.params, args.json_params, args.params_file)
                  if args.call is not None else {})
    timeout = settings.timeout if settings.timeout is not None else DEFAULT_DEADLINE
    server = LocalServer(command, env=_environment(args.env), inherit_env=args.inherit_env,
                         timeout=timeout, startup_timeout=min(timeout, 10.0))
    with server.start():
        tools = server.list_tools()
        if args.call is None:
            _print_list(tools, settings.json, tool_json,
                        lambda local_tools: tool_rows(local_tools, local=True),
                        empty="(no tools)")
            return EXIT_OK
        if args.call not in {t.tool_name for t in tools}:
            names = ", ".join(t.tool_name for t in tools) or "none"
            raise NotFoundError(f"local server {server.name!r} has no tool {args.call!r} "
                                f"(its tools: {names})")
        result = server.call_tool(args.call, parameters)
    return _finish_call(result, settings)

