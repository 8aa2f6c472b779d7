"""The values an authorizer works with: its input document and its decision.

Both are documented in docs/gateway/AUTHORIZATION.md.

:class:`AuthorizationInput` is what the client knows about a call before sending it, and
renders the policy engine's input document; it never holds the user's token, only the
:class:`~sark_sync.Principal` read from it. :class:`Decision` is parsed strictly, because a
policy answer that is half-understood must never become an allow: a decision object without
``allow`` is a deny (as an undefined rule is in OPA), and one whose fields have the wrong
types is malformed (``ValueError``, which the authorizers turn into
:class:`~sark_sync.AuthorizationUnavailable`: fail closed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .._models import Principal, ServerInfo, ToolInfo
from .._redact import redact

__all__ = ["ACTION", "AuthorizationInput", "Decision", "removed_paths", "utc_timestamp"]

#: The ``action`` of every input document: invoking a tool through the gateway.
ACTION = "gateway:tool:invoke"

#: The reason of a decision object that has no ``allow``.
NO_ALLOW_REASON = "the policy's decision has no 'allow': denied"


@dataclass(frozen=True, repr=False)
class Decision:
    """A policy engine's answer for one call.

    :param allow: whether the call may proceed.
    :param reason: why, in the policy's words (shown in :class:`AuthorizationDenied`).
    :param filtered_parameters: when not None, the parameters the call is sent with instead of
        the caller's, even when empty (``{}``: every parameter removed).
    :param cache_ttl: seconds the decision may be reused for the same principal, server, tool
        and parameters; 0 (the default) means never.
    :param audit_id: the engine's id of its decision record (OPA's ``decision_id``), if any.

    Raises ``ValueError`` for a field of the wrong type or a negative ``cache_ttl``.

    >>> Decision.from_dict({"allow": True, "filtered_parameters": {}, "cache_ttl": 60})
    Decision(allow=True, reason='', filtered_parameters={}, cache_ttl=60)
    """

    allow: bool
    reason: str = ""
    filtered_parameters: Mapping[str, Any] | None = None
    cache_ttl: int = 0
    audit_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.allow, bool):
            raise ValueError(f"'allow' must be a boolean, got {type(self.allow).__name__}")
        if not isinstance(self.reason, str):
            raise ValueError(f"'reason' must be a string, got {type(self.reason).__name__}")
        filtered = self.filtered_parameters
        if filtered is not None and (
                not isinstance(filtered, Mapping) or not all(isinstance(k, str) for k in filtered)):
            raise ValueError("'filtered_parameters' must be an object or null")
        ttl = self.cache_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise ValueError(f"'cache_ttl' must be an integer >= 0, got {ttl!r}")
        if self.audit_id is not None and not isinstance(self.audit_id, str):
            raise ValueError("'audit_id' must be a string")

    @classmethod
    def from_dict(cls, data: object, *, audit_id: str | None = None) -> Decision:
        """Parse a decision object ``{"allow", "reason", "filtered_parameters", "cache_ttl"}``.

        Unknown fields are ignored; a missing ``allow`` is a deny; missing optional fields take
        their defaults. Raises ``ValueError`` if ``data`` is not an object or a field has the
        wrong type.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a decision must be a JSON object, got {_kind(data)}")
        if "allow" not in data:
            return cls(False, _optional(data, "reason", str) or NO_ALLOW_REASON,
                       audit_id=audit_id)
        own_id = _optional(data, "audit_id", str)
        return cls(
            allow=data["allow"],
            reason=_optional(data, "reason", str) or "",
            filtered_parameters=data.get("filtered_parameters"),
            cache_ttl=_optional(data, "cache_ttl", int) or 0,
            audit_id=own_id if own_id is not None else audit_id,
        )

    @classmethod
    def coerce(cls, value: object) -> Decision:
        """``value`` if it is a Decision, else :meth:`from_dict` of it (``ValueError``)."""
        return value if isinstance(value, Decision) else cls.from_dict(value)

    def __repr__(self) -> str:
        filtered = self.filtered_parameters
        shown = redact(filtered) if filtered is not None else None
        return (f"Decision(allow={self.allow}, reason={self.reason!r}, "
                f"filtered_parameters={shown!r}, cache_ttl={self.cache_ttl})")


def _optional(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key!r} must be {'a string' if kind is str else 'an integer'}, "
                         f"got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True, repr=False)
class AuthorizationInput:
    """What an authorizer decides on: who calls which tool of which server, with what.

    ``server`` and ``tool`` carry the metadata the client learnt from discovery (sensitivity,
    authorized teams, sensitive parameters, annotations); ``principal`` is None when the call
    names nobody. ``request_id`` is the ``X-Request-ID`` the call is sent with, ``timestamp``
    the RFC 3339 UTC time of the decision. :meth:`to_dict` is the input document.
    """

    server: ServerInfo
    tool: ToolInfo
    parameters: Mapping[str, Any]
    principal: Principal | None = None
    request_id: str = ""
    timestamp: str = ""
    action: str = ACTION

    def to_dict(self) -> dict[str, Any]:
        """The input document (docs/gateway/AUTHORIZATION.md) (what OPA receives as ``input``)."""
        principal = self.principal
        return {
            "action": self.action,
            "principal": principal.to_dict() if principal is not None
            else {"id": None, "roles": [], "teams": []},
            "server": {
                "name": self.server.server_name,
                "sensitivity_level": self.server.sensitivity_level,
                "authorized_teams": list(self.server.authorized_teams),
            },
            "tool": {
                "name": self.tool.tool_name,
                "sensitivity_level": self.tool.sensitivity_level,
                "sensitive_params": list(self.tool.sensitive_params),
                "annotations": self.tool.annotations.to_dict(),
            },
            "parameters": dict(self.parameters),
            "context": {"request_id": self.request_id, "timestamp": self.timestamp},
        }

    def cache_key(self) -> tuple[Any, ...]:
        """What identifies an equivalent call for the decision cache: the principal (id,
        roles, teams), server, tool, and a SHA-256 of the canonical JSON of the parameters
        with the server's and tool's metadata (so a changed sensitivity is a new decision).
        The request id and timestamp are left out. ``TypeError``/``ValueError`` if the
        parameters are not JSON."""
        document = self.to_dict()
        del document["principal"], document["context"]
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False, allow_nan=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        who = self.principal
        principal = (None, (), ()) if who is None else (
            who.id, tuple(sorted(who.roles)), tuple(sorted(who.teams)))
        return (*principal, self.server.server_name, self.tool.tool_name, digest)

    def __repr__(self) -> str:
        who = self.principal.id if self.principal is not None else None
        return (f"AuthorizationInput(principal={who!r}, server={self.server.server_name!r}, "
                f"tool={self.tool.tool_name!r}, parameters={redact(self.parameters)!r})")


def utc_timestamp(now: datetime | None = None) -> str:
    """``now`` (default: the current time) as RFC 3339 UTC with milliseconds and ``Z``."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def removed_paths(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
                  ) -> list[str]:
    """The keys of ``before`` that ``after`` lacks, as paths (``"password"``,
    ``"db.password"``, ``"items[0].token"``), in ``before``'s order. Mappings are compared at
    every depth, and lists element by element when their lengths match; a changed value is
    not a removal."""
    removed: list[str] = []
    for key, value in before.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in after:
            removed.append(path)
        else:
            removed.extend(_removed_in(value, after[key], path))
    return removed


def _removed_in(before: Any, after: Any, path: str) -> list[str]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return removed_paths(before, after, path)
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) \
            and len(before) == len(after):
        found: list[str] = []
        for index, (old, new) in enumerate(zip(before, after)):
            found.extend(_removed_in(old, new, f"{path}[{index}]"))
        return found
    return []
