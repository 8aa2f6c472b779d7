"""The ``sark-sync`` subcommands that use the client: servers, tools, invoke, events, health.

Design: each subcommand is a ``configure_*`` function (its own arguments) and a ``run_*``
function that resolves the settings (:func:`~._common.resolve_settings`), opens one
:class:`~sark_sync.GatewayClient` for the command's lifetime, prints, and returns the exit
status. Errors are raised, never printed here: :func:`sark_sync.cli.main` turns them into one
line and an exit code. Each call is bounded by the client's deadline
(``--timeout``/``SARK_TIMEOUT``, default 30 s); ``events`` streams until ``--count`` events,
Ctrl-C or SIGTERM. The subcommands that reach one MCP server without a gateway (``local``,
``remote``) live in :mod:`._servers`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ..client import GatewayClient
from ._common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    IDEMPOTENCY_HELP,
    PARAMS_HELP,
    Settings,
    UsageError,
    add_parameter_options,
    parse_parameters,
    resolve_settings,
)
from ._output import (
    dump_json,
    event_json,
    event_line,
    finish_call,
    health_json,
    print_list,
    server_json,
    server_rows,
    tool_json,
    tool_rows,
)

__all__ = [
    "configure_events", "configure_health", "configure_invoke", "configure_servers",
    "configure_tools", "run_events", "run_health", "run_invoke", "run_servers", "run_tools",
]


def _client(settings: Settings) -> GatewayClient:
    return GatewayClient(settings.require_url(), api_key=settings.api_key,
                         timeout=settings.timeout)


# -- servers, tools, health ----------------------------------------------------------------


def configure_servers(parser: argparse.ArgumentParser) -> None:
    """``sark-sync servers``: no arguments of its own."""


def run_servers(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    with _client(settings) as client:
        servers = list(client.iter_servers())
    print_list(servers, settings.json, server_json, server_rows, empty="(no servers)")
    return EXIT_OK


def configure_tools(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="SERVER", help="only the tools of this server")


def run_tools(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    with _client(settings) as client:
        if args.server is not None:
            client.get_server(args.server)  # an unknown server is a 404, not an empty table
        tools = list(client.iter_tools(server=args.server))
    print_list(tools, settings.json, tool_json, tool_rows, empty="(no tools)")
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
    parser.add_argument("params", nargs="*", metavar="key=value", help=PARAMS_HELP)
    add_parameter_options(parser)
    parser.add_argument("--idempotency-key", metavar="KEY", help=IDEMPOTENCY_HELP)


def run_invoke(args: argparse.Namespace) -> int:
    """Call the tool once (the client retries within the deadline under the same key): with
    ``--idempotency-key``, a second command with the same key and parameters is answered
    the first result by the gateway, without running the tool again."""
    settings = resolve_settings(args)
    parameters = parse_parameters(args.params, args.json_params, args.params_file)
    with _client(settings) as client:
        result = client.invoke_tool(args.server, args.tool, parameters,
                                    user_token=settings.user_token,
                                    idempotency_key=args.idempotency_key)
    return finish_call(result, settings.json)


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
