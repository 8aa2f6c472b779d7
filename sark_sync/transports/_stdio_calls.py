"""One stdio request in flight (its latch and its answer), and a message encoded for the
pipe: what :class:`~.stdio.StdioTransport` keeps per call."""

from __future__ import annotations

import threading
from typing import Any, Callable

from .._exceptions import ValidationError
from .._validation import unencodable
from ..wire import jsonrpc

__all__ = ["PendingCall", "encode_failure", "encode_message"]


class PendingCall:
    """One request waiting for its answer. The latch is a plain lock, held until the answer
    is in: a waiter blocked in C on ``acquire`` wakes faster than on a ``threading.Event``."""

    __slots__ = ("done", "error", "latch", "method", "result")

    def __init__(self, method: str) -> None:
        self.method = method
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

    def answered(self) -> bool:
        return self.done

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
