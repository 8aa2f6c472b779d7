"""Fault injection for the LocalGateway: scripted misbehaviour for resilience tests.

A :class:`Fault` says which requests it matches (``path``, ``method``, ``server``) and what
happens to them. Faults are kept in the order they were added; each request consumes at most
one fault, the earliest still-live one that matches, so a test scripts a sequence by adding
faults in order (``503`` then ``drop`` then the real answer). A fault applies ``times`` times
(``None``: forever; ``0``: never) and then stops matching; ``hits`` counts its applications.

Three kinds of behaviour, which combine:

- **Answering** faults replace the real handler, so the tool never runs: ``drop`` (close the
  connection after reading the request, without answering), ``status`` (answer that status,
  with the error envelope for it unless ``body`` is given) and ``body`` alone (answer 200
  with those bytes).
- **Delivery** faults shape how the answer, real or injected, is sent: ``delay`` (wait before
  answering, interruptible by ``stop()``), ``content_type`` (replace the Content-Type),
  ``truncate`` (declare the full Content-Length, send half the body, close) and ``slow_body``
  (send the body in :data:`SLOW_BODY_CHUNK`-byte pieces, pausing that many seconds between).
  ``truncate`` alone lets the tool run and loses its answer, like a connection cut mid-reply.
- **Stream** faults shape an event stream (``GET /api/v1/events``) once it is open, and are
  ignored by other requests: ``drop_after_events=N`` closes the connection as soon as N events
  were written on it (replayed ones count; ``retry``, pings and ``stream_reset`` do not; ``0``:
  right after the ``retry`` line); ``stall_after_events=N`` writes nothing more after N events,
  not even pings, for ``stall`` seconds (``None``: until ``stop()``), then closes. Either close
  is abrupt: a chunked stream gets no last chunk. An event stream has no Content-Length, so
  ``truncate`` and ``slow_body`` do not apply to it; ``delay``, ``drop``, ``status`` (with
  ``retry_after``), ``body`` and ``content_type`` do, as for any request.

For example ``Fault(path="/api/v1/events", drop_after_events=100, times=None)`` cuts every
stream after 100 events, and ``Fault(path="/api/v1/events", status=503, retry_after=2)`` turns
the next stream request away.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

__all__ = ["SLOW_BODY_CHUNK", "Fault", "FaultSet"]

#: Bytes per piece when a fault sends a body slowly.
SLOW_BODY_CHUNK = 16


@dataclass(eq=False)
class Fault:
    """One scripted misbehaviour; see the module docstring for the semantics.

    ``path`` is matched exactly against the request path without its query (``None``: any
    path); ``method`` case-insensitively (``None``: any); ``server`` against the ``"server"``
    field of a JSON request body (POST /api/v1/invoke). ``retry_after`` adds a ``Retry-After``
    header (seconds, or a string sent as is, e.g. an HTTP date). Raises ``ValueError`` for
    negative times, delays or event counts, for statuses outside 100..599, for both
    ``drop_after_events`` and ``stall_after_events``, and for ``stall`` without
    ``stall_after_events``.

    >>> fault = Fault(status=503, retry_after=1, times=2)
    >>> fault.hits
    0
    """

    path: str | None = "/api/v1/invoke"
    method: str | None = None
    status: int | None = None
    times: int | None = 1
    retry_after: float | str | None = None
    delay: float = 0.0
    drop: bool = False
    truncate: bool = False
    slow_body: float | None = None
    body: bytes | str | None = None
    content_type: str | None = None
    server: str | None = None
    drop_after_events: int | None = None
    stall_after_events: int | None = None
    stall: float | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None (forever)")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.slow_body is not None and self.slow_body < 0:
            raise ValueError("slow_body must be >= 0 seconds per chunk")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be in 100..599")
        for name in ("drop_after_events", "stall_after_events"):
            count = getattr(self, name)
            if count is not None and (
                isinstance(count, bool) or not isinstance(count, int) or count < 0
            ):
                raise ValueError(f"{name} must be an integer >= 0 or None")
        if self.drop_after_events is not None and self.stall_after_events is not None:
            raise ValueError("a fault either drops or stalls a stream, not both")
        if self.stall is not None:
            if self.stall_after_events is None:
                raise ValueError("stall needs stall_after_events")
            if self.stall < 0:
                raise ValueError("stall must be >= 0 seconds or None (until stop)")

    @property
    def answers(self) -> bool:
        """Whether this fault replaces the real handler (the tool does not run)."""
        return self.drop or self.status is not None or self.body is not None

    @property
    def body_bytes(self) -> bytes | None:
        """The replacement body as bytes (``str`` is encoded as UTF-8)."""
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body

    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.path is not None and self.path != path:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.server is not None:
            try:
                payload = json.loads(body)
            except ValueError:
                return False
            return isinstance(payload, dict) and payload.get("server") == self.server
        return True


class FaultSet:
    """The faults of one gateway, consumed atomically by concurrent requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, body: bytes) -> Fault | None:
        """Return the first live fault matching the request, counting the hit, or ``None``."""
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted() and fault.matches(method, path, body):
                    fault.hits += 1
                    return fault
        return None
