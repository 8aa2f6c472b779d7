"""What every ``sark-sync`` subcommand shares: exit codes, settings, parameters.

Design: a subcommand raises; :func:`sark_sync.cli.main` turns what it raised into one line on
standard error and an exit status with :func:`exit_code_for`, so that the mapping from the
:class:`~sark_sync.GatewayError` tree to exit codes lives in one table, here. Settings come
from the command line first, then from ``SARK_*`` environment variables
(:func:`resolve_settings`). Parameters are ``key=value`` words, a JSON object, or a JSON
file (:func:`parse_parameters`); error messages name the offending word by position, never
by value, since a value may be a password.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._config import ENV_API_KEY, ENV_GATEWAY_URL
from .._exceptions import (
    APIError,
    AuthenticationError,
    AuthorizationDenied,
    ConfigurationError,
    NotFoundError,
    ProcessStartError,
    RPCError,
    ServerError,
    ToolExecutionError,
    TransportNotAvailableError,
)
from .._validation import HEADER_RULE, header_value_problem

__all__ = [
    "EXIT_AUTH",
    "EXIT_DENIED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TOOL_ERROR",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "IDEMPOTENCY_HELP",
    "Settings",
    "PARAMS_HELP",
    "UsageError",
    "add_parameter_options",
    "exit_code_for",
    "parse_parameters",
    "resolve_settings",
]

#: The command did what was asked.
EXIT_OK = 0
#: The tool ran and reported an error (MCP ``isError: true``); its output is still printed.
EXIT_TOOL_ERROR = 1
#: Bad usage or configuration, or a request the gateway or server rejected as invalid.
EXIT_USAGE = 2
#: The gateway did not accept the credentials (401).
EXIT_AUTH = 3
#: The policy denied the call (403 ``policy_denied``).
EXIT_DENIED = 4
#: No such server or tool (404, or a local server without that tool).
EXIT_NOT_FOUND = 5
#: The gateway, the server or the way to them is unavailable now: try again later.
EXIT_UNAVAILABLE = 6
#: Interrupted by Ctrl-C (SIGINT), as shells report it (128 + 2).
EXIT_INTERRUPTED = 130

#: The CLI's own variables; the gateway URL and API key are the client's (:mod:`._config`).
ENV_USER_TOKEN = "SARK_USER_TOKEN"
ENV_TIMEOUT = "SARK_TIMEOUT"
#: The help of the ``key=value`` words of the subcommands that call a tool.
PARAMS_HELP = ("tool parameters as key=value; a value that parses as JSON is that value "
               "(a=2 is a number, ok=true a boolean, name='\"2\"' the string \"2\"), "
               "anything else is text")
#: The help of ``--idempotency-key``, the option of the subcommands that call a tool.
IDEMPOTENCY_HELP = ("send this Idempotency-Key: the gateway runs the tool once per key and "
                    "answers a repeated call (a re-run cron job) with the first result; "
                    "default: a new key per command, which only protects its own retries")
#: JSON-RPC codes that mean "your request is wrong" (invalid request, method, params).
_RPC_USAGE_CODES = frozenset({-32600, -32601, -32602})


class UsageError(Exception):
    """The command line or the environment is unusable (exit 2); the message says why."""


def exit_code_for(error: BaseException) -> int:
    """The exit status for an exception a subcommand raised (see :mod:`sark_sync.cli`)."""
    if isinstance(error, (UsageError, ConfigurationError, TransportNotAvailableError)):
        return EXIT_USAGE
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, AuthorizationDenied):
        return EXIT_DENIED
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, ProcessStartError) and isinstance(error.__cause__, FileNotFoundError):
        return EXIT_NOT_FOUND  # a local server's command that does not exist: no such server
    if isinstance(error, ToolExecutionError):
        return EXIT_TOOL_ERROR
    if isinstance(error, RPCError):
        return EXIT_USAGE if error.code in _RPC_USAGE_CODES else EXIT_UNAVAILABLE
    if isinstance(error, APIError) and not isinstance(error, ServerError):
        status = error.status_code
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return EXIT_USAGE  # 400, 409, 413, 422 and other 4xx: the request as sent
    # Connection failures, timeouts, the deadline, an open circuit, 408/429/5xx, malformed
    # answers, a local server that cannot start or exited, an undecidable policy.
    return EXIT_UNAVAILABLE


@dataclass(frozen=True)
class Settings:
    """The client settings of one command: flags first, then the environment."""

    url: str | None
    api_key: str | None
    user_token: str | None
    timeout: float | None
    json: bool
    debug: bool

    def __repr__(self) -> str:  # never show the credentials
        return (f"Settings(url={self.url!r}, api_key={'[secure]' if self.api_key else None}, "
                f"user_token={'[secure]' if self.user_token else None}, "
                f"timeout={self.timeout!r}, json={self.json}, debug={self.debug})")

    def require_url(self) -> str:
        if not self.url:
            raise UsageError(f"no gateway URL: pass --url or set {ENV_GATEWAY_URL}")
        return self.url


def _seconds(text: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{source} must be a number of seconds > 0") from None
    if not value > 0 or math.isinf(value):
        raise UsageError(f"{source} must be a number of seconds > 0")
    return value


def resolve_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None
                     ) -> Settings:
    """Settings from parsed ``args`` (absent options are missing attributes) and ``environ``
    (default ``os.environ``); an empty variable counts as unset."""
    env = os.environ if environ is None else environ
    timeout_text = getattr(args, "timeout", None)
    if timeout_text is not None:
        timeout: float | None = _seconds(timeout_text, "--timeout")
    elif env.get(ENV_TIMEOUT):
        timeout = _seconds(env[ENV_TIMEOUT], ENV_TIMEOUT)
    else:
        timeout = None
    user_token = getattr(args, "user_token", None)
    if user_token is None and env.get(ENV_USER_TOKEN):
        user_token = env[ENV_USER_TOKEN]
        problem = header_value_problem(user_token)
        if problem is not None:  # named as the variable it came from, never quoted
            raise UsageError(f"{ENV_USER_TOKEN} {problem}; {HEADER_RULE}")
    return Settings(
        url=getattr(args, "url", None) or env.get(ENV_GATEWAY_URL) or None,
        api_key=getattr(args, "api_key", None) or env.get(ENV_API_KEY) or None,
        user_token=user_token or None,
        timeout=timeout,
        json=bool(getattr(args, "json", False)),
        debug=bool(getattr(args, "debug", False)),
    )


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        # The decoder's message names a position, never the text itself.
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_parameter_options(parser: argparse.ArgumentParser) -> None:
    """The options that give a tool's parameters other than ``key=value`` words."""
    parser.add_argument("--json-params", metavar="JSON",
                        help="the parameters as one JSON object (key=value words win)")
    parser.add_argument("--params-file", metavar="FILE",
                        help="read the parameters as a JSON object from FILE ('-': standard "
                        "input); --json-params and key=value words win")


def parse_parameters(
    words: Sequence[str], json_text: str | None = None, params_file: str | None = None
) -> dict[str, Any]:
    """The tool's parameters: the JSON object of ``params_file`` (``-``: standard input),
    then ``json_text``, then each ``key=value`` word, later ones winning key by key.

    A value that parses as JSON is that JSON value (``a=2`` is the number 2, ``ok=true`` a
    boolean, ``tags=["x"]`` a list, ``name="2"`` the string "2"); anything else is the text
    itself (``text=hello``).
    """
    parameters: dict[str, Any] = {}
    if params_file is not None:
        source = "standard input" if params_file == "-" else f"--params-file {params_file}"
        try:
            if params_file == "-":
                text = sys.stdin.read()
            else:
                with open(params_file, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
        parameters.update(_json_object(text, source))
    if json_text is not None:
        parameters.update(_json_object(json_text, "--json-params"))
    for position, word in enumerate(words, start=1):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"parameter {position} is not key=value (e.g. text=hello)")
        parameters[key] = _parse_value(value)
    return parameters
