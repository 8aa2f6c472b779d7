"""Keeping secrets out of logs, audit events, exception messages and reprs.

Three tools, used wherever a value might be shown:

- :class:`Secret` holds a credential; its ``repr``/``str`` are ``[secure]``, and only
  ``reveal()`` gives the value, at the one place that puts it on the wire.
- :func:`redact` returns a copy of a JSON-like value with the values of sensitive keys
  (``password``, ``api_key``, ``db_token``, ... at any depth) replaced by ``[secure]``.
- :func:`redact_headers` does the same for HTTP headers (``X-API-Key``, ``Authorization``).

Matching is by substring of the key with case and separators removed, so ``DB_Password``,
``refresh-token``, ``privateKey`` and ``session.id`` are all caught; a false positive only
hides a value, a false negative would leak one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "SENSITIVE_KEY_PARTS", "Secret", "is_sensitive_key", "redact",
           "redact_headers"]

#: What a hidden value is shown as.
REDACTED = "[secure]"

#: Substrings of keys whose values are secret; compared without case and separators.
SENSITIVE_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "private_key",
    "authorization",
    "auth_header",
    "cookie",
    "session_id",
    "ssn",
    "credit_card",
    "card_number",
    "cvv",
)

_COMPACT_PARTS = tuple(part.replace("_", "") for part in SENSITIVE_KEY_PARTS)

#: Headers whose values are never shown.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-gateway-api-key", "cookie",
     "set-cookie"}
)

_SEPARATORS = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 64


def is_sensitive_key(key: object) -> bool:
    """Whether a mapping key names a secret value."""
    if not isinstance(key, str):
        return False
    normalised = _SEPARATORS.sub("", key.lower())
    return any(part in normalised for part in _COMPACT_PARTS)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with every sensitive key's value replaced by ``[secure]``.

    Mappings and lists are copied recursively (tuples become lists, as in JSON); other values
    are returned as they are. Structures deeper than 64 levels are cut off, not recursed into.
    """
    if _depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_sensitive_key(k) else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, _depth + 1) for item in value]
    return value


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credential headers shown as ``[secure]``."""
    return {
        name: (REDACTED if name.lower() in SENSITIVE_HEADERS or is_sensitive_key(name) else value)
        for name, value in headers.items()
    }


class Secret:
    """A credential that never shows itself: ``repr``, ``str`` and pickling-free by design."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that puts it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
