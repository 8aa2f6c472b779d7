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
    MAX_WORKERS, TRANSPORT_MODE, IDEMPOTENCY_KEYS, VERIFY, MAX_RESPONSE_BYTES, STARTUP_TIMEOUT
                    the GatewayClient arguments of the same names

These are the keys of Django's ``SARK_SYNC`` too. A key left out, or set to None, takes the
client's default (which reads the environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._config import BreakerPolicy, RetryPolicy, Timeouts
from .._exceptions import ConfigurationError

__all__ = ["SETTING_KEYS", "client_options"]

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
    "MAX_WORKERS": "max_workers",
    "TRANSPORT_MODE": "transport_mode",
    "IDEMPOTENCY_KEYS": "idempotency_keys",
    "VERIFY": "verify",
    "MAX_RESPONSE_BYTES": "max_response_bytes",
    "STARTUP_TIMEOUT": "startup_timeout",
}

#: Value classes a setting may also be given as a mapping of their fields.
_POLICIES: dict[str, type[Any]] = {"TIMEOUT": Timeouts, "RETRY": RetryPolicy,
                                   "BREAKER": BreakerPolicy}


def client_options(settings: Mapping[str, Any], *, prefix: str = "SARK_SYNC") -> dict[str, Any]:
    """GatewayClient keyword arguments from ``settings`` (the keys above).

    :param prefix: how error messages name the settings (``SARK_SYNC["RETRY"]`` for Django,
        ``SARK_SYNC_RETRY`` for Flask: a prefix ending in ``_`` is joined without brackets).

    Raises :class:`ConfigurationError` for an unknown key or a policy mapping with an unknown
    field; the values themselves are checked by GatewayClient when the client is built.
    """
    if not isinstance(settings, Mapping):
        raise ConfigurationError(f"{prefix} must be a dict, not {type(settings).__name__}")
    unknown = sorted(str(key) for key in settings if key not in SETTING_KEYS)
    if unknown:
        raise ConfigurationError(
            f"unknown {prefix} setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_KEYS)}")
    options: dict[str, Any] = {}
    for key, argument in SETTING_KEYS.items():
        value = settings.get(key)
        if value is None:
            continue
        if key in _POLICIES and isinstance(value, Mapping):
            value = _policy(_POLICIES[key], value, _name(prefix, key))
        options[argument] = value
    return options


def _policy(cls: type[Any], fields: Mapping[str, Any], name: str) -> Any:
    try:
        return cls(**fields)
    except TypeError:
        known = ", ".join(cls.__dataclass_fields__)
        raise ConfigurationError(
            f"{name} has a field {cls.__name__} does not know; known: {known}") from None


def _name(prefix: str, key: str) -> str:
    return f"{prefix}{key}" if prefix.endswith("_") else f'{prefix}["{key}"]'
