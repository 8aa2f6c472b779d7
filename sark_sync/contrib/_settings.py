"""The integrations' settings, in one shape: a mapping of upper-case keys to client options.

Django reads it from ``settings.SARK_SYNC``; Flask from the ``SARK_SYNC_<KEY>`` entries of
``app.config``. Both hand it to :func:`client_options`, so a setting means the same thing in
every framework and a mistake is reported the same way (a :class:`ConfigurationError` naming
the key, never quoting its value, which may be a credential)::

    BASE_URL        the gateway URL              default $SARK_GATEWAY_URL
    API_KEY         the application's key        default $SARK_API_KEY
    TIMEOUT         seconds, a Timeouts, or a mapping of its fields   default $SARK_TIMEOUT
    RETRY           a RetryPolicy or a mapping of its fields
    BREAKER         a BreakerPolicy or a mapping of its fields
    AUTHORIZER      a client authorizer (an OPAAuthorizer, a callable ...)
    AUDIT           the client's ``audit`` (a sink, an Auditor, a list; [] for none)
    LOCAL_SERVERS   ``{"name": [command...]}``: MCP servers run over stdio
    REMOTE_SERVERS  ``{"name": url}``: MCP servers by URL
    OPTIONS         any other keyword arguments of GatewayClient (max_workers, verify ...)

A key left out, or set to None, takes the client's default (and so the environment).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._config import BreakerPolicy, RetryPolicy, Timeouts, check_seconds
from .._exceptions import ConfigurationError

__all__ = ["ENV_TIMEOUT", "SETTING_KEYS", "client_options"]

#: The environment variable of the default timeout (seconds for a whole call).
ENV_TIMEOUT = "SARK_TIMEOUT"

#: setting key -> GatewayClient keyword argument.
SETTING_KEYS: dict[str, str] = {
    "BASE_URL": "base_url",
    "API_KEY": "api_key",
    "TIMEOUT": "timeout",
    "RETRY": "retry",
    "BREAKER": "breaker",
    "AUTHORIZER": "authorizer",
    "AUDIT": "audit",
    "LOCAL_SERVERS": "local_servers",
    "REMOTE_SERVERS": "remote_servers",
}

#: Value classes a setting may also be given as a mapping of their fields.
_POLICIES: dict[str, type[Any]] = {"TIMEOUT": Timeouts, "RETRY": RetryPolicy,
                                   "BREAKER": BreakerPolicy}


def client_options(settings: Mapping[str, Any], *, prefix: str = "SARK_SYNC",
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GatewayClient keyword arguments from ``settings`` (the keys above).

    :param prefix: how error messages name the settings (``SARK_SYNC["RETRY"]`` for Django,
        ``SARK_SYNC_RETRY`` for Flask: a prefix ending in ``_`` is joined without brackets).
    :param environ: where ``$SARK_TIMEOUT`` is read (default ``os.environ``).

    Raises :class:`ConfigurationError` for an unknown key, a policy mapping with an unknown
    field, or an invalid ``$SARK_TIMEOUT``; the values themselves are checked by
    GatewayClient when the client is built.
    """
    if not isinstance(settings, Mapping):
        raise ConfigurationError(f"{prefix} must be a dict, not {type(settings).__name__}")
    unknown = sorted(str(key) for key in settings if key not in SETTING_KEYS and key != "OPTIONS")
    if unknown:
        raise ConfigurationError(
            f"unknown {prefix} setting(s) {', '.join(unknown)}; known: "
            f"{', '.join([*SETTING_KEYS, 'OPTIONS'])}")
    extra = settings.get("OPTIONS") or {}
    if not isinstance(extra, Mapping):
        raise ConfigurationError(f"{_name(prefix, 'OPTIONS')} must be a dict of GatewayClient "
                                 f"arguments, not {type(extra).__name__}")
    options: dict[str, Any] = dict(extra)
    for key, argument in SETTING_KEYS.items():
        value = settings.get(key)
        if value is None:
            continue
        if key in _POLICIES and isinstance(value, Mapping):
            value = _policy(_POLICIES[key], value, _name(prefix, key))
        options[argument] = value
    if options.get("timeout") is None:
        env = os.environ if environ is None else environ
        raw = env.get(ENV_TIMEOUT, "").strip()
        if raw:
            options["timeout"] = _env_seconds(raw)
    return options


def _policy(cls: type[Any], fields: Mapping[str, Any], name: str) -> Any:
    try:
        return cls(**fields)
    except TypeError:
        known = ", ".join(cls.__dataclass_fields__)
        raise ConfigurationError(
            f"{name} has a field {cls.__name__} does not know; known: {known}") from None


def _env_seconds(raw: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise ConfigurationError(f"${ENV_TIMEOUT} must be a number of seconds") from None
    return check_seconds(f"${ENV_TIMEOUT}", number)


def _name(prefix: str, key: str) -> str:
    return f"{prefix}{key}" if prefix.endswith("_") else f'{prefix}["{key}"]'
