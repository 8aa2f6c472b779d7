"""The event stream operation of GatewayClient (DESIGN §4, Events).

A mixin, as :mod:`._discovery` is: the stream does not go through the call pipeline (it has no
deadline, and no breaker: its own reconnection policy is its resilience), so it lives apart
from it. The client keeps a weak reference to every open stream so that ``close()`` ends them
and a forked child forgets them.

Opening a stream is audited (event type ``"event_stream"``, transport ``"sse"``, see
:mod:`._auditing`): one event when it is connected, or when connecting fails. What follows
(reconnections, the stream's end) is the stream's own business and is not audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from .._config import (
    MAX_RECONNECTS,
    MAX_RESPONSE_BYTES,
    RetryPolicy,
    Timeouts,
    check_count,
    check_seconds,
)
from .._exceptions import ClientClosedError, ConfigurationError, ValidationError
from .._redact import Secret
from .._useragent import user_agent
from .._validation import validate_header_value
from ..transports.sse import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RECONNECTS, EventStream
from ..wire._sse import DEFAULT_MAX_EVENT_BYTES

if TYPE_CHECKING:
    from ._governance_stage import Governance
    from ._resources import Resources

__all__ = ["StreamingMixin"]

#: Event type names accepted in ``types`` (they travel in a query parameter).
_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The audit event type of opening a stream.
EVENT_STREAM = "event_stream"


class StreamingMixin:
    """Event streams. Mixed into :class:`GatewayClient`."""

    base_url: str
    timeouts: Timeouts
    retry: RetryPolicy
    _api_key: Secret | None
    _verify: bool | str | None
    _governance: Governance

    if TYPE_CHECKING:
        @property
        def closed(self) -> bool: ...
        def _require(self, transport: str) -> None: ...
        def _state(self) -> Resources: ...

    def stream_events(
        self,
        types: Iterable[str] | str | None = None,
        last_event_id: str | int | None = None,
        *,
        user_token: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> EventStream:
        """Stream the gateway's events (``GET /api/v1/events``), reconnecting as needed.

        Connects before returning, so no event published from now on is missed; iterate the
        returned :class:`~sark_sync.transports.sse.EventStream` (a context manager; ``close()``
        may be called from any thread) to get :class:`~sark_sync.Event` objects.

        :param types: event types wanted (e.g. ``["tool_invoked"]``, or one type as a str);
            the gateway filters, and so does the client. ``stream_reset`` always comes through.
        :param last_event_id: resume after this id: the gateway replays what followed it.
            It travels in ``Last-Event-ID`` as its UTF-8 bytes (as browsers send it), without
            surrounding spaces; the stream then resumes from each event id it receives, except
            one no HTTP header can carry (control characters, over 4 KiB): a reconnect then
            resumes from the last id that can, so events are replayed rather than lost.
        :param idle_timeout: seconds without a byte (events or ``: ping``) before the
            connection counts as stalled and is replaced.
        :param max_reconnects: consecutive failed attempts before giving up with the last
            error; the count restarts at every event received.
        :param max_event_bytes: larger events end the stream with :class:`ProtocolError`.

        Events whose data is not JSON (or is JSON nested too deeply to decode) are delivered
        with their text as ``data``; a ``retry:`` from the gateway counts up to 60 s; a field
        value never raises.

        Raises :class:`AuthenticationError`, :class:`AuthorizationDenied`,
        :class:`NotFoundError` and other 4xx errors at once (here or while iterating), and
        the last connection error after ``max_reconnects`` failed attempts in a row;
        :class:`ValidationError` before anything is sent for an invalid argument (a
        ``user_token`` that is no valid header value included, without quoting it).
        """
        self._require("sse")
        wanted = _types(types)
        if user_token:  # sent as a header: checked as invoke_tool checks it, never quoted
            user_token = validate_header_value(user_token, "user_token")
        if isinstance(last_event_id, bool) or not isinstance(last_event_id, (str, int, type(None))):
            raise ValidationError("last_event_id must be a str, an int or None")
        resume = None if last_event_id is None else str(last_event_id)
        if resume is not None and (not resume.isprintable() or len(resume) > 1024):
            raise ValidationError("last_event_id must be printable, at most 1024 characters")
        try:
            idle_timeout = check_seconds("idle_timeout", idle_timeout)
            max_reconnects = check_count("max_reconnects", max_reconnects, 0, MAX_RECONNECTS)
            max_event_bytes = check_count("max_event_bytes", max_event_bytes, 1,
                                          MAX_RESPONSE_BYTES)
        except ConfigurationError as exc:  # a per-call argument
            raise ValidationError(exc.message) from None
        audit = self._governance.operation("stream_events", EVENT_STREAM, "sse",
                                           user_token=user_token or None)
        with audit or nullcontext():
            stream = EventStream(
                self.base_url, api_key=self._api_key,
                user_token=Secret(user_token) if user_token else None,
                user_agent=user_agent(), verify=self._verify,
                connect_timeout=self.timeouts.connect, types=wanted, last_event_id=resume,
                idle_timeout=float(idle_timeout), retry=self.retry,
                max_reconnects=max_reconnects, max_event_bytes=max_event_bytes,
            )
            if audit is not None:
                audit.status_code = 200  # connected: the stream accepts nothing else
            self._state().track(stream)
            if self.closed:  # closed while connecting: its close() did not see this stream
                stream.close()
                raise ClientClosedError("this GatewayClient is closed")
        return stream


def _types(types: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if types is None:
        return None
    names = types.split(",") if isinstance(types, str) else list(types)
    if not names:
        raise ValidationError("types must name at least one event type (None: all types)")
    for name in names:
        if not isinstance(name, str) or _TYPE.fullmatch(name) is None:
            raise ValidationError(f"invalid event type {name!r}: 1-64 letters, digits, '_', "
                                  "'.' or '-'")
    return tuple(dict.fromkeys(names))
