"""One ``GET /api/v1/events`` response: SSE framing, replay, keep-alive pings, stream faults.

Design: an :class:`EventStream` runs in the thread of the connection that asked for it and
writes through a ``send`` callable (``sendall`` of the socket: unbuffered), so each event
leaves in exactly one write the moment it is read from the :class:`~._events.EventLog`, and
nothing is held back by a buffer. The body is, in order: ``retry: <ms>`` with
``id: <position>`` (once; no id when a reset follows), a ``stream_reset`` when the log says
so, the replay, then live events as they are published, and ``: ping`` whenever nothing was
written for ``ping_interval`` seconds.

Framing: ``"chunked"`` (``Transfer-Encoding: chunked``, one chunk per event) or ``"close"``
(no length, no chunks: the body ends when the server closes the connection). An HTTP/1.0
request always gets ``"close"``, as it cannot read chunks.

How a stream ends, and so how its thread is freed: the gateway stops (the log is closed and
the stop event set: the stream wakes at once; with chunked framing it then sends the last
chunk); a write fails (the client went away, or ``stop()`` shut the socket down under a
blocked write, or the client stopped reading for the gateway's ``idle_timeout``, the socket's
timeout); the client closes its end while the stream is idle (checked every
:data:`CHECK_INTERVAL` seconds); or a stream fault ends it (abruptly: no last chunk). Every
wait is bounded and wakes on stop; none is a bare sleep.

Stream faults (:class:`~._faults.Fault`): ``drop_after_events=N`` closes the connection as
soon as N events were written on it; ``stall_after_events=N`` then writes nothing more, not
even pings, for ``stall`` seconds (``None``: until ``stop()``) and closes. Events counted are
the events written on this connection, replayed ones included; the opening block (``retry``
and ``id``, no data), pings and ``stream_reset`` are not counted.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ._events import EventLog, Subscription
from ._faults import Fault

__all__ = [
    "CHECK_INTERVAL",
    "EVENT_RETRY",
    "FRAMINGS",
    "PING_INTERVAL",
    "EventStream",
    "StreamSettings",
    "peer_closed",
]

#: Seconds of silence on a stream before a ``: ping`` comment (docs/gateway/SSE_TRANSPORT.md,
#: "Idle timeout and pings"): proxies and
#: clients with read timeouts then know the connection is alive.
PING_INTERVAL = 15.0
#: Reconnection delay sent to clients as ``retry: 1000``: long enough not to hammer a gateway
#: that restarts, short enough for tests that reconnect.
EVENT_RETRY = 1.0
#: Event framings of a stream response.
FRAMINGS = ("chunked", "close")
#: Seconds between two checks, while a stream is idle or stalled, that its client is still
#: there: bounds how long the thread of a vanished client lives.
CHECK_INTERVAL = 0.25
#: Events taken from the log per lock acquisition, so publishers never wait long.
BATCH = 256
#: The keep-alive comment.
PING = b": ping\n\n"
#: The last chunk of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(frozen=True)
class StreamSettings:
    """How a gateway's streams behave; see :class:`~sark_sync.testing.LocalGateway`.

    :param ping_interval: seconds of silence before a ``: ping`` (> 0).
    :param retry: the reconnection delay sent as ``retry: <ms>``, in seconds (>= 0; rounded
        to whole milliseconds).
    :param framing: one of :data:`FRAMINGS`.
    """

    ping_interval: float = PING_INTERVAL
    retry: float = EVENT_RETRY
    framing: str = "chunked"

    def __post_init__(self) -> None:
        if not _number(self.ping_interval) or not self.ping_interval > 0:
            raise ValueError(f"ping_interval must be a number of seconds > 0, got "
                             f"{self.ping_interval!r}")
        if not _number(self.retry) or not 0 <= self.retry < 1e9:
            raise ValueError(f"event_retry must be a number of seconds >= 0, got {self.retry!r}")
        if self.framing not in FRAMINGS:
            raise ValueError(f"event_framing must be one of {', '.join(FRAMINGS)}; got "
                             f"{self.framing!r}")

    @property
    def retry_ms(self) -> int:
        return round(self.retry * 1000)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client closed its end of ``sock`` (or the socket is unusable), without
    blocking and without consuming what the client may have sent."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class EventStream:
    """Writes one event stream until it ends; see the module docstring.

    :param send: writes bytes in full or raises ``OSError``.
    :param is_peer_closed: tells whether the client went away (checked while idle).
    :param stopping: set when the gateway stops.
    :param fault: the fault this request consumed, if any (only its stream fields apply).
    """

    def __init__(
        self,
        log: EventLog,
        subscription: Subscription,
        settings: StreamSettings,
        *,
        send: Callable[[bytes], object],
        is_peer_closed: Callable[[], bool],
        stopping: threading.Event,
        fault: Fault | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._types = subscription.types
        self._subscription = subscription
        self._settings = settings
        self._send = send
        self._is_peer_closed = is_peer_closed
        self._stopping = stopping
        self._fault = fault
        self._clock = clock
        self._chunked = settings.framing == "chunked"
        self.sent = 0

    def run(self, head: bytes = b"") -> str:
        """Write ``head`` (the status line and headers) and the stream; return why it ended:
        ``"stopped"``, ``"disconnected"``, ``"dropped"`` or ``"stalled"``."""
        reset, cursor = self._log.resume(self._subscription)
        try:
            # The opening block also says where the stream stands (``id: <cursor>``, no
            # data): a client that reconnects before its first event resumes from there
            # instead of from "now", which would lose what was published in between. Not
            # after a reset: the client must keep asking with its old id until it has seen
            # the reset and a real event.
            position = b"id: %d\n" % cursor if reset is None else b""
            opening = b"retry: %d\n%s\n" % (self._settings.retry_ms, position)
            self._send(head + self._frame(opening))
            if reset is not None:
                self._send(self._frame(reset.frame))
            return self._follow(cursor)
        except OSError:
            return "disconnected"

    def _frame(self, payload: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(payload), payload)
        return payload

    def _limit(self) -> int | None:
        fault = self._fault
        if fault is None:
            return None
        return fault.drop_after_events if fault.drop_after_events is not None \
            else fault.stall_after_events

    def _follow(self, cursor: int) -> str:
        limit, ping_interval = self._limit(), self._settings.ping_interval
        last_write = self._clock()
        while True:
            if self._stopping.is_set() or self._log.closed:
                if self._chunked:
                    self._send(LAST_CHUNK)
                return "stopped"
            if limit is not None and self.sent >= limit:
                return self._fault_end()
            reset, batch = self._log.read(cursor, BATCH)
            if reset is not None:
                self._send(self._frame(reset.frame))
                last_write = self._clock()
            for event in batch:
                if limit is not None and self.sent >= limit:
                    return self._fault_end()
                cursor = event.id
                if self._types is not None and event.type not in self._types:
                    continue
                self._send(self._frame(event.frame))
                self.sent += 1
                last_write = self._clock()
            # Checked after every batch too: a flow of events filtered out is silence to
            # this client, and the ping is also what finds out that a client went away.
            idle = last_write + ping_interval - self._clock()
            if idle <= 0:
                self._send(self._frame(PING))
                last_write = self._clock()
            elif batch:
                continue
            elif not self._log.wait(cursor, min(idle, CHECK_INTERVAL)) and self._is_peer_closed():
                return "disconnected"

    def _fault_end(self) -> str:
        fault = self._fault
        assert fault is not None
        if fault.drop_after_events is not None:
            return "dropped"
        deadline = None if fault.stall is None else self._clock() + fault.stall
        while True:
            pause = CHECK_INTERVAL if deadline is None else min(
                CHECK_INTERVAL, deadline - self._clock())
            if pause <= 0 or self._stopping.wait(pause) or self._is_peer_closed():
                return "stalled"
