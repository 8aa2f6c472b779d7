"""System checks of the ``SARK_SYNC`` setting, run by ``manage.py check`` (and before
``runserver``, ``migrate`` ...).

A missing or invalid setting is reported as an :class:`~django.core.checks.Error` with a hint,
and ``manage.py`` exits non-zero without a traceback, instead of a view failing at its first
call in production:

- ``sark_sync.E001``: no gateway URL (neither ``SARK_SYNC["BASE_URL"]`` nor
  ``$SARK_GATEWAY_URL``);
- ``sark_sync.E002``: ``SARK_SYNC`` is not a dict, or has a key the integration does not know
  (a typo would otherwise be ignored);
- ``sark_sync.E003``: the client refuses a value (a bad URL, timeout, retry or breaker field,
  a dotted path that does not import ...), with the client's message, which never quotes a
  credential;
- ``sark_sync.E004``: ``TOKEN_GETTER`` or ``READINESS_TIMEOUT`` is invalid.

E003 builds a client from the settings and closes it at once: that starts no server and sends
no request, and it applies every rule the client applies, so the check cannot drift from it.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error

from ..._exceptions import ConfigurationError
from ...client import GatewayClient
from ._conf import (
    KNOWN_KEYS,
    client_options,
    gateway_url_given,
    raw_settings,
    readiness_timeout,
    token_getter,
)

__all__ = ["check_settings"]

_DOCS = "see docs/integrations/django.md"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The problems of ``settings.SARK_SYNC``, as Django check messages."""
    try:
        raw = raw_settings()
    except ConfigurationError as exc:
        known = ", ".join(KNOWN_KEYS)
        return [Error(str(exc), hint=f"SARK_SYNC is a dict with the keys {known}; {_DOCS}",
                      id="sark_sync.E002")]
    errors: list[Error] = []
    if not gateway_url_given(raw):
        errors.append(Error(
            "no SARK gateway URL is configured",
            hint='set SARK_SYNC = {"BASE_URL": "https://sark.example.com", ...} in the settings '
                 f"or the SARK_GATEWAY_URL environment variable; {_DOCS}",
            id="sark_sync.E001"))
    else:
        try:
            GatewayClient(**client_options(raw)).close()
        except ConfigurationError as exc:
            errors.append(Error(f"SARK_SYNC is invalid: {exc}",
                                hint=f"fix the value it names; {_DOCS}", id="sark_sync.E003"))
    for own in (token_getter, readiness_timeout):
        try:
            own(raw)
        except ConfigurationError as exc:
            errors.append(Error(str(exc), hint=_DOCS, id="sark_sync.E004"))
    return errors
