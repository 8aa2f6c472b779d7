"""Server-Sent Events framing and fields: bytes from short reads in, events out. No I/O.

sseclient-py parses the ``event`` and ``data`` fields of an event (``data`` over several
lines, comments, fields without a colon), and sark_sync relies on it for that. What it leaves
to its caller, or gets wrong for a stream that must lose nothing, is done here, as the WHATWG
HTML standard ("Parsing an event stream") says:

- **Line ends.** CR, LF and CRLF all end a line, mixed in one stream, and a CRLF may be split
  between two reads. sseclient-py recognises an event's end only as ``\\n\\n``, ``\\r\\r`` or
  ``\\r\\n\\r\\n``, so ``data: x\\n\\r\\n`` would merge two events. Every line end becomes
  ``\\n`` here, as soon as it is seen (a CR at the end of a read ends its line at once: the
  event is not held back waiting for a possible LF).
- **A leading byte order mark** is dropped, even when split across reads; one later in the
  stream is an ordinary character (a line ``\\ufeffdata: x`` is an unknown field).
- **Size.** An event still unfinished after ``max_event_bytes`` raises
  :class:`EventTooLarge` instead of growing a buffer without bound; the framer holds at most
  that many bytes between reads (or the first two bytes of a BOM cut short, whatever the cap),
  and reading an endless line costs linear time.
- **``id`` and ``retry``** are read line by line, each in turn, also in blocks without data (a
  lone ``retry:`` on connect): an ``id`` containing NUL is ignored, an empty one resets the
  last id, and a ``retry`` of anything but ASCII digits (``²``, ``-1``, ``1.5``) is ignored.
  A ``retry`` above :data:`MAX_RETRY_MS` is read as that cap, however many digits it has.
- **Data that does not decode** is delivered as its text: invalid UTF-8 becomes U+FFFD, and
  data that is not JSON, JSON nested too deeply to decode or JSON with a number too long to
  read, is :attr:`Event.data` as a ``str``; it never ends the stream.
- **Resuming.** :func:`resume_header` is the ``Last-Event-ID`` value of an id: its UTF-8
  bytes, as browsers send it; an id that no HTTP header can carry is never sent.
- **Speed.** sseclient-py's general parser costs about 4 µs an event, more than a whole raw
  parser; :func:`simple_fields` reads the one shape gateways send (``id``, ``event``,
  ``data``, ``retry``, each at most once, as ``name: value``) with the very same result, and
  every other block goes to sseclient-py.

A block is returned as soon as its blank line arrives; nothing waits for a read to fill up.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import sseclient

from .._models import Event
from ._sse_fast import new_event, simple_fields, simple_lines

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MAX_RESUME_ID_BYTES",
    "MAX_RETRY_MS",
    "EventReader",
    "EventTooLarge",
    "SSEFramer",
    "fields_of",
    "has_data",
    "resume_header",
    "retry_of",
    "simple_fields",
]

log = logging.getLogger("sark_sync.sse")

#: Largest event accepted, in bytes of the wire form (16 MiB).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
#: Longest reconnection time a server's ``retry:`` sets, in ms (60 s); larger values read as it.
MAX_RETRY_MS = 60_000
#: Longest ``Last-Event-ID`` sent, in bytes (servers commonly refuse header lines over 8 KiB).
MAX_RESUME_ID_BYTES = 4096

_BOM = b"\xef\xbb\xbf"
_RETRY_DIGITS = len(str(MAX_RETRY_MS))
#: Bytes no HTTP field value may hold (RFC 9110 5.5: CTLs other than HTAB).
_NOT_IN_HEADER = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BLANK = re.compile(rb"\n*")


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
    only comments or blank lines (``: ping``) are returned too; they produce no event. An
    event over ``max_event_bytes`` raises :class:`EventTooLarge` (the connection is then
    unusable: the framer does not know where the next event starts).
    """

    __slots__ = ("_at_start", "_buffer", "_cr_pending", "_scanned", "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be >= 1")
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no blank line
        self._cr_pending = False  # the last chunk ended with CR: a leading LF is its pair
        self._at_start = True  # a BOM may still come

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._cr_pending:
            self._cr_pending = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._cr_pending = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        buffer += chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                return []  # maybe a BOM split across reads: wait for more
            self._at_start = False
            if buffer.startswith(_BOM):
                del buffer[:len(_BOM)]
        # Bytes known to hold no blank line, less one: a blank line may end with the chunk.
        scanned = self._scanned - 1 if self._scanned > 1 else 0
        if buffer.find(b"\n\n", scanned) < 0:  # no event finished
            if buffer[:1] == b"\n":  # blank lines between events: no event
                del buffer[:_BLANK.match(buffer).end()]  # type: ignore[union-attr]
            if len(buffer) > self.max_event_bytes:
                self._fail(len(buffer))
            self._scanned = len(buffer)
            return []
        # Events finished: sliced from one immutable copy (each slice is then one copy, not
        # two), made only now, so that an endless line costs no copy per read.
        data = bytes(buffer)
        size = len(data)
        find = data.find
        limit = self.max_event_bytes
        blocks: list[bytes] = []
        start = 0
        while True:
            if start < size and data[start] == 10:  # blank lines between events: no event
                start = _BLANK.match(data, start).end()  # type: ignore[union-attr]
            end = find(b"\n\n", start if start > scanned else scanned)
            if end < 0:
                break
            end += 2
            if end - start > limit:
                self._fail(end - start)
            blocks.append(data[start:end])
            start = end
        del buffer[:start]
        if len(buffer) > limit:
            self._fail(len(buffer))
        self._scanned = len(buffer)
        return blocks

    def _fail(self, size: int) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        raise EventTooLarge(size, self.max_event_bytes)

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


def retry_of(value: bytes | str) -> int | None:
    """The reconnection time in ms a ``retry`` field's value sets, or None if it sets none.

    As the spec says, only ASCII digits count (``"²"`` or ``"-1"`` are ignored); a value above
    :data:`MAX_RETRY_MS` is read as it, without ever converting hundreds of digits.
    """
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
    if not raw.isdigit():  # bytes.isdigit() is ASCII-only, and False for b""
        return None
    digits = raw.lstrip(b"0") or b"0"
    if len(digits) > _RETRY_DIGITS:
        return MAX_RETRY_MS
    return min(int(digits), MAX_RETRY_MS)


def fields_of(block: bytes) -> tuple[str | None, int | None]:
    """The ``id`` and ``retry`` a block sets: (id or None, retry in ms or None).

    As the spec says, each line in turn: an ``id`` containing NUL is ignored, an empty ``id``
    resets the last event id (``""``), and a ``retry`` that is not all ASCII digits is ignored
    (see :func:`retry_of`). The last line that sets a field wins.
    """
    event_id: str | None = None
    retry: int | None = None
    for raw in block.split(b"\n"):
        name, _, value = raw.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"id" and b"\0" not in value:
            event_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            ms = retry_of(value)
            retry = retry if ms is None else ms
    return event_id, retry


def resume_header(event_id: str) -> bytes | None:
    """The ``Last-Event-ID`` header value that resumes after ``event_id``, or None if no HTTP
    header can carry it.

    The value is the id's UTF-8 bytes, as the HTML standard has browsers send it (so a server
    that resumes browsers resumes us; a percent-encoded id would match nothing), without the
    spaces and tabs around it (an HTTP server strips them on receipt anyway: ``" 7"`` arrives
    as ``7`` whatever is sent). An id that is blank, holds a control character (CR, LF and
    NUL included: never sent raw) or is longer than :data:`MAX_RESUME_ID_BYTES` gives None.
    """
    try:
        value = event_id.strip(" \t").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no bytes stand for it
        return None
    if not value or len(value) > MAX_RESUME_ID_BYTES or _NOT_IN_HEADER.search(value):
        return None
    return value


class EventReader:
    """The events of one stream's blocks, and the state the spec carries between them.

    ``last_event_id`` is the spec's "last event ID string" (the id of the last event that set
    one; ``""`` after an empty ``id``), ``retry_ms`` the reconnection time the server set
    (capped at :data:`MAX_RETRY_MS`), and ``resume`` the ``Last-Event-ID`` to reconnect with:
    :func:`resume_header` of the last id that a header can carry. An id that none can (a
    control character, too long) keeps the previous ``resume`` and is logged once per stream:
    reconnecting then replays events already delivered, rather than silently losing those the
    gateway sent in between.
    """

    __slots__ = ("_warned", "last_event_id", "resume", "retry_ms")

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self.resume: bytes | None = None
        self._warned = False
        if last_event_id:
            self._resume_from(last_event_id)

    def read(self, block: bytes) -> Event | None:
        """The event of a framed block, or None for a block that dispatches none (no data);
        its ``id`` and ``retry`` take effect either way. Never raises."""
        fast = simple_lines(block)
        if fast is not None:
            raw_id, raw_kind, raw_data, raw_retry = fast
            try:
                text = raw_data.decode("utf-8")
                kind = raw_kind.decode("utf-8") if raw_kind else "message"
                event_id = None if raw_id is None else raw_id.decode("utf-8")
            except UnicodeDecodeError:
                fast = None
        if fast is not None:
            retry = None if raw_retry is None else retry_of(raw_retry)
            if event_id is not None:
                if event_id.isdigit() and event_id.isascii() and \
                        len(event_id) <= MAX_RESUME_ID_BYTES:
                    # A gateway's id (ASCII digits): a header carries it as it is.
                    self.last_event_id = event_id
                    self.resume = raw_id
                    event_id = None
                elif "\0" in event_id:
                    event_id = None
        else:
            event_id, retry = fields_of(block)
            parsed = _sseclient_event(block) if has_data(block) else None
            if parsed is None:
                self._set(event_id, retry)
                return None
            kind, text = parsed
        if event_id is not None or retry is not None:
            self._set(event_id, retry)
        return new_event(self.last_event_id, kind, _decoded(text), retry)

    def _set(self, event_id: str | None, retry: int | None) -> None:
        if retry is not None:
            self.retry_ms = retry
        if event_id is None:
            return
        self.last_event_id = event_id
        if event_id:
            self._resume_from(event_id)
        else:
            self.resume = None  # an empty id: the spec's reset, reconnect without a header

    def _resume_from(self, event_id: str) -> None:
        value = resume_header(event_id)
        if value is not None:
            self.resume = value
        elif not self._warned:
            self._warned = True
            log.warning("event id of %d characters cannot be sent in a Last-Event-ID header "
                        "(control characters, blank or over %d bytes); a reconnect resumes "
                        "from the last id that can", len(event_id), MAX_RESUME_ID_BYTES)


_json_decode = json.JSONDecoder().decode


def _decoded(text: str) -> Any:
    """The JSON value of an event's data, or the text itself when it does not decode."""
    try:
        return _json_decode(text)  # json.loads(text), without its per-call checks
    except (ValueError, RecursionError):  # not JSON, too deep, or a number too long to read
        return text


def _sseclient_event(block: bytes) -> tuple[str, str] | None:
    """sseclient-py's reading of a block: (event type, data), or None if it dispatches no
    event for it."""
    if not block.isascii():
        block = _valid_utf8(block)
    item = next(sseclient.SSEClient(iter((block,))).events(), None)
    return None if item is None else (item.event, item.data)


def _valid_utf8(block: bytes) -> bytes:
    """The block, with invalid UTF-8 replaced by U+FFFD as the SSE spec decodes it (sseclient-py
    would raise, and the same event would come back on every reconnect)."""
    try:
        block.decode("utf-8")
        return block
    except UnicodeDecodeError:
        return block.decode("utf-8", "replace").encode("utf-8")
