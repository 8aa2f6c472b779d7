"""Checks of the options that start local MCP servers, made where the options are given.

``GatewayClient(local_servers=..., restart=..., startup_timeout=..., on_notification=...)``,
``connect_local_server``, :class:`LocalServer` and ``ServerSpec`` take their arguments from
code and from configuration files alike; a wrong type must fail at once, naming the argument
and the rule, not later as an ``AttributeError`` in a reader thread or a ``TypeError`` from
``subprocess``. Messages never quote a value that may be a secret: environment values never,
other values only by type.

Constructor and configuration arguments raise :class:`ConfigurationError`; the arguments of
one call (``connect_local_server``, ``call_tool``) raise :class:`ValidationError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Callable

from .._config import RestartPolicy
from .._exceptions import ConfigurationError

__all__ = [
    "check_callback", "check_cwd", "check_env", "check_flag", "check_line_cap",
    "check_local_servers", "check_restart", "check_seconds",
]

Error = Callable[[str], Exception]
#: Characters no environment variable name or value may hold (the kernel's separators).
_ENV_FORBIDDEN_IN_NAME = ("=", "\0")


def check_seconds(what: str, value: object, *, error: Error = ConfigurationError,
                  allow_none: bool = False, allow_zero: bool = False) -> float | None:
    """A finite number of seconds, > 0 (or >= 0 with ``allow_zero``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{what} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise error(f"{what} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise error(f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds")
    return float(value)


def check_env(what: str, env: object, *, error: Error = ConfigurationError) -> dict[str, str]:
    """Extra environment variables: a mapping of non-empty names without ``=`` or NUL to str
    values without NUL (``None``: none). Values are never shown: they may be secrets."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise error(f"{what} must be a mapping of str to str, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise error(f"{what} must map str to str")
        if not key or any(ch in key for ch in _ENV_FORBIDDEN_IN_NAME):
            raise error(f"{what} has a variable name that is empty or holds '=' or NUL")
        if "\0" in value:
            raise error(f"{what}[{key!r}] holds a NUL character")
    return dict(env)


def check_cwd(what: str, cwd: object, *, error: Error = ConfigurationError
              ) -> str | os.PathLike[str] | None:
    if cwd is None or isinstance(cwd, (str, os.PathLike)):
        if isinstance(cwd, str) and "\0" in cwd:
            raise error(f"{what} holds a NUL character")
        return cwd
    raise error(f"{what} must be a str or a path, not {type(cwd).__name__}")


def check_flag(what: str, value: object, *, error: Error = ConfigurationError) -> bool:
    if not isinstance(value, bool):
        raise error(f"{what} must be True or False, not {type(value).__name__}")
    return value


def check_callback(what: str, value: object, *, error: Error = ConfigurationError) -> Any:
    if value is not None and not callable(value):
        raise error(f"{what} must be a callable or None, not {type(value).__name__}")
    return value


def check_line_cap(what: str, value: object, *, error: Error = ConfigurationError) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{what} must be an int >= 1")
    return value


def check_restart(value: object) -> RestartPolicy:
    if not isinstance(value, RestartPolicy):
        raise ConfigurationError(f"restart must be a RestartPolicy, not {type(value).__name__}")
    return value


def check_local_servers(value: object) -> Mapping[str, object]:
    """``local_servers``: None or a mapping of names to specs (each spec is checked by
    ``ServerSpec.coerce``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "local_servers must be a mapping of names to commands, like {'files': ['python', "
            f"'server.py']}}, not {type(value).__name__}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"local_servers names must be str, not {type(name).__name__}")
    return value

