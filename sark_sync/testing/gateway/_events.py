"""The LocalGateway's event log: a ring buffer of SSE events that streams replay and follow.

Design: one :class:`EventLog` per gateway. :meth:`EventLog.publish` gives each event the next
integer id (strictly increasing, from ``first_id``), encodes it once as the exact bytes every
stream writes (``id: <n>\\nevent: <type>\\ndata: <compact JSON>\\n\\n``) and wakes the streams.
The last ``capacity`` events are kept; ids being consecutive, the event with id ``i`` lives
in slot ``(i - first_id) % capacity``, so a stream reads the events after its cursor without
searching. One condition variable guards everything; it is a leaf lock (nothing else is
acquired under it), so any code, holding any lock, may publish.

Resuming (:meth:`EventLog.resume`), for a ``Last-Event-ID: N`` sent by a client:

- no header (or an empty one): no replay, the events published from now on (as a fresh
  EventSource expects; ``Last-Event-ID: 0`` asks for the whole buffer of a gateway whose ids
  start at 1);
- ``oldest - 1 <= N <= newest``: the events with id > N are replayed;
- otherwise a :class:`StreamReset` comes first, then the whole buffer. Its ``reason`` is
  ``"expired"`` (N < oldest - 1: events after N fell out of the buffer, or were issued by a
  previous gateway instance whose ids this one continues), ``"future"`` (N > newest: the id
  comes from another gateway instance) or ``"malformed"`` (not an unsigned decimal integer;
  ``last_event_id`` is then ``null``). A stream whose reader falls more than the buffer behind
  while it is open gets a reset with reason ``"lagged"`` and goes on from the oldest event.

``stream_reset`` is sent as ``event: stream_reset`` and ``data: {"last_event_id": N | null,
"oldest_available": <id> | null, "reason": str}`` with **no** ``id:`` line, so a client's last
event id stays what it was until a real event arrives: reconnecting before then asks again
for the same thing and gets the same answer. ``oldest_available`` is ``null`` when the buffer
is empty. After a reset, ids restart from ``oldest_available``: a client must drop any
"already seen" cursor it keeps.

Everything here is pure (no sockets, no threads of its own), for unit tests.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_BUFFER",
    "EVENT_TYPE",
    "MIN_BUFFER",
    "STREAM_RESET",
    "Event",
    "EventLog",
    "StreamReset",
    "Subscription",
    "parse_last_event_id",
    "parse_types",
    "validate_event",
]

#: Events kept for replay by default, in a ring buffer (docs/gateway/SSE_TRANSPORT.md).
DEFAULT_BUFFER = 10_000
#: The smallest buffer accepted: a client reconnecting after a few seconds must not lose
#: events to a busy test; tests of expiry publish more than this many events instead.
MIN_BUFFER = 10_000
#: Event type names, on the wire and in ``?types=``.
EVENT_TYPE = re.compile(r"[a-z_]{1,64}\Z")
#: The control event that says events were lost; always sent, never filtered, has no id.
STREAM_RESET = "stream_reset"
#: Longest ``Last-Event-ID`` read as a number; longer digit strings are "malformed".
MAX_ID_DIGITS = 30

_DIGITS = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}\Z")


def _compact(value: object) -> str:
    # json.dumps escapes every control character, so the result is always one line; NaN and
    # Infinity are refused (ValueError): they are not JSON, and clients would choke on them.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Event:
    """One published event: its id, type, ``data`` (one line of JSON) and its SSE bytes."""

    id: int
    type: str
    data: str
    frame: bytes

    def payload(self) -> dict[str, Any]:
        """The event's data, decoded."""
        value: dict[str, Any] = json.loads(self.data)
        return value


@dataclass(frozen=True)
class StreamReset:
    """Events a client asked for are not available; see the module docstring."""

    last_event_id: int | None
    oldest_available: int | None
    reason: str

    @property
    def frame(self) -> bytes:
        data = {
            "last_event_id": self.last_event_id,
            "oldest_available": self.oldest_available,
            "reason": self.reason,
        }
        return f"event: {STREAM_RESET}\ndata: {_compact(data)}\n\n".encode()


@dataclass(frozen=True)
class Subscription:
    """What a client asked ``GET /api/v1/events`` for: types (``None``: all) and where to
    resume (``last_event_id``; ``malformed`` when the header was not a number)."""

    types: frozenset[str] | None
    last_event_id: int | None
    malformed: bool = False


def parse_types(raw: str | None) -> frozenset[str] | None:
    """Parse ``?types=a,b``; ``None`` when absent. Raises ``ValueError`` unless every name
    matches :data:`EVENT_TYPE` (an empty value or an empty name included)."""
    if raw is None:
        return None
    names = raw.split(",")
    bad = [name for name in names if not EVENT_TYPE.match(name)]
    if bad:
        raise ValueError(
            f"types must be comma-separated event types matching [a-z_]{{1,64}}; got {raw!r}"
        )
    return frozenset(names)


def parse_last_event_id(raw: str | None) -> tuple[int | None, bool]:
    """Parse a ``Last-Event-ID`` header: ``(id, False)``, ``(None, False)`` when absent or
    empty (as browsers do after an empty ``id:``), ``(None, True)`` when malformed."""
    if raw is None or not raw.strip():
        return None, False
    raw = raw.strip()
    if not _DIGITS.match(raw):
        return None, True
    return int(raw), False


def validate_event(type: str, data: Mapping[str, Any]) -> str:
    """Check a publishable event and return its data as one line of compact JSON.

    Raises ``ValueError`` for a type that is not ``[a-z_]{1,64}`` or is ``stream_reset``
    (reserved), and ``TypeError`` when ``data`` is not a JSON object of JSON values.
    """
    if not isinstance(type, str) or not EVENT_TYPE.match(type):
        raise ValueError(f"event type must match [a-z_]{{1,64}}; got {type!r}")
    if type == STREAM_RESET:
        raise ValueError("'stream_reset' is reserved for the gateway's own use")
    if not isinstance(data, Mapping):
        raise TypeError(f"event data must be a mapping, not {data.__class__.__name__}")
    try:
        return _compact(dict(data))
    except ValueError as exc:  # NaN or a circular reference
        raise TypeError(f"event data is not JSON: {exc}") from None


class EventLog:
    """The ring buffer of one gateway's events; thread-safe. See the module docstring.

    :param capacity: events kept for replay, at least :data:`MIN_BUFFER`.
    :param first_id: the id of the first event (>= 1), so that a restarted gateway can
        continue the ids of a previous one (clients then resume, or get ``"expired"``).

    >>> log = EventLog()
    >>> log.publish("server_registered", {"server": "demo"})
    1
    >>> log.read(0, 10)[1][0].frame
    b'id: 1\\nevent: server_registered\\ndata: {"server":"demo"}\\n\\n'
    """

    def __init__(self, capacity: int = DEFAULT_BUFFER, first_id: int = 1) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < MIN_BUFFER:
            raise ValueError(f"the event buffer must hold at least {MIN_BUFFER} events")
        if isinstance(first_id, bool) or not isinstance(first_id, int) or first_id < 1:
            raise ValueError("first_event_id must be an integer >= 1")
        self.capacity = capacity
        self.first_id = first_id
        self._slots: list[Event | None] = [None] * capacity
        self._next = first_id
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    def publish(self, type: str, data: Mapping[str, Any]) -> int:
        """Append an event, wake every stream, and return its id (see :func:`validate_event`
        for what it raises). Publishing after :meth:`close` still records the event."""
        encoded = validate_event(type, data)
        tail = f"\nevent: {type}\ndata: {encoded}\n\n".encode()
        with self._changed:
            event_id = self._next
            self._next += 1
            frame = b"id: %d%s" % (event_id, tail)
            self._slots[(event_id - self.first_id) % self.capacity] = Event(
                event_id, type, encoded, frame
            )
            self._changed.notify_all()
        return event_id

    @property
    def newest_id(self) -> int:
        """The id of the last event published (``first_id - 1`` before the first)."""
        with self._changed:
            return self._next - 1

    def _oldest(self) -> int:
        # The oldest id still buffered; newest + 1 when the buffer is empty.
        return max(self.first_id, self._next - self.capacity)

    def resume(self, subscription: Subscription) -> tuple[StreamReset | None, int]:
        """Return the reset to send first, if any, and the cursor (the id after which
        events are due) for a new stream."""
        with self._changed:
            oldest, newest = self._oldest(), self._next - 1
            available = oldest if oldest <= newest else None
            wanted = subscription.last_event_id
            if subscription.malformed:
                return StreamReset(None, available, "malformed"), oldest - 1
            if wanted is None:
                return None, newest  # a new subscriber: from now on
            if wanted > newest:
                return StreamReset(wanted, available, "future"), oldest - 1
            if wanted < oldest - 1:
                return StreamReset(wanted, available, "expired"), oldest - 1
            return None, wanted

    def read(self, cursor: int, limit: int) -> tuple[StreamReset | None, list[Event]]:
        """Return up to ``limit`` events after ``cursor``, without waiting; when events
        after ``cursor`` were overwritten meanwhile, a ``"lagged"`` reset and the events
        from the oldest one instead."""
        with self._changed:
            oldest = self._oldest()
            reset = None
            if cursor < oldest - 1:
                reset = StreamReset(cursor, oldest, "lagged")
                cursor = oldest - 1
            end = min(self._next, cursor + 1 + limit)
            slots, first, size = self._slots, self.first_id, self.capacity
            events = [slots[(i - first) % size] for i in range(cursor + 1, end)]
        return reset, [event for event in events if event is not None]

    def wait(self, cursor: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event after ``cursor`` or for :meth:`close`;
        return whether one of them happened."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._next - 1 <= cursor and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self) -> None:
        """Wake every waiting stream for good (the gateway is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        with self._changed:
            return self._closed

    def snapshot(self) -> list[Event]:
        """Every buffered event, oldest first."""
        with self._changed:
            oldest = self._oldest()
        return self.read(oldest - 1, self.capacity)[1]
