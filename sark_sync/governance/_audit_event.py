"""The audit event: one immutable, JSON-ready record of a governed operation.

Its fields are documented in docs/gateway/AUDIT.md.

An :class:`AuditEvent` is safe to show anywhere by construction. Its ``__post_init__`` runs on
every path that builds one (the constructor, :meth:`AuditEvent.create`,
``dataclasses.replace``) and:

- makes the parameters JSON-safe (bytes and unknown objects become ``"<type>"``, non-finite
  floats become strings) and redacts them with :func:`sark_sync._redact.redact`, so no event
  ever holds a raw parameter: ``password``, ``api_key``, ``token`` ... at any depth, and any
  :class:`~sark_sync._redact.Secret`, are ``[secure]``;
- shows a :class:`~sark_sync._redact.Secret` passed as any text field as ``[secure]``;
- checks every other field's type and vocabulary, raising ``TypeError``/``ValueError`` with a
  message naming the field, never its value.

``error_type`` is an exception class name, never a message: messages may quote values.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .._exceptions import AuthorizationDenied, ToolExecutionError
from .._redact import REDACTED, Secret, redact

__all__ = ["DECISIONS", "EVENT_TYPES", "OUTCOMES", "TRANSPORTS", "AuditEvent", "rfc3339"]

#: The event types the client records (``Auditor.record`` takes any non-empty name).
EVENT_TYPES = ("tool_invocation", "authorization", "discovery", "health", "event_stream")

#: Values of ``AuditEvent.transport``.
TRANSPORTS = frozenset({"http", "stdio", "sse", "mcp-http"})
#: Values of ``AuditEvent.decision`` (None: no policy was consulted).
DECISIONS = frozenset({"allow", "deny"})
#: Values of ``AuditEvent.outcome``.
OUTCOMES = frozenset({"success", "denied", "error", "tool_error"})
#: Longest ``reason`` kept; a policy's explanation longer than this is cut.
MAX_REASON_CHARS = 1024
#: Nesting depth of parameters kept (the same bound as ``redact``'s).
MAX_PARAMETER_DEPTH = 64

_TEXT_FIELDS = ("event_id", "timestamp", "event_type", "operation", "principal_id", "server",
                "tool", "transport", "decision", "reason", "outcome", "error_type", "request_id")
_REQUIRED_TEXT = frozenset({"event_id", "timestamp", "event_type"})
_VOCABULARIES = {"transport": TRANSPORTS, "decision": DECISIONS, "outcome": OUTCOMES}
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z\Z")
_CLASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def rfc3339(moment: datetime | None = None) -> str:
    """``moment`` (default: now) in UTC as RFC 3339 with microseconds and a ``Z``.

    A naive datetime is refused (``ValueError``): its zone is unknown.

    >>> rfc3339(datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    '2024-05-01T12:00:00.000000Z'
    """
    if moment is None:
        moment = datetime.now(timezone.utc)
    elif moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("rfc3339() needs a timezone-aware datetime")
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``value`` that shows nothing ``redact`` would miss."""
    if depth >= MAX_PARAMETER_DEPTH:
        return REDACTED
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping):
        return {_json_key(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, depth + 1) for item in value]
    # bytes, sets, datetimes, arbitrary objects: their str() may hold anything.
    return f"<{type(value).__name__}>"


def _json_key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")  # so that redact sees b"password"
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return f"<{type(key).__name__}>"


@dataclass(frozen=True)
class AuditEvent:
    """What happened to one governed operation, with the parameters redacted.

    Every field has a default, so events are built with keywords; :meth:`create` also derives
    the error fields from an exception. ``event_id`` defaults to a fresh uuid4 and
    ``timestamp`` to now (RFC 3339, UTC, ``Z``; a given one must have that form). ``transport``
    is ``"http"``, ``"stdio"``, ``"sse"`` or None; ``decision`` ``"allow"``, ``"deny"`` or None
    (no policy consulted); ``outcome`` ``"success"``, ``"denied"``, ``"error"``,
    ``"tool_error"`` or None. ``status_code`` is 100-599, ``attempts`` >= 0, ``latency_ms`` a
    finite number >= 0, each or None. ``reason`` is cut at 1024 characters. ``event_type``
    and ``operation`` are free text (the client's are in :data:`EVENT_TYPES` and
    :mod:`sark_sync.governance.audit`).

    Raises ``TypeError`` or ``ValueError`` naming a field whose value does not fit.

    >>> event = AuditEvent(server="demo", tool="login", outcome="success",
    ...                    parameters={"user": "ada", "password": "hunter2"})
    >>> event.parameters
    {'user': 'ada', 'password': '[secure]'}
    """

    event_id: str = field(default_factory=_new_event_id)
    timestamp: str = field(default_factory=rfc3339)
    event_type: str = "tool_invocation"
    #: The client method audited (``"invoke_tool"``, ``"list_servers"`` ...), or None.
    operation: str | None = None
    principal_id: str | None = None
    server: str | None = None
    tool: str | None = None
    transport: str | None = None
    decision: str | None = None
    reason: str | None = None
    outcome: str | None = None
    error_type: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    attempts: int | None = None
    latency_ms: float | None = None
    #: A redacted, JSON-safe copy; never the caller's object.
    parameters: Any = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Secret):
                object.__setattr__(self, name, REDACTED)
            elif value is None:
                if name in _REQUIRED_TEXT:
                    raise TypeError(f"AuditEvent.{name} is required")
            elif not isinstance(value, str):
                raise TypeError(f"AuditEvent.{name} must be a str or None, not "
                                f"{type(value).__name__}")
        for name, allowed in _VOCABULARIES.items():
            if getattr(self, name) not in allowed and getattr(self, name) is not None:
                raise ValueError(f"AuditEvent.{name} must be one of {sorted(allowed)} or None")
        if not self.event_type or not self.event_id:
            raise ValueError("AuditEvent.event_type and event_id must not be empty")
        if not _RFC3339_UTC.match(self.timestamp):
            raise ValueError("AuditEvent.timestamp must be RFC 3339 in UTC ending in 'Z'")
        if self.error_type is not None and not _CLASS_NAME.match(self.error_type):
            raise ValueError("AuditEvent.error_type must be an exception class name")
        if self.reason is not None and len(self.reason) > MAX_REASON_CHARS:
            object.__setattr__(self, "reason", self.reason[:MAX_REASON_CHARS])
        self._check_int("status_code", 100, 599)
        self._check_int("attempts", 0, None)
        latency = self.latency_ms
        if latency is not None:
            if isinstance(latency, bool) or not isinstance(latency, (int, float)):
                raise TypeError("AuditEvent.latency_ms must be a number or None")
            if not math.isfinite(latency) or latency < 0:
                raise ValueError("AuditEvent.latency_ms must be finite and >= 0")
            object.__setattr__(self, "latency_ms", round(float(latency), 3))
        object.__setattr__(self, "parameters", redact(_json_safe(self.parameters)))

    def _check_int(self, name: str, low: int, high: int | None) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"AuditEvent.{name} must be an int or None")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"AuditEvent.{name} must be {bound}")

    @classmethod
    def create(
        cls,
        event_type: str = "tool_invocation",
        *,
        outcome: str | None = None,
        error: BaseException | None = None,
        operation: str | None = None,
        principal_id: str | None = None,
        server: str | None = None,
        tool: str | None = None,
        transport: str | None = None,
        decision: str | None = None,
        reason: str | None = None,
        error_type: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        attempts: int | None = None,
        latency_ms: float | None = None,
        parameters: Any = None,
    ) -> AuditEvent:
        """An event, with what ``error`` carries filling the fields left None.

        From ``error``: ``error_type`` (its class name), ``status_code``, ``request_id``,
        ``attempts``, ``reason`` and ``decision="deny"`` (of an ``AuthorizationDenied``), and
        ``outcome``:
        ``"denied"`` for a ``PermissionError`` (``AuthorizationDenied``), ``"tool_error"`` for a
        ``ToolExecutionError``, else ``"error"``. Without an error, ``outcome`` defaults to
        ``"denied"`` when ``decision == "deny"`` and to ``"success"`` otherwise. Its message is
        never used.
        """
        if error is not None:
            error_type = error_type or type(error).__name__
            if status_code is None:
                status_code = _int_attr(error, "status_code", 100, 599)
            if attempts is None:
                attempts = _int_attr(error, "attempts", 0, None)
            request_id = request_id or _str_attr(error, "request_id")
            if isinstance(error, AuthorizationDenied):
                reason = reason or _str_attr(error, "reason")
                decision = decision or "deny"
            if outcome is None:
                if isinstance(error, PermissionError):
                    outcome = "denied"
                elif isinstance(error, ToolExecutionError):
                    outcome = "tool_error"
                else:
                    outcome = "error"
        elif outcome is None:
            outcome = "denied" if decision == "deny" else "success"
        return cls(event_type=event_type, operation=operation, principal_id=principal_id,
                   server=server, tool=tool, transport=transport, decision=decision,
                   reason=reason, outcome=outcome, error_type=error_type,
                   status_code=status_code, request_id=request_id, attempts=attempts,
                   latency_ms=latency_ms, parameters=parameters)

    def to_dict(self) -> dict[str, Any]:
        """Every field, in the documented order, as a fresh JSON-ready dict (None included)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["parameters"] = redact(self.parameters)  # a copy: the event stays unchanged
        return data

    def to_json(self) -> str:
        """One line of compact, ASCII-only JSON (no newline inside or at the end)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


def _int_attr(error: BaseException, name: str, low: int, high: int | None) -> int | None:
    """An int attribute of ``error`` if it fits the field (an odd value is left out)."""
    value = getattr(error, name, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        return None
    return value if high is None or value <= high else None


def _str_attr(error: BaseException, name: str) -> str | None:
    value = getattr(error, name, None)
    return value if isinstance(value, str) and value else None
