"""The common shapes of SSE blocks, read fast (see :mod:`._sse`, "Speed"), and the Event of
each one made without the frozen dataclass's ``__init__``."""

from __future__ import annotations

import re
from typing import Any

from .._models import Event

__all__ = ["new_event", "simple_fields", "simple_lines"]

#: The blocks a gateway sends, ``[id: ...\n][event: ...\n]data: ...\n\n``, in that order.
_GATEWAY_SHAPE = re.compile(rb"(?:id: ([^\n]*)\n)?(?:event: ([^\n]*)\n)?data: ([^\n]*)\n\n")


def simple_fields(block: bytes) -> tuple[str | None, str, str, str | None] | None:
    """``(id, event, data, retry)`` of a block in the common shape, else ``None``.

    The common shape: one ``data`` line, and at most one each of ``id``, ``event`` and
    ``retry``, every line ``name: value`` (one space after the colon), valid UTF-8. The
    result is what sseclient-py gives for the block (``event`` defaults to ``"message"``);
    anything else (comments, several ``data`` lines, a field without a colon or space,
    unknown fields) returns ``None`` and is left to sseclient-py. ``retry`` is the field's
    text: :func:`retry_of` reads it.
    """
    found = simple_lines(block)
    if found is None:
        return None
    event_id, event, data, retry = found
    try:
        return (
            None if event_id is None else event_id.decode("utf-8"),
            "message" if not event else event.decode("utf-8"),
            data.decode("utf-8"),
            None if retry is None else retry.decode("utf-8"),
        )
    except UnicodeDecodeError:
        return None


def simple_lines(block: bytes
                  ) -> tuple[bytes | None, bytes | None, bytes, bytes | None] | None:
    """The raw ``(id, event, data, retry)`` values of a block in the common shape (see
    :func:`simple_fields`), not decoded, else ``None``."""
    gateway = _GATEWAY_SHAPE.fullmatch(block)
    if gateway is not None:  # one C call for what the loop below reads the same
        return gateway.group(1), gateway.group(2), gateway.group(3), None
    lines = block[:-2].split(b"\n")
    if len(lines) > 4:
        return None
    event_id = event = data = retry = None
    for line in lines:
        name, separator, value = line.partition(b": ")
        if not separator:
            return None
        if name == b"data":
            if data is not None:
                return None
            data = value
        elif name == b"id":
            if event_id is not None:
                return None
            event_id = value
        elif name == b"event":
            if event is not None:
                return None
            event = value
        elif name == b"retry":
            if retry is not None:
                return None
            retry = value
        else:
            return None
    if data is None:
        return None
    return event_id, event, data, retry


_new_object = object.__new__
_set_attribute = object.__setattr__


def new_event(event_id: str | None, kind: str, data: Any, retry: int | None) -> Event:
    """``Event(event_id, kind, data, retry)`` without the frozen dataclass's ``__init__``
    (four ``object.__setattr__`` calls, half the cost of reading an event): the same object,
    made once per event of a stream."""
    event = _new_object(Event)
    _set_attribute(event, "__dict__", {"id": event_id, "type": kind, "data": data,
                                       "retry": retry})
    return event
