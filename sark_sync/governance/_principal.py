"""Who a call is for, as the client's authorizer sees it.

The caller names the principal explicitly (``principal=Principal(...)``), or the client reads
it from the claims of the ``user_token`` it forwards: ``sub`` is the id, ``roles`` and
``teams`` lists of strings. The token is decoded WITHOUT verifying its signature: the client
holds no key, and needs none, because this decision is advisory. The gateway verifies the token
and enforces its own policy; the client's pre-check only refuses early (sparing the gateway and
the tool a call that would be denied) and filters parameters before they leave the process.
Never trust a principal read this way for anything else.

Audit events name the principal too, with or without an authorizer: without one, the id is
the token's ``sub``, read by :func:`principal_id_from_token` only when an event is about to be
recorded, and remembered per token by a :class:`PrincipalIdCache` (a bounded, thread-safe LRU)
so that a token used for many calls is decoded once. A token that does not decode gives None
there, never an error: the audit trail must not fail a call the gateway would accept.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from typing import Any

from .._exceptions import ValidationError
from .._models import Principal

__all__ = ["PrincipalIdCache", "principal_from_token", "principal_id_from_token",
           "resolve_principal"]

#: Tokens whose principal id a client remembers for its audit events (least recently used
#: forgotten first).
PRINCIPAL_CACHE_SIZE = 256
#: Longer tokens are decoded for every event and never kept (the cache's memory stays small).
MAX_CACHED_TOKEN_CHARS = 8_192

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")


def principal_from_token(token: str) -> Principal:
    """The :class:`Principal` in the claims of a JWT (``sub``, ``roles``, ``teams``), read
    without verifying the token (see the module docstring).

    Raises :class:`ValidationError` if the token is not a compact JWT with a JSON object
    payload, has no string ``sub``, or has ``roles``/``teams`` that are not lists of strings.
    The message never contains the token.

    >>> principal_from_token("e30.eyJzdWIiOiJhbGljZSIsInJvbGVzIjpbImRldiJdfQ.c2ln")
    Principal(id='alice', roles=('dev',), teams=())
    """
    claims = _claims(token)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ValidationError("user_token has no 'sub' claim: pass principal= to the call")
    return Principal(subject, _strings(claims, "roles"), _strings(claims, "teams"))


def _claims(token: object) -> dict[str, Any]:
    """The payload of a compact JWT, unverified; ValidationError (never quoting the token)
    for anything else."""
    if not isinstance(token, str):
        raise ValidationError(f"user_token must be a str, not {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.match(part) for part in parts[:2]):
        raise ValidationError("user_token is not a JWT (three base64url segments)")
    segment = parts[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        claims = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError
        raise ValidationError("user_token's payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValidationError("user_token's payload is not a JSON object")
    return claims


def _strings(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"user_token's {name!r} claim must be a list of strings")
    return tuple(value)


def resolve_principal(principal: Principal | None, user_token: str | None) -> Principal | None:
    """The principal of a call: ``principal`` if given (it wins over the token), else the one
    in ``user_token``'s claims, else None. ``ValidationError`` for a principal that is not a
    :class:`Principal` or a malformed token."""
    if principal is not None:
        if not isinstance(principal, Principal):
            raise ValidationError(
                f"principal must be a sark_sync.Principal, not {type(principal).__name__}")
        return principal
    if user_token is None:
        return None
    return principal_from_token(user_token)


def principal_id_from_token(token: object) -> str | None:
    """The ``sub`` claim of a JWT, read without verifying it; None for anything else (not a
    str, not three segments, a payload that is not a base64url JSON object, no string
    ``sub``). Never raises; the other claims are not looked at.

    >>> principal_id_from_token("e30.eyJzdWIiOiJhbGljZSJ9.c2ln")
    'alice'
    >>> principal_id_from_token("not-a-jwt") is None
    True
    """
    try:
        subject = _claims(token).get("sub")
    except ValidationError:
        return None
    return subject if isinstance(subject, str) and subject else None


class PrincipalIdCache:
    """``token -> principal id`` (:func:`principal_id_from_token`), least recently used first
    out past ``maxsize`` entries (0: nothing kept). Thread-safe; a failed decode (None) is
    remembered too. Its repr shows sizes only, never a token."""

    def __init__(self, maxsize: int = PRINCIPAL_CACHE_SIZE) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError("PrincipalIdCache maxsize must be an int >= 0")
        self.maxsize = maxsize
        self.decoded = 0  # tokens decoded, a hit costs none
        self._entries: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: object) -> str | None:
        """The principal id in ``token`` (None if it has none, or is not a JWT)."""
        if not isinstance(token, str):
            return None
        with self._lock:
            if token in self._entries:
                self._entries.move_to_end(token)
                return self._entries[token]
        found = principal_id_from_token(token)
        with self._lock:
            self.decoded += 1
            if self.maxsize and len(token) <= MAX_CACHED_TOKEN_CHARS:
                self._entries[token] = found
                self._entries.move_to_end(token)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held the parent's)."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PrincipalIdCache {len(self._entries)} of {self.maxsize}>"
