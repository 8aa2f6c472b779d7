"""The ``SARK_SYNC`` setting: one dict, read when a client is built, never at import time.

``settings.SARK_SYNC`` has the shape every integration shares (:mod:`sark_sync.contrib._settings`:
``BASE_URL``, ``API_KEY``, ``TIMEOUT``, ``RETRY``, ``BREAKER``, ``AUTHORIZER``, ``AUDIT``,
``LOCAL_SERVERS``, ``REMOTE_SERVERS``, ``MAX_WORKERS`` ...), plus the keys of this integration
(:data:`OWN_KEYS`: ``TOKEN_GETTER``, ``READINESS_TIMEOUT``). A key that is absent, or None,
falls back to what the client does without it: ``BASE_URL`` to ``$SARK_GATEWAY_URL``,
``API_KEY`` to ``$SARK_API_KEY``, ``TIMEOUT`` to ``$SARK_TIMEOUT``, so a twelve-factor
deployment may leave the setting out entirely.

As Django users write settings, ``AUTHORIZER``, ``AUDIT`` (or each item of a list of them) and
``TOKEN_GETTER`` may be dotted paths, imported when the client is built. Every problem is a
:class:`~sark_sync.ConfigurationError` naming the key, never quoting a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Callable, Optional

from django.conf import settings
from django.utils.module_loading import import_string

from ..._config import ENV_GATEWAY_URL
from ..._exceptions import ConfigurationError
from .._settings import SETTING_KEYS
from .._settings import client_options as shared_client_options

__all__ = ["KNOWN_KEYS", "OWN_KEYS", "bearer_token", "client_options", "gateway_url_given",
           "raw_settings", "readiness_timeout", "token_getter"]

#: Keys of ``SARK_SYNC`` used by the integration rather than the client.
OWN_KEYS = ("TOKEN_GETTER", "READINESS_TIMEOUT")
#: Every key ``SARK_SYNC`` may have.
KNOWN_KEYS = (*SETTING_KEYS, *OWN_KEYS)

#: Seconds the readiness view waits for the gateway's health: short, since a probe that
#: hangs is a probe that fails, and orchestrators time probes out after a few seconds.
DEFAULT_READINESS_TIMEOUT = 2.0

TokenGetter = Callable[[Any], Optional[str]]


def raw_settings() -> Mapping[str, Any]:
    """``settings.SARK_SYNC`` as it is ({} when absent or None); ConfigurationError if it is not
    a dict of known keys."""
    value = getattr(settings, "SARK_SYNC", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"settings.SARK_SYNC must be a dict, not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(f"settings.SARK_SYNC has unknown keys: {', '.join(unknown)}")
    return value


def gateway_url_given(raw: Mapping[str, Any]) -> bool:
    """Whether a gateway URL is set, in ``SARK_SYNC["BASE_URL"]`` or ``$SARK_GATEWAY_URL``."""
    return raw.get("BASE_URL") is not None or bool(os.environ.get(ENV_GATEWAY_URL))


def client_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The GatewayClient keyword arguments that ``raw`` (a checked ``SARK_SYNC``) sets."""
    shared = {key: value for key, value in raw.items() if key not in OWN_KEYS}
    if isinstance(shared.get("AUTHORIZER"), str):
        shared["AUTHORIZER"] = _imported("AUTHORIZER", shared["AUTHORIZER"])
    audit = shared.get("AUDIT")
    if isinstance(audit, (list, tuple)):
        shared["AUDIT"] = [_imported("AUDIT", item) for item in audit]
    elif isinstance(audit, str):
        shared["AUDIT"] = _imported("AUDIT", audit)
    return shared_client_options(shared, prefix="SARK_SYNC")


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


def _imported(key: str, value: Any) -> Any:
    """The object a dotted path names, or ``value`` itself when it is not a str."""
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ConfigurationError(
            f'SARK_SYNC["{key}"]: cannot import {value!r} ({exc})') from None
