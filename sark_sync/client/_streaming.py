"""The event stream operation of GatewayClient (``GET /api/v1/events``).

The stream does not go through the call pipeline's breaker and retry stages: it has no
deadline, and its own reconnection (the same :class:`~sark_sync.resilience.Retrying` loop, with
the server's ``retry:`` as its backoff base) is its resilience. The client keeps a weak
reference to every open stream so that ``close()`` ends them and a forked child forgets them.

Opening a stream is audited (event type ``"event_stream"``, transport ``"sse"``): one event when
it is connected, or when connecting fails. What follows (reconnections, the stream's end) is
the stream's own business and is not audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import nullcontext

from .._config import MAX_RECONNECTS, MAX_RESPONSE_BYTES, check_count, check_seconds
from .._exceptions import (
    ClientClosedError,
    ConfigurationError,
    TransportNotAvailableError,
    ValidationError,
)
from .._redact import Secret
from .._useragent import user_agent
from .._validation import validate_header_value
from ..transports import EventStream
from ._pipeline import Pipeline

__all__ = ["open_stream"]

#: Event type names accepted in ``types`` (they travel in a query parameter).
_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The audit event type of opening a stream.
EVENT_STREAM = "event_stream"


def open_stream(
    pipeline: Pipeline, *, api_key: Secret | None, verify: bool | str | None,
    types: Iterable[str] | str | None, last_event_id: str | int | None,
    user_token: str | None, idle_timeout: float, max_reconnects: int, max_event_bytes: int,
    custom_transport: bool,
) -> EventStream:
    """Check the arguments (nothing is sent for a bad one), connect, and track the stream;
    see :meth:`GatewayClient.stream_events` (``custom_transport``: the client was given its
    own transport, which streams cannot use)."""
    if custom_transport:
        pipeline.check_open()
        raise TransportNotAvailableError(
            "event streams need the gateway's HTTP transport; this client was given its own "
            "transport")
    pipeline.require("sse")
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
    audit = pipeline.operation("stream_events", EVENT_STREAM, transport="sse",
                               user_token=user_token or None)
    with audit or nullcontext():
        stream = EventStream(
            pipeline.base_url, api_key=api_key,
            user_token=Secret(user_token) if user_token else None,
            user_agent=user_agent(), verify=verify,
            connect_timeout=pipeline.timeouts.connect, types=wanted, last_event_id=resume,
            idle_timeout=float(idle_timeout), retry=pipeline.retry,
            max_reconnects=max_reconnects, max_event_bytes=max_event_bytes,
        )
        stream.connect()
        if audit is not None:
            audit.status_code = 200  # connected: the stream accepts nothing else
        pipeline.state().track(stream)
        if pipeline.closed:  # closed while connecting: its close() did not see this stream
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
