"""The stdio requests awaiting their answers, and what each line of the server's stdout does;
a message encoded for the pipe. What :class:`~.stdio.StdioTransport` keeps per call."""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Callable

from .._exceptions import (
    ProcessExitedError,
    ProtocolError,
    RPCError,
    TransportTimeout,
    ValidationError,
)
from .._validation import unencodable
from ..wire import jsonrpc

__all__ = ["CallTable", "PendingCall", "encode_failure", "encode_message"]

log = logging.getLogger("sark_sync.stdio")


class PendingCall:
    """One request waiting for its answer. The latch is a plain lock, held until the answer
    is in: a waiter blocked in C on ``acquire`` wakes faster than on a ``threading.Event``."""

    __slots__ = ("done", "error", "latch", "result")

    def __init__(self) -> None:
        self.latch = threading.Lock()
        self.latch.acquire()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any, error: BaseException | None) -> bool:
        """Deliver the answer once (callers hold the transport's lock); False if it was
        already delivered."""
        if self.done:
            return False
        self.result, self.error, self.done = result, error, True
        self.latch.release()
        return True

    def wait(self, timeout: float) -> bool:
        return self.latch.acquire(timeout=max(0.0, timeout))


def encode_message(build: Callable[[], bytes]) -> bytes:
    """A message as a line, or the ValidationError of parameters JSON cannot carry (the same
    words as on the gateway path)."""
    try:
        return build()
    except Exception as exc:  # a caller's object may raise anything while it is encoded
        raise encode_failure(exc) from None


def encode_failure(exc: Exception) -> ValidationError:
    """The ValidationError for what encoding a message raised."""
    return unencodable(RecursionError() if isinstance(exc, jsonrpc.NestingError) else exc)


class CallTable:
    """The requests of one server awaiting their answers, and the reading of its stdout: an
    answer settles its call, a request or notification goes to its callback (on the reading
    thread). Whoever holds the pipe reads (:mod:`._stdio_baton`): one at a time."""

    def __init__(self, name: str, max_line_bytes: int,
                 on_request: Callable[[jsonrpc.Request], None] | None,
                 on_notification: Callable[[jsonrpc.Notification], None] | None,
                 refuse: Callable[[jsonrpc.RequestId, int, str], None]) -> None:
        self.name = name
        self.max_line_bytes = max_line_bytes
        self.pending: dict[jsonrpc.RequestId, PendingCall] = {}  # what is still awaited
        self.lock = threading.Lock()  # guards pending and exit_error
        self.exit_error: ProcessExitedError | None = None  # set once: nothing more answers
        self._lines = jsonrpc.LineSplitter(max_line_bytes)
        self._on_request, self._on_notification = on_request, on_notification
        self._refuse = refuse  # answers a server's request nobody handles

    def enlist(self, request_id: jsonrpc.RequestId) -> PendingCall:
        """A request's place in the table (before anyone can read its answer)."""
        pending = PendingCall()
        with self.lock:
            if self.exit_error is not None:
                raise copy.copy(self.exit_error)
            self.pending[request_id] = pending
        return pending

    def forget(self, request_id: jsonrpc.RequestId) -> None:
        if request_id in self.pending:  # an answer took it out already (resolve)
            with self.lock:
                self.pending.pop(request_id, None)

    def own_answer(self, chunk: bytes, request_id: jsonrpc.RequestId
                   ) -> tuple[bool, Any]:
        """``(True, result)`` if ``chunk`` is one whole line answering ``request_id`` (most
        answers, read by their own caller): no table, no splitter, no dispatch. Else
        ``(False, the message parsed from it, if any)``, for :meth:`feed` or :meth:`handle`."""
        if not self._lines.whole(chunk):
            return False, None
        try:
            return jsonrpc.parse_answer(chunk, request_id)
        except jsonrpc.FramingError:
            return False, None  # the splitter and the dispatch report it

    def feed(self, chunk: bytes) -> None:
        """A chunk read from stdout; b"" at its end."""
        for line in self._lines.feed(chunk) if chunk else self._lines.finish():
            if isinstance(line, jsonrpc.Oversize):
                self._on_oversize(line)
                continue
            try:
                message = jsonrpc.parse_line(line)
            except jsonrpc.FramingError as exc:
                log.warning("%s wrote a line that is not JSON-RPC (ignored): %s", self.name, exc)
                if exc.salvaged_id is not None:
                    self.resolve(exc.salvaged_id, error=ProtocolError(
                        f"unreadable answer from {self.name!r}: {exc}", server=self.name))
                continue
            self.handle(message)

    def handle(self, message: jsonrpc.Message) -> None:
        if isinstance(message, jsonrpc.Response):
            self.resolve(message.id, result=message.result)
        elif isinstance(message, jsonrpc.ErrorResponse):
            error = RPCError(f"{self.name!r} answered error {message.code}: {message.message}",
                             code=message.code, rpc_message=message.message, data=message.data,
                             server=self.name)
            if message.id is None:
                log.warning("%s reported an error without an id: %s", self.name, error)
            else:
                self.resolve(message.id, error=error)
        else:
            callback: Callable[[Any], None] | None = (
                self._on_request if isinstance(message, jsonrpc.Request)
                else self._on_notification
            )
            try:
                if callback is not None:
                    callback(message)
                elif isinstance(message, jsonrpc.Request):
                    self._refuse(message.id, jsonrpc.METHOD_NOT_FOUND, "method not found")
            except (ProcessExitedError, TransportTimeout) as exc:
                log.debug("could not answer %s of %s: %s", message.method, self.name, exc)
            except Exception:
                log.exception("callback for %s from %s failed", message.method, self.name)

    def _on_oversize(self, line: jsonrpc.Oversize) -> None:
        request_id = line.find_id()
        with self.lock:
            if request_id is None and len(self.pending) == 1:
                request_id = next(iter(self.pending))
        log.warning("%s wrote a %d-byte line, over the %d-byte cap (discarded)", self.name,
                    line.size, self.max_line_bytes)
        if request_id is not None:
            self.resolve(request_id, error=ProtocolError(
                f"the answer of {self.name!r} is a {line.size}-byte line, over the "
                f"{self.max_line_bytes}-byte limit (max_line_bytes)", server=self.name))

    def resolve(self, request_id: jsonrpc.RequestId, *, result: Any = None,
                error: BaseException | None = None) -> None:
        with self.lock:
            # Out of the table once answered: the table is what is still awaited (a caller
            # reads its own answer only while nobody else has one to wait for). A call already
            # failed (closed, timed out) may still be in the table until its thread wakes up:
            # its late answer is an abandoned one too.
            pending = self.pending.pop(request_id, None)
            if pending is not None and pending.settle(result, error):
                return
        log.debug("%s answered unknown or abandoned request %r", self.name, request_id)

    def fail_all(self, error: ProcessExitedError) -> None:
        """Nothing more will answer: every call fails with ``error`` (the first one stays)."""
        with self.lock:
            if self.exit_error is None:
                self.exit_error = error
            for waiter in self.pending.values():
                # One instance per raiser: their tracebacks differ.
                waiter.settle(None, copy.copy(error))
