"""The ``sark-sync`` command: governed MCP tool calls from a shell.

Design: each subcommand is a :class:`Command` registered in :data:`COMMANDS`, a function that
adds its arguments to an argparse subparser and a function that runs it and returns the exit
status, so a new subcommand is one more entry. :func:`main` parses, dispatches, turns what a
subcommand raised into one line on standard error and returns the status (it never calls
``sys.exit``; the ``sark-sync`` script and ``python -m sark_sync.cli`` do)::

    sark-sync servers                          registered servers (a table)
    sark-sync tools [--server S]               their tools
    sark-sync invoke SERVER TOOL [key=value ...] [--json-params '{...}' | --params-file F|-]
                     [--idempotency-key KEY]   the gateway runs the tool once per key
    sark-sync events [--types a,b] [--last-event-id N] [--count N]
    sark-sync health                           the gateway's /health
    sark-sync local [--call TOOL [key=value ...]] -- COMMAND ARGS...   a local stdio server
    sark-sync remote URL [--call TOOL [key=value ...]] [--header 'N: V']  an MCP server by URL
    sark-sync serve [--config F] [--demo] ...  run a LocalGateway on loopback
    sark-sync demo                             a guided tour (a few seconds)

Options of the client commands, before or after the subcommand (flags win over variables)::

    --url URL          SARK_GATEWAY_URL   the gateway
    --api-key KEY      SARK_API_KEY       sent as X-API-Key; never printed
    --user-token JWT   SARK_USER_TOKEN    the end user, sent as Authorization: Bearer
    --timeout SECONDS  SARK_TIMEOUT       deadline of each call (default 30)
    --json                                one JSON document (JSON lines for `events`);
                                          errors as one JSON line on standard error
    --debug                               debug logging and tracebacks on standard error

``serve`` and ``demo`` take ``--debug`` only; ``remote`` takes ``--timeout``, ``--json`` and
``--debug``, and its server's headers from ``--header`` or ``SARK_MCP_HEADERS``. Prefer the
variables to ``--api-key``, ``--user-token`` and ``--header``: a command line is visible to
other users of the machine.

Exit status (the same for every subcommand; ``serve`` and ``demo`` use 0, 1 and 2)::

    0    success
    1    the tool ran and reported an error (isError), its output printed; or an
         unexpected internal error (--debug shows its traceback)
    2    usage or configuration error, or a request rejected as invalid (400, 409, 413,
         422, other 4xx; a JSON-RPC invalid request/params from a local server)
    3    authentication failed (401: API key or user token)
    4    denied by policy (403 policy_denied); the policy's reason is in the message
    5    not found (404: no such server or tool; a URL the server does not serve; a local
         server's command that does not exist)
    6    unavailable: connection failed, timeout, deadline exceeded, circuit open, 408,
         429, 5xx, a malformed answer, a local server that could not start or exited,
         and `health` reporting anything but "healthy"

A kind of error has one status whatever the server: an unknown tool exits 5 on a server of
the gateway, a stdio server it hosts, a local server and a remote one alike.
    130  interrupted (Ctrl-C); `events` ends with 0 on Ctrl-C or SIGTERM instead

An error is one line on standard error, ``sark-sync: error: <Error>: <message>``; with
``--debug`` the traceback comes first. Under ``--json`` it is one JSON line on standard error
instead, ``{"error": {"type": ..., "message": ..., "exit_code": ..., <context>}}``
(:mod:`._errors`), argparse's usage errors included. Secrets (API key, user token, parameter
values) are never printed: messages name parameters by position or key, never by value.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Callable, NoReturn

from ..__version__ import __version__
from .._exceptions import GatewayError
from ._client import (
    configure_events,
    configure_health,
    configure_invoke,
    configure_servers,
    configure_tools,
    run_events,
    run_health,
    run_invoke,
    run_servers,
    run_tools,
)
from ._common import EXIT_INTERRUPTED, EXIT_TOOL_ERROR, EXIT_USAGE, UsageError, exit_code_for
from ._demo import run_demo
from ._errors import report_error
from ._serve import configure_serve, run_serve
from ._servers import configure_local, configure_remote, run_local, run_remote

__all__ = ["COMMANDS", "Command", "main"]

#: Global options of the client commands: (flags, argparse keywords).
_CLIENT_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, object]], ...] = (
    (("--url",), {"metavar": "URL", "help": "the gateway (default: $SARK_GATEWAY_URL)"}),
    (("--api-key",), {"metavar": "KEY",
                      "help": "X-API-Key (default: $SARK_API_KEY, which is safer: a command "
                              "line is visible to other users)"}),
    (("--user-token",), {"metavar": "JWT",
                         "help": "the end user's token (default: $SARK_USER_TOKEN)"}),
    (("--timeout",), {"metavar": "SECONDS",
                      "help": "deadline of each call (default: $SARK_TIMEOUT, else 30)"}),
    (("--json",), {"action": "store_true",
                   "help": "machine output: one JSON document (JSON lines for events)"}),
)
_DEBUG_OPTION = (("--debug",), {"action": "store_true",
                                "help": "debug logging and tracebacks on standard error"})


@dataclass(frozen=True)
class Command:
    """A subcommand: how to declare its arguments and how to run it. ``client`` commands take
    the global client options (``--url`` ...) after the subcommand too."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    client: bool = True
    #: False: a client command that talks to no gateway (``remote``): the gateway's options
    #: are not offered after it (given before it, the command refuses them).
    gateway: bool = True


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    """The demo takes no options: it must run as is on a fresh machine."""


def _demo(args: argparse.Namespace) -> int:
    return run_demo(sys.stdout)


#: Subcommand name -> definition; add an entry to add a subcommand.
COMMANDS: dict[str, Command] = {
    "servers": Command("list the servers registered with the gateway",
                       configure_servers, run_servers),
    "tools": Command("list the tools of every server, or of one", configure_tools, run_tools),
    "invoke": Command("call a tool through the gateway and print its result",
                      configure_invoke, run_invoke),
    "events": Command("stream the gateway's events until Ctrl-C (or --count)",
                      configure_events, run_events),
    "health": Command("check the gateway's health", configure_health, run_health),
    "local": Command("list or call the tools of a local stdio MCP server (after --)",
                     configure_local, run_local),
    "remote": Command("list or call the tools of an MCP server by URL (Streamable HTTP)",
                      configure_remote, run_remote, gateway=False),
    "serve": Command("run a LocalGateway on loopback until SIGINT/SIGTERM",
                     configure_serve, run_serve, client=False),
    "demo": Command("a guided tour of the client against an embedded LocalGateway "
                    "(a few seconds)", _configure_demo, _demo, client=False),
}


#: The client options that only make sense with a gateway.
_GATEWAY_FLAGS = ("--url", "--api-key", "--user-token")


class _ArgumentProblem(Exception):
    """What argparse found wrong with the command line, raised by :class:`_Parser` so that
    :func:`main` reports it as text (usage and message, as argparse does) or, under
    ``--json``, as an error document."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (its subparsers are of its class) whose errors are raised."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentProblem(self, message)


def _add_options(parser: argparse.ArgumentParser, client: bool, gateway: bool = True) -> None:
    # SUPPRESS: an option absent after the subcommand must not reset one given before it.
    for flags, options in (*(_CLIENT_OPTIONS if client else ()), _DEBUG_OPTION):
        if gateway or flags[0] not in _GATEWAY_FLAGS:
            parser.add_argument(*flags, default=argparse.SUPPRESS,
                                **options)  # type: ignore[arg-type]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sark-sync",
        description="Governed MCP tool calls through a SARK gateway, from the shell.",
        epilog="Exit status: 0 ok, 1 tool error, 2 usage, 3 authentication, 4 denied by "
        "policy, 5 not found, 6 unavailable, 130 interrupted. See docs/CLI.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_options(parser, client=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.configure(sub)
        _add_options(sub, client=command.client, gateway=command.gateway)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; ``local`` takes everything after ``--`` as the server's command, and
    key=value words may follow options (argparse alone would refuse them there)."""
    tail: list[str] | None = None
    if "--" in argv:
        split = argv.index("--")
        head = argv[:split]
        probe, _ = parser.parse_known_args(head)
        if probe.command == "local":
            argv, tail = head, argv[split + 1:]
    args, extras = parser.parse_known_args(argv)
    if not COMMANDS[args.command].gateway:  # named, never echoed: the value may be a secret
        misplaced = [flag for flag in _GATEWAY_FLAGS
                     if any(word == flag or word.startswith(flag + "=") for word in extras)]
        if misplaced:
            parser.error(f"{', '.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} "
                         f"not apply to {args.command}")
    takes_params = args.command == "invoke" or (args.command in ("local", "remote") and
                                                getattr(args, "call", None) is not None)
    unknown = [word for word in extras if not (takes_params and "=" in word
                                               and not word.startswith("-"))]
    if unknown:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    if extras and takes_params:
        args.params = [*args.params, *(word for word in extras if word not in unknown)]
    if tail is not None:
        args.server_command = tail
    if not COMMANDS[args.command].client:
        given = [flags[0] for flags, _ in _CLIENT_OPTIONS
                 if getattr(args, flags[0][2:].replace("-", "_"), None) not in (None, False)]
        if given:
            verb = "does" if len(given) == 1 else "do"
            parser.error(f"{', '.join(given)} {verb} not apply to {args.command}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sark-sync`` command with ``argv`` (default: ``sys.argv[1:]``); return the
    exit status. Usage errors found by argparse raise ``SystemExit(2)`` after printing the
    usage, as argparse does."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(parser, words)
    except _ArgumentProblem as problem:
        # --json among the options (not in a local server's command, after --).
        if "--json" in (words[:words.index("--")] if "--" in words else words):
            report_error(UsageError(str(problem)), EXIT_USAGE, True, sys.stderr)
        else:
            problem.parser.print_usage(sys.stderr)
            sys.stderr.write(f"{problem.parser.prog}: error: {problem}\n")
        raise SystemExit(EXIT_USAGE) from None
    debug = bool(getattr(args, "debug", False))
    with _debug_logging(debug):
        return _run(args, debug)


@contextlib.contextmanager
def _debug_logging(enabled: bool) -> Iterator[None]:
    """With --debug, every logger's DEBUG records go to standard error for this command (a
    handler of our own, removed afterwards: main() may run inside another program)."""
    if not enabled:
        yield
        return
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _run(args: argparse.Namespace, debug: bool) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt as exc:
        report_error(exc, EXIT_INTERRUPTED, as_json, sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        code = exit_code_for(exc) if isinstance(exc, (GatewayError, UsageError)) \
            else EXIT_TOOL_ERROR
        report_error(exc, code, as_json, sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
