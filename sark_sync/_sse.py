"""Server-Sent Events framing: bytes from short reads in, complete event blocks out. No I/O.

sseclient-py parses the fields of an event (``event``, ``data`` over several lines, ``id``,
``retry``, comments, fields without a colon), and sark_sync relies on it for that. What it
leaves to its caller, or gets wrong for a stream that must lose nothing, is done here:

- **Line ends.** CR, LF and CRLF all end a line (WHATWG HTML, "Parsing an event stream"),
  mixed in one stream, and a CRLF may be split between two reads. sseclient-py recognises an
  event's end only as ``\\n\\n``, ``\\r\\r`` or ``\\r\\n\\r\\n``, so ``data: x\\n\\r\\n`` would
  merge two events. Every line end becomes ``\\n`` here, as soon as it is seen (a CR at the end
  of a read ends its line at once: the event is not held back waiting for a possible LF).
- **A leading byte order mark** is dropped, even when split across reads.
- **Size.** An event still unfinished after ``max_event_bytes`` raises
  :class:`EventTooLarge` instead of growing a buffer without bound.
- **Events without data.** sseclient-py drops a block without ``data`` (a lone ``retry:`` on
  connect, a lone ``id:``), yet its ``retry`` and ``id`` fields must still take effect;
  :func:`fields_of` reads them.
- **Speed.** sseclient-py's general parser costs about 4 µs an event, more than a whole raw
  parser; :func:`simple_fields` reads the one shape gateways send (``id``, ``event``,
  ``data``, ``retry``, each at most once, as ``name: value``) with the very same result, and
  every other block goes to sseclient-py.

A block is returned as soon as its blank line arrives; nothing waits for a read to fill up.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EventTooLarge",
    "SSEFramer",
    "fields_of",
    "has_data",
    "simple_fields",
]

#: Largest event accepted, in bytes of the wire form (16 MiB).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


class EventTooLarge(ValueError):
    """An event grew past the cap before its blank line arrived."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"an event of more than {limit} bytes (at least {size})")
        self.size = size
        self.limit = limit


class SSEFramer:
    """Split one connection's byte stream into event blocks (make one per connection).

    ``feed(chunk)`` returns the blocks the chunk completed, in order, each normalised to
    ``\\n`` line ends and ending with ``\\n\\n`` (the form sseclient-py parses). Blocks with
    only comments or blank lines (``: ping``) are returned too; they produce no event.
    """

    __slots__ = ("_at_start", "_buffer", "_cr_pending", "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be >= 1")
        self.max_event_bytes = max_event_bytes
        self._buffer = b""
        self._cr_pending = False  # the last chunk ended with CR: a leading LF is its pair
        self._at_start = True  # a BOM may still come

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._cr_pending:
            self._cr_pending = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr_pending = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe a BOM split across reads: wait for more
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM):]
        if buffer[:1] == b"\n":
            buffer = buffer.lstrip(b"\n")  # blank lines between events dispatch nothing
        end = buffer.find(b"\n\n")
        if end < 0:
            self._keep(buffer)
            return []
        blocks: list[bytes] = []
        start = 0
        while end >= 0:
            if end + 2 - start > self.max_event_bytes:
                raise EventTooLarge(end + 2 - start, self.max_event_bytes)
            blocks.append(buffer[start:end + 2])
            start = end + 2
            while buffer[start:start + 1] == b"\n":
                start += 1
            end = buffer.find(b"\n\n", start)
        self._keep(buffer[start:])
        return blocks

    def _keep(self, rest: bytes) -> None:
        if len(rest) > self.max_event_bytes:
            self._buffer = b""
            raise EventTooLarge(len(rest), self.max_event_bytes)
        self._buffer = rest

    @property
    def pending(self) -> int:
        """Bytes of the unfinished event held (discarded if the connection ends now)."""
        return len(self._buffer)


def has_data(block: bytes) -> bool:
    """Whether sseclient-py dispatches an event for this normalised block (it has a ``data``
    field: ``data``, ``data:`` or ``data: ...``)."""
    if block.startswith(b"data"):
        rest = block[4:5]
        if rest in (b":", b"\n"):
            return True
    at = block.find(b"\ndata")
    while at >= 0:
        if block[at + 5:at + 6] in (b":", b"\n"):
            return True
        at = block.find(b"\ndata", at + 1)
    return False


def fields_of(block: bytes) -> tuple[str | None, int | None]:
    """The ``id`` and ``retry`` a block sets: (id or None, retry in ms or None).

    As the spec says: an ``id`` containing NUL is ignored (``None``), an empty ``id`` resets
    the last event id (``""``), and a ``retry`` that is not all ASCII digits is ignored.
    """
    event_id: str | None = None
    retry: int | None = None
    for raw in block.split(b"\n"):
        name, _, value = raw.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"id" and b"\0" not in value:
            event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            retry = int(value)
    return event_id, retry


_SIMPLE = frozenset((b"id", b"event", b"data", b"retry"))


def simple_fields(block: bytes) -> tuple[str | None, str, str, str | None] | None:
    """``(id, event, data, retry)`` of a block in the common shape, else ``None``.

    The common shape: one ``data`` line, and at most one each of ``id``, ``event`` and
    ``retry``, every line ``name: value`` (one space after the colon), valid UTF-8. The
    result is what sseclient-py gives for the block (``event`` defaults to ``"message"``);
    anything else (comments, several ``data`` lines, a field without a colon or space,
    unknown fields) returns ``None`` and is left to sseclient-py.
    """
    lines = block[:-2].split(b"\n")
    if len(lines) > 4:
        return None
    found: dict[bytes, bytes] = {}
    for line in lines:
        name, separator, value = line.partition(b": ")
        if not separator or name not in _SIMPLE or name in found:
            return None
        found[name] = value
    data = found.get(b"data")
    if data is None:
        return None
    try:
        event_id = found.get(b"id")
        event = found.get(b"event")
        retry = found.get(b"retry")
        return (
            None if event_id is None else event_id.decode("utf-8"),
            "message" if not event else event.decode("utf-8"),
            data.decode("utf-8"),
            None if retry is None else retry.decode("utf-8"),
        )
    except UnicodeDecodeError:
        return None
