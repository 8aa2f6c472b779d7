"""The ``SARK_SYNC`` setting: one dict, read when a client is built, never at import time.

``settings.SARK_SYNC`` maps upper-case keys to :class:`~sark_sync.GatewayClient` arguments
(:data:`CLIENT_KEYS`), plus the keys of the integration itself (``TOKEN_GETTER``,
``READINESS_TIMEOUT``). A key that is absent, or None, falls back to what the client does
without it: ``BASE_URL`` to ``$SARK_GATEWAY_URL``, ``API_KEY`` to ``$SARK_API_KEY``, and so on,
so a twelve-factor deployment may leave the setting out entirely.

Values may be given as Django users write settings: ``RETRY``, ``BREAKER`` and ``TIMEOUT`` as
plain dicts of the policy's fields, ``AUTHORIZER``, ``AUDIT`` (or each item of a list of them)
and ``TOKEN_GETTER`` as dotted paths to import. Every problem is a
:class:`~sark_sync.ConfigurationError` naming the key, never quoting a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Callable, Optional

from django.conf import settings
from django.utils.module_loading import import_string

from ..._config import ENV_GATEWAY_URL, BreakerPolicy, RetryPolicy, Timeouts
from ..._exceptions import ConfigurationError

__all__ = ["CLIENT_KEYS", "OWN_KEYS", "bearer_token", "client_options", "gateway_url_given",
           "raw_settings", "readiness_timeout", "token_getter"]

#: Keys of ``SARK_SYNC`` and the GatewayClient argument each one becomes.
CLIENT_KEYS: dict[str, str] = {
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
#: Keys of ``SARK_SYNC`` used by the integration rather than the client.
OWN_KEYS = frozenset({"TOKEN_GETTER", "READINESS_TIMEOUT"})

#: Seconds the readiness view waits for the gateway's health: short, since a probe that
#: hangs is a probe that fails, and orchestrators time probes out after a few seconds.
DEFAULT_READINESS_TIMEOUT = 2.0

TokenGetter = Callable[[Any], Optional[str]]


def raw_settings() -> Mapping[str, Any]:
    """``settings.SARK_SYNC`` as it is ({} when absent or None); ConfigurationError if it is not
    a dict with known keys."""
    value = getattr(settings, "SARK_SYNC", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"settings.SARK_SYNC must be a dict, not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in CLIENT_KEYS and key not in OWN_KEYS)
    if unknown:
        raise ConfigurationError(f"settings.SARK_SYNC has unknown keys: {', '.join(unknown)}")
    return value


def gateway_url_given(raw: Mapping[str, Any]) -> bool:
    """Whether a gateway URL is set, in ``SARK_SYNC["BASE_URL"]`` or ``$SARK_GATEWAY_URL``."""
    return raw.get("BASE_URL") is not None or bool(os.environ.get(ENV_GATEWAY_URL))


def client_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The GatewayClient keyword arguments that ``raw`` (a checked ``SARK_SYNC``) sets."""
    options: dict[str, Any] = {}
    for key, argument in CLIENT_KEYS.items():
        value = raw.get(key)
        if value is None:
            continue
        if key == "RETRY":
            value = _policy(key, value, RetryPolicy)
        elif key == "BREAKER":
            value = _policy(key, value, BreakerPolicy)
        elif key == "TIMEOUT" and isinstance(value, Mapping):
            value = _policy(key, value, Timeouts)
        elif key == "AUTHORIZER":
            value = _imported(key, value)
        elif key == "AUDIT":
            value = [_imported(key, item) for item in value] if isinstance(value, (list, tuple)) \
                else _imported(key, value)
        options[argument] = value
    return options


def token_getter(raw: Mapping[str, Any]) -> TokenGetter:
    """``SARK_SYNC["TOKEN_GETTER"]`` as a callable (a dotted path is imported), or
    :func:`bearer_token` when unset."""
    getter = _imported("TOKEN_GETTER", raw.get("TOKEN_GETTER") or bearer_token)
    if not callable(getter):
        raise ConfigurationError(
            'SARK_SYNC["TOKEN_GETTER"] must be a callable (request) -> str | None or its '
            f"dotted path, not {type(getter).__name__}")
    return getter  # type: ignore[no-any-return]


def readiness_timeout(raw: Mapping[str, Any]) -> float:
    """``SARK_SYNC["READINESS_TIMEOUT"]`` in seconds (> 0), default 2."""
    value = raw.get("READINESS_TIMEOUT")
    if value is None:
        return DEFAULT_READINESS_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
        raise ConfigurationError('SARK_SYNC["READINESS_TIMEOUT"] must be a number of seconds, '
                                 "more than 0 and at most 60")
    return float(value)


def bearer_token(request: Any) -> str | None:
    """The default ``TOKEN_GETTER``: the token of the request's ``Authorization: Bearer``
    header, or None (the call then goes out with the application's API key alone)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _policy(key: str, value: Any, kind: type[Any]) -> Any:
    """``value`` if it is a ``kind`` already, else ``kind(**value)`` for a dict of its fields."""
    if isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f'SARK_SYNC["{key}"] must be a {kind.__name__} or a dict of '
                                 f"its fields, not {type(value).__name__}")
    try:
        return kind(**value)
    except TypeError:
        fields = ", ".join(kind.__dataclass_fields__)
        raise ConfigurationError(f'SARK_SYNC["{key}"] accepts only the fields of '
                                 f"{kind.__name__}: {fields}") from None


def _imported(key: str, value: Any) -> Any:
    """The object a dotted path names, or ``value`` itself when it is not a str."""
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ConfigurationError(
            f'SARK_SYNC["{key}"]: cannot import {value!r} ({exc})') from None
