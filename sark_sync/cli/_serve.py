"""`sark-sync serve`: a LocalGateway on loopback until SIGINT or SIGTERM.

``sark-sync serve`` runs a :class:`~sark_sync.testing.LocalGateway` on loopback, prints its
URL on one line of standard output, and serves until SIGINT or SIGTERM, then stops it cleanly
and exits 0. Configuration errors exit 2 with a message on standard error. The JSON config
file holds the LocalGateway's options plus ``servers``::

    {"api_keys": ["k1"], "jwt_secret": "...", "require_user_token": false,
     "servers": [{"name": "demo", "sensitivity_level": "low", "authorized_teams": ["data"],
                  "tools": ["echo", "add"]}]}

A server's ``tools`` name built-in demo tools (default: all of them, ``echo`` and ``add``);
without ``servers``, one server ``demo`` with every built-in tool is registered. A server with
a ``command`` instead is a stdio MCP server that the gateway starts, hosts and stops::

    {"name": "demo", "command": ["python", "-m", "sark_sync.testing.demo_server"],
     "env": {"LOG_LEVEL": "debug"}, "cwd": "/srv", "call_timeout": 30}

(optional: ``env``, ``cwd``, ``inherit_env``, ``startup_timeout``, ``call_timeout``,
``sensitivity_level``, ``authorized_teams``). A server cannot have both ``tools`` and
``command``. A stdio server that cannot start ends ``serve`` with exit status 1.

The event stream (``GET /api/v1/events``) is configured by the config keys ``event_buffer``,
``first_event_id``, ``ping_interval``, ``event_retry`` and ``event_framing``, or by the options
``--event-buffer``, ``--first-event-id``, ``--ping-interval`` and ``--event-framing``, which
win over the config. To restart a gateway whose clients should resume their streams, give it
``--first-event-id`` one more than the last id the previous one issued.

Authorization: the config key ``policy`` or ``--policy`` (which wins) is ``"builtin"`` (the
shipped gateway.rego's rules, built in) or an OPA base URL; without it every authenticated
call runs. Give the servers and tools their ``sensitivity_level`` and ``authorized_teams``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .._exceptions import GatewayError
from ..testing import LocalGateway
from ._builtin_tools import BUILTIN_TOOLS
from ._demo_gateway import build_gateway, demo_variables, issue_users

__all__ = ["ConfigError", "configure_serve", "run_serve"]

_GATEWAY_OPTIONS = {
    "api_keys": list,
    "jwt_secret": str,
    "require_user_token": bool,
    "host": str,
    "port": int,
    "max_request_bytes": int,
    "version": str,
    "event_buffer": int,
    "first_event_id": int,
    "ping_interval": float,
    "event_retry": float,
    "event_framing": str,
    "policy": str,
}
#: Command-line options that override config keys of the same name.
_OVERRIDING_ARGS = ("host", "port", "event_buffer", "first_event_id", "ping_interval",
                    "event_framing", "policy")
_SERVER_OPTIONS = {
    "name",
    "transport",
    "sensitivity_level",
    "authorized_teams",
    "health_status",
    "server_url",
    "tools",
}
#: Keys of a server entry that runs a stdio MCP server (``command``) instead of built-ins.
_STDIO_SERVER_OPTIONS = {
    "name",
    "sensitivity_level",
    "authorized_teams",
    "command",
    "env",
    "cwd",
    "inherit_env",
    "startup_timeout",
    "call_timeout",
}
#: Seconds between checks of the stop flag while serving (signals also wake the wait).
_SERVE_POLL = 1.0


class ConfigError(ValueError):
    """The serve configuration is unusable; the message says why."""


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 0: any free port)")
    parser.add_argument("--config", metavar="FILE.json", help="JSON configuration file")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted X-API-Key (repeatable; added to the config's api_keys; "
        "with neither, the LocalGateway default 'test-key')",
    )
    parser.add_argument(
        "--event-buffer", type=int, metavar="N",
        help="events kept for replay to reconnecting streams (default and minimum 10000)",
    )
    parser.add_argument(
        "--first-event-id", type=int, metavar="N",
        help="id of the first event (default 1); the previous gateway's last id + 1 lets its "
        "stream clients resume",
    )
    parser.add_argument(
        "--ping-interval", type=float, metavar="SECONDS",
        help="seconds of silence before an event stream gets a ': ping' comment (default 15)",
    )
    parser.add_argument(
        "--event-framing", choices=("chunked", "close"),
        help="event stream body framing: Transfer-Encoding chunked (default) or ended by "
        "closing the connection",
    )
    parser.add_argument(
        "--policy", metavar="builtin|URL",
        help="authorize every invoke: 'builtin' (the shipped gateway.rego's rules) or an OPA "
        "base URL; default: no policy (every authenticated call runs)",
    )
    parser.add_argument(
        "--demo", action="store_true",
        help="serve the catalogue of `sark-sync demo` (the demo MCP server over stdio, the "
        "shipped policy's rules, users alice and bob) and print, on standard error, the "
        "variables that point the CLI at it; takes no other option but --port",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")


def _load_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError("the config must be a JSON object")
    return config


def _gateway_options(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    unknown = set(config) - set(_GATEWAY_OPTIONS) - {"servers"}
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
    options: dict[str, Any] = {}
    for key, kind in _GATEWAY_OPTIONS.items():
        if key in config:
            value = config[key]
            kinds = (int, float) if kind is float else kind
            if not isinstance(value, kinds) or (kind in (int, float) and isinstance(value, bool)):
                raise ConfigError(f"config key {key!r} must be a {kind.__name__}")
            options[key] = value
    for key in _OVERRIDING_ARGS:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if not all(isinstance(key, str) for key in options.get("api_keys", [])):
        raise ConfigError("config key 'api_keys' must be a list of strings")
    if args.api_keys:
        options["api_keys"] = [*options.get("api_keys", []), *args.api_keys]
    return options


def _add_servers(gateway: LocalGateway, servers: object) -> None:
    if servers is None:
        servers = [{"name": "demo", "sensitivity_level": "low"}]
    if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
        raise ConfigError("config key 'servers' must be a list of objects")
    for entry in servers:
        if "command" in entry:
            _add_stdio_server(gateway, entry)
            continue
        unknown = set(entry) - _SERVER_OPTIONS
        if unknown or "name" not in entry:
            raise ConfigError(f"a server needs 'name' and takes only {sorted(_SERVER_OPTIONS)}")
        options = {k: v for k, v in entry.items() if k != "tools"}
        tools = entry.get("tools", list(BUILTIN_TOOLS))
        if not isinstance(tools, list) or any(t not in BUILTIN_TOOLS for t in tools):
            raise ConfigError(f"a server's tools must be a list of: {', '.join(BUILTIN_TOOLS)}")
        try:
            gateway.add_server(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"server {entry['name']!r}: {exc}") from exc
        for name in tools:
            tool = BUILTIN_TOOLS[name]
            gateway.add_tool(
                entry["name"],
                name,
                tool.func,
                input_schema=tool.input_schema,
                annotations=tool.annotations,
            )


def _add_stdio_server(gateway: LocalGateway, entry: dict[str, Any]) -> None:
    if "tools" in entry:
        raise ConfigError(
            f"server {entry.get('name')!r} has both 'tools' and 'command': built-in tools or a "
            "stdio server, not both"
        )
    unknown = set(entry) - _STDIO_SERVER_OPTIONS
    if unknown or "name" not in entry:
        raise ConfigError(
            f"a stdio server needs 'name' and 'command' and takes only "
            f"{sorted(_STDIO_SERVER_OPTIONS)}"
        )
    command, env = entry["command"], entry.get("env")
    if not isinstance(command, list) or not command or \
            not all(isinstance(part, str) for part in command):
        raise ConfigError(f"server {entry['name']!r}: 'command' must be a non-empty list of str")
    if env is not None and (not isinstance(env, dict) or not all(
            isinstance(value, str) for value in env.values())):
        raise ConfigError(f"server {entry['name']!r}: 'env' must map names to strings")
    if not isinstance(entry.get("cwd", ""), str):
        raise ConfigError(f"server {entry['name']!r}: 'cwd' must be a string")
    if not isinstance(entry.get("inherit_env", False), bool):
        raise ConfigError(f"server {entry['name']!r}: 'inherit_env' must be a boolean")
    options = {k: v for k, v in entry.items() if k != "name"}
    try:
        gateway.add_stdio_server(entry["name"], **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"server {entry['name']!r}: {exc}") from exc


def run_serve(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.demo:
            gateway = _demo_gateway(args)
        else:
            config = _load_config(args.config)
            gateway = LocalGateway(**_gateway_options(config, args))
            _add_servers(gateway, config.get("servers"))
    except (ConfigError, TypeError, ValueError) as exc:
        print(f"sark-sync serve: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        try:
            gateway.start()
        except GatewayError as exc:  # a stdio server could not start (before the bind)
            print(f"sark-sync serve: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"sark-sync serve: error: cannot bind: {exc}", file=sys.stderr)
            return 1
        try:
            print(gateway.url, flush=True)
            if args.demo:
                _print_demo_exports(gateway)
            while not stop.wait(_SERVE_POLL):
                pass
        finally:
            gateway.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _demo_gateway(args: argparse.Namespace) -> LocalGateway:
    others = [option for option, value in (
        ("--config", args.config), ("--host", args.host), ("--api-key", args.api_keys),
        ("--policy", args.policy), ("--event-buffer", args.event_buffer),
        ("--first-event-id", args.first_event_id), ("--ping-interval", args.ping_interval),
        ("--event-framing", args.event_framing)) if value is not None]
    if others:
        raise ConfigError(f"--demo takes no {', '.join(others)} (only --port)")
    return build_gateway(port=args.port if args.port is not None else 0)


def _print_demo_exports(gateway: LocalGateway) -> None:
    """The demo's own loopback-only credentials, for a second terminal (standard error, so
    that standard output stays the URL alone)."""
    notes = {"SARK_USER_TOKEN": "   # alice: developer, team finance",
             "VIEWER_TOKEN": "   # bob: viewer, team finance"}
    sys.stderr.write("# the demo gateway: paste these into another shell to try the CLI\n")
    for name, value in demo_variables(gateway, issue_users(gateway)).items():
        sys.stderr.write(f"export {name}={value}{notes.get(name, '')}\n")
    sys.stderr.flush()
