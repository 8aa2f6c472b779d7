"""JSON-RPC 2.0 framing for MCP's stdio transport: pure functions over bytes, no I/O.

MCP's stdio framing is one JSON-RPC message per line, UTF-8, ``\\n``-terminated, with no
embedded newlines (docs/gateway/STDIO_TRANSPORT.md). This module turns messages into lines
and lines into typed messages, and splits a byte stream into lines under a size cap
(:class:`LineSplitter`), so the transport's reader thread only moves bytes and every parsing
rule is testable with chunk lists, one-byte splits included.

A line that is not a valid JSON-RPC 2.0 message raises :class:`FramingError` (a ``ValueError``)
naming what is wrong, never echoing more than a short prefix of the line. Batches (JSON arrays)
are not part of MCP since 2025-06-18 and are rejected.

A peer controls every byte, so no line may raise anything else: a line nested deeper than the
decoder's recursion limit, a number of more digits than ``int`` converts, or invalid UTF-8 is a
:class:`FramingError` too, and when the line's top-level ``"id"`` can still be read from its
first or last bytes the error carries it (``salvaged_id``), so the one call it answered fails
at once instead of waiting for its deadline. Encoding a message nested too deeply is
:class:`NestingError`.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from ._salvage import salvage_id

__all__ = [
    "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "PARSE_ERROR",
    "ErrorResponse", "FramingError", "LineSplitter", "Message", "NestingError", "Notification",
    "Oversize", "Request", "Response", "encode_error", "encode_notification", "encode_request",
    "encode_response", "parse_answer", "parse_line",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: Largest line accepted by default (docs/gateway/ERROR_HANDLING.md, "Bounds"): far above any
#: sane message, far below memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
#: How much of a bad line an error message quotes.
_QUOTE = 80

RequestId = Union[int, str]


class FramingError(ValueError):
    """A line is not a valid JSON-RPC 2.0 message; ``id`` is set when one could be read.

    For a line that is not even JSON, ``id`` stays None (a parse error is answered with a null
    id) and ``salvaged_id`` holds the top-level id found by :func:`salvage_id`, if any: a
    client fails that one call with it."""

    def __init__(self, message: str, *, id: RequestId | None = None,
                 salvaged_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.id = id
        self.salvaged_id = id if salvaged_id is None else salvaged_id


class NestingError(ValueError):
    """A message to send is nested deeper than JSON encoding allows (a ``RecursionError`` in
    the encoder, turned into a value error the caller can report)."""


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Notification:
    method: str
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Response:
    id: RequestId
    result: Any


@dataclass(frozen=True)
class ErrorResponse:
    id: RequestId | None
    code: int
    message: str
    data: Any = None


Message = Union[Request, Notification, Response, ErrorResponse]


#: What json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False) makes per
#: call, made once (an encoder keeps no state between calls).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
#: The C encoder behind it, made per message (fresh ``markers`` find a circular reference):
#: ``JSONEncoder.encode`` also rebuilds its settings and a closure (0.7 µs of 2.8 per request).
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)


#: What json.loads runs for bytes starting ``{"`` (it detects UTF-8 and decodes them with
#: ``surrogatepass``), without its decoder's two whitespace regexes: such a line has no
#: leading whitespace, and rarely trailing (:func:`_decode_object`).
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed
#: JSON's whitespace, as ``decode`` allows it after the value.
_TRAILING = re.compile(r"[ \t\n\r]*")


def _decode_object(text: str) -> Any:
    """``json.loads(text)`` for a text starting ``{"``: the same value, the same errors
    (ValueError, RecursionError), once per message read."""
    try:
        obj, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError("Expecting value") from None
    if end != len(text) and text[end:] != "\n" \
            and _TRAILING.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError("Extra data")
    return obj


def _encode(obj: Mapping[str, Any]) -> str:  # _ENCODER.encode(obj): same text, same errors
    if _C_MAKE_ENCODER is None:  # a Python built without _json
        return _ENCODER.encode(obj)
    return "".join(_C_MAKE_ENCODER({}, _ENCODER.default, json.encoder.encode_basestring_ascii,
                                   None, ":", ",", False, False, False)(obj, 0))


def _line(obj: Mapping[str, Any]) -> bytes:
    # ensure_ascii keeps U+2028/U+2029 and every control character escaped: one physical line.
    try:
        text = _encode(obj)
    except RecursionError:
        raise NestingError("nested too deeply for JSON") from None
    return text.encode("ascii") + b"\n"


def encode_request(
    id: RequestId, method: str, params: Mapping[str, Any] | None = None
) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return _line(message)


def encode_notification(method: str, params: Mapping[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return _line(message)


def encode_response(id: RequestId, result: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": id, "result": result})


def encode_error(id: RequestId | None, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _line({"jsonrpc": "2.0", "id": id, "error": error})


def _quote(line: bytes | str) -> str:
    text = line if isinstance(line, str) else line[:_QUOTE * 4].decode("utf-8", "replace")
    return repr(text[:_QUOTE]) + ("..." if len(text) > _QUOTE else "")


def _valid_id(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def parse_line(line: bytes | str) -> Message:
    """Parse one line (with or without its newline) into a message, or raise FramingError."""
    return _message(_decode(line))


def parse_answer(line: bytes, request_id: RequestId) -> tuple[bool, Any]:
    """``(True, result)`` if ``line`` is the successful response to ``request_id``, else
    ``(False, parse_line(line))``; FramingError as :func:`parse_line`. The answer a caller
    waits for, taken without building a :class:`Response`: once per call on the stdio path,
    where the frozen dataclass and the general checks cost more than the decoding."""
    obj = _decode(line)
    if type(obj) is dict and "result" in obj and type(obj.get("id")) is type(request_id) \
            and obj["id"] == request_id and obj.get("jsonrpc") == "2.0" \
            and "method" not in obj and "error" not in obj:
        return True, obj["result"]
    return False, _message(obj)


def _decode(line: bytes | str) -> Any:
    try:
        if line[:2] in (b'{"', '{"'):  # what json.loads(line) does for it, without detection
            obj = _decode_object(line if isinstance(line, str)
                                 else line.decode("utf-8", "surrogatepass"))
        else:
            obj = json.loads(line)
    except RecursionError:
        raise FramingError("nested too deeply to decode",
                           salvaged_id=salvage_id(line)) from None
    except UnicodeDecodeError as exc:
        raise FramingError(f"not valid UTF-8 (at byte {exc.start})",
                           salvaged_id=salvage_id(line)) from None
    except ValueError:  # JSONDecodeError, or an integer of too many digits (Python >= 3.11)
        raise FramingError(f"not JSON: {_quote(line)}",
                           salvaged_id=salvage_id(line)) from None
    return obj


def _message(obj: Any) -> Message:
    if not isinstance(obj, dict):
        kind = "a batch" if isinstance(obj, list) else type(obj).__name__
        raise FramingError(f"a JSON-RPC message must be an object, got {kind}")
    raw_id = obj.get("id")
    msg_id = raw_id if _valid_id(raw_id) else None
    if obj.get("jsonrpc") != "2.0":
        raise FramingError('missing or wrong "jsonrpc": "2.0"', id=msg_id)
    if "method" in obj:
        method = obj["method"]
        params = obj.get("params")
        if not isinstance(method, str) or not method:
            raise FramingError('"method" must be a non-empty string', id=msg_id)
        if params is not None and not isinstance(params, dict):
            raise FramingError('"params" must be an object', id=msg_id)
        if "id" not in obj:
            return Notification(method, params)
        if msg_id is None:
            raise FramingError('a request "id" must be a string or an integer')
        return Request(msg_id, method, params)
    if "error" in obj:
        error = obj["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int) \
                or not isinstance(error.get("message"), str):
            raise FramingError('"error" must have an integer "code" and a string "message"',
                               id=msg_id)
        return ErrorResponse(msg_id, error["code"], error["message"], error.get("data"))
    if "result" in obj:
        if msg_id is None:
            raise FramingError('a response "id" must be a string or an integer')
        return Response(msg_id, obj["result"])
    raise FramingError('neither a request ("method") nor a response ("result"/"error")',
                       id=msg_id)


@dataclass(frozen=True)
class Oversize:
    """Stands for a line longer than the cap: its size, and its first and last bytes (enough
    to find the ``"id"`` of the response it carried, wherever the sender put it)."""

    size: int
    head: bytes
    tail: bytes

    def find_id(self) -> RequestId | None:
        for part in (self.head, self.tail):
            match = _ID_FIELD.search(part)
            if match:
                raw = match.group(1)
                return int(raw) if raw[:1] != b'"' else raw[1:-1].decode("utf-8", "replace")
        return None


_ID_FIELD = re.compile(rb'"id"\s*:\s*(-?\d+|"[^"\\]{0,200}")')
#: Bytes kept from each end of an oversize line.
_OVERSIZE_KEEP = 4096


class LineSplitter:
    """Split a byte stream into lines, capping each at ``max_line_bytes``.

    ``feed(chunk)`` returns the complete lines the chunk finished, without their ``\\n`` (a
    trailing ``\\r`` is dropped too). A line longer than the cap is not buffered: its bytes are
    discarded up to its newline, and an :class:`Oversize` stands in its place in the returned
    list, so the caller can fail the request it answered and the stream stays usable. Blank
    lines are skipped.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self.max_line_bytes = max_line_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._head = self._tail = b""
        self._discarding = False

    def whole(self, chunk: bytes) -> bool:
        """``chunk`` is one whole line within the cap and no part of a line is held, so that
        line alone is what :meth:`feed` returns for it (the common case: no buffering)."""
        return not self._parts and not self._discarding and \
            chunk.find(b"\n") == len(chunk) - 1 and len(chunk) <= self.max_line_bytes

    def feed(self, chunk: bytes) -> list[bytes | Oversize]:
        if self.whole(chunk):
            line = chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
            return [line] if line.strip() else []
        lines: list[bytes | Oversize] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            self._take(chunk[start:] if end < 0 else chunk[start:end])
            if end < 0:
                return lines
            lines.extend(self._end_line())
            start = end + 1

    def _take(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        if self._discarding:
            self._tail = (self._tail + piece)[-_OVERSIZE_KEEP:]
        elif self._size > self.max_line_bytes:
            held = b"".join(self._parts) + piece
            self._head, self._tail = held[:_OVERSIZE_KEEP], held[-_OVERSIZE_KEEP:]
            self._parts, self._discarding = [], True
        else:
            self._parts.append(piece)

    def _end_line(self) -> list[bytes | Oversize]:
        if self._discarding:
            result: list[bytes | Oversize] = [Oversize(self._size, self._head, self._tail)]
        else:
            line = b"".join(self._parts)
            if line.endswith(b"\r"):
                line = line[:-1]
            result = [line] if line.strip() else []
        self._parts, self._size, self._discarding = [], 0, False
        self._head = self._tail = b""
        return result

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line seen so far."""
        return self._size

    def finish(self) -> list[bytes | Oversize]:
        """At end of stream: the unterminated last line, if any."""
        return self._end_line()
