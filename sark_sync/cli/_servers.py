"""The ``sark-sync`` subcommands that reach one MCP server without a gateway: ``local`` (a
command, over stdio) and ``remote`` (a URL, over MCP Streamable HTTP or the legacy HTTP+SSE).

Design: each opens one session for the command's lifetime (a
:class:`~sark_sync.transports.LocalServer` child process, or a
:class:`~sark_sync.transports.RemoteServer`, which negotiates the revision and transport on
entry and ends its session, if the server keeps one, on exit), lists the server's tools or
calls one (:func:`_list_or_call`, shared), prints as the gateway subcommands do and returns
the exit status; what they raise is mapped to an exit status by :func:`sark_sync.cli.main`.
A tool the server does not list is a :class:`NotFoundError` (exit 5) before anything is
called.

No gateway is involved, so ``remote`` refuses the gateway's options (``--url``,
``--api-key``, ``--user-token``) and ignores their variables: the gateway's credentials are
never sent to another server. The server's own credentials are headers: ``--header 'Name:
value'`` (repeatable) or the variable ``SARK_MCP_HEADERS``, one ``Name: value`` per line,
which keeps them off the command line (``ps`` shows a command line to every user of the
machine); a flag wins over a line with the same name. A header value is never printed: a bad
one is named by its flag's position or its line, and its name.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence

from .._config import DEFAULT_DEADLINE
from .._exceptions import NotFoundError
from .._validation import HEADER_RULE, header_value_problem
from ..transports import LocalServer, RemoteServer
from ._common import (
    ENV_TIMEOUT,
    EXIT_OK,
    PARAMS_HELP,
    Settings,
    UsageError,
    add_parameter_options,
    parse_parameters,
    resolve_settings,
)
from ._output import finish_call, print_list, tool_json, tool_rows

__all__ = ["ENV_MCP_HEADERS", "configure_local", "configure_remote", "parse_headers",
           "run_local", "run_remote"]

#: Headers for ``remote``'s server, one ``Name: value`` per line (flags win, name by name).
ENV_MCP_HEADERS = "SARK_MCP_HEADERS"
#: Headers the MCP transport sets itself: a value of the user's would break the session.
RESERVED_HEADERS = frozenset({
    "accept", "connection", "content-length", "content-type", "host", "last-event-id",
    "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id", "transfer-encoding",
})
#: The 2026-07-28 headers that mirror a tool's arguments, also set by the transport.
RESERVED_PREFIX = "mcp-param-"
#: An HTTP field name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: The gateway's options (attribute, flag): meaningless for a server reached directly.
_GATEWAY_OPTIONS = (("url", "--url"), ("api_key", "--api-key"), ("user_token", "--user-token"))


def _add_call_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--call", metavar="TOOL",
                        help="call this tool (default: list the server's tools)")
    parser.add_argument("params", nargs="*", metavar="key=value",
                        help=f"with --call: {PARAMS_HELP}")
    add_parameter_options(parser)
    parser.add_argument("--idempotency-key", metavar="KEY",
                        help="refused: only a gateway deduplicates calls (use invoke)")


def _call_parameters(args: argparse.Namespace) -> dict[str, object]:
    if args.idempotency_key is not None:  # refused, not ignored: a re-run would call again
        raise UsageError(f"--idempotency-key needs a gateway: {args.command} reaches the server "
                         "directly, and an MCP server runs every call it gets; call the tool "
                         "through the gateway with sark-sync invoke")
    if args.call is None:
        if args.params or args.json_params or args.params_file:
            raise UsageError("parameters need --call TOOL")
        return {}
    return parse_parameters(args.params, args.json_params, args.params_file)


def _list_or_call(server: LocalServer | RemoteServer, args: argparse.Namespace,
                  parameters: Mapping[str, object], settings: Settings) -> int:
    """List the tools of an open session, or call ``--call`` (a tool it lists)."""
    tools = server.list_tools()
    if args.call is None:
        print_list(tools, settings.json, tool_json,
                   lambda found: tool_rows(found, local=True), empty="(no tools)")
        return EXIT_OK
    if args.call not in {t.tool_name for t in tools}:
        names = ", ".join(t.tool_name for t in tools) or "none"
        raise NotFoundError(f"{server.kind} {server.name!r} has no tool {args.call!r} "
                            f"(its tools: {names})")
    return finish_call(server.call_tool(args.call, parameters), settings.json)


# -- local -----------------------------------------------------------------------------------


def configure_local(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("sark-sync local [options] [--call TOOL [key=value ...]] -- COMMAND "
                    "[ARGS ...]")
    _add_call_options(parser)
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
    parameters = _call_parameters(args)
    timeout = settings.timeout if settings.timeout is not None else DEFAULT_DEADLINE
    server = LocalServer(command, env=_environment(args.env), inherit_env=args.inherit_env,
                         timeout=timeout, startup_timeout=min(timeout, 10.0))
    with server.start():
        return _list_or_call(server, args, parameters, settings)


# -- remote ----------------------------------------------------------------------------------


def configure_remote(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("sark-sync remote [options] URL [--call TOOL [key=value ...]] "
                    "[--header 'Name: value' ...] [--transport T] [--protocol-version V]")
    parser.add_argument("server_url", metavar="URL",
                        help="the MCP server's endpoint, e.g. http://127.0.0.1:8000/mcp")
    _add_call_options(parser)
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="send this header on every request, e.g. 'Authorization: Bearer "
                        f"...' (repeatable; safer in ${ENV_MCP_HEADERS}, one per line: a "
                        "command line is visible to other users)")
    parser.add_argument("--name", metavar="NAME",
                        help="the server's name in results and messages (default: its host)")
    parser.add_argument("--transport", default="auto", metavar="auto|streamable-http|sse",
                        help="the wire: Streamable HTTP, falling back to the legacy HTTP+SSE "
                        "when the server refuses it (auto, the default), or only one of them")
    parser.add_argument("--protocol-version", default="auto", metavar="VERSION",
                        help="the MCP revision: auto (the default) tries 2026-07-28 and falls "
                        "back to 2025-11-25; or one of 2026-07-28, 2025-11-25, 2025-06-18, "
                        "2025-03-26, 2024-11-05")


def _header(text: str, source: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or _TOKEN.fullmatch(name) is None:
        raise UsageError(f"{source} is not 'Name: value' with a valid header name")
    if name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_PREFIX):
        raise UsageError(f"{source}: {name} is set by the MCP transport itself")
    problem = header_value_problem(value)
    if problem is not None:  # described, never quoted: it may be a credential
        raise UsageError(f"{source}: the value of {name} {problem}; {HEADER_RULE}")
    return name, value


def parse_headers(flags: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The headers of ``SARK_MCP_HEADERS`` in ``environ`` (blank lines skipped), then those of
    ``--header``; a later one replaces an earlier one of the same name, whatever its case."""
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}  # lower-case name -> the spelling in ``headers``

    def put(name: str, value: str) -> None:
        headers.pop(spelling.get(name.lower(), name), None)
        spelling[name.lower()] = name
        headers[name] = value

    for number, line in enumerate(environ.get(ENV_MCP_HEADERS, "").splitlines(), start=1):
        if line.strip():
            put(*_header(line, f"{ENV_MCP_HEADERS} line {number}"))
    for position, text in enumerate(flags, start=1):
        put(*_header(text, f"--header {position}"))
    return headers


def run_remote(args: argparse.Namespace) -> int:
    given = [flag for attribute, flag in _GATEWAY_OPTIONS if hasattr(args, attribute)]
    if given:
        raise UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply "
                         "to remote: the server is the URL; send its credentials with --header")
    # Only the timeout of the environment: the gateway's URL, key and token are not for it.
    settings = resolve_settings(args, {ENV_TIMEOUT: os.environ.get(ENV_TIMEOUT, "")})
    parameters = _call_parameters(args)
    headers = parse_headers(args.header, os.environ)
    timeout = settings.timeout if settings.timeout is not None else DEFAULT_DEADLINE
    with RemoteServer(args.server_url, name=args.name, headers=headers, timeout=timeout,
                      transport=args.transport,
                      protocol_version=args.protocol_version) as server:
        return _list_or_call(server, args, parameters, settings)
