"""Cancellation of a call in flight: the token a cancelled future fires.

``GatewayClient.submit`` runs each call inside :func:`cancellable` scope of its own
:class:`Cancellation`; a channel sending an MCP request reads it with :func:`current` and
registers, for as long as the request is in flight, how to abandon it at once
(:meth:`Cancellation.on_cancel`): cut the HTTP exchange's socket, fail the stdio waiter. The
channel then tells the server (``notifications/cancelled``) and raises
:class:`concurrent.futures.CancelledError`, which no retry repeats and no breaker counts (it is
not a :class:`~sark_sync.GatewayError`).

A context variable, not a thread-local: the scope is the worker's call, and it ends with it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextvars import ContextVar
from typing import Callable

__all__ = ["Cancellation", "cancellable", "cancelled_error", "cancels", "current"]


class Cancellation:
    """A one-way switch with callbacks: :meth:`cancel` runs each registered callback once,
    on the cancelling thread (so they must be quick and never block)."""

    __slots__ = ("_callbacks", "_keys", "_lock", "cancelled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on :meth:`cancel` (at once if it happened already); returns the
        function that unregisters it."""
        with self._lock:
            key = next(self._keys)
            if not self.cancelled:
                self._callbacks[key] = callback
                return lambda: self._forget(key)
        callback()
        return lambda: None

    def _forget(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)


_current: ContextVar[Cancellation | None] = ContextVar("sark_sync_cancellation", default=None)


def current() -> Cancellation | None:
    """The token of the call running in this context (None outside ``submit``)."""
    return _current.get()


@contextlib.contextmanager
def cancellable(token: Cancellation) -> Iterator[Cancellation]:
    """Run the block as the call that ``token`` cancels."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


@contextlib.contextmanager
def cancels(token: Cancellation | None, abort: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``token``'s cancellation calls ``abort`` (None: nothing to do)."""
    if token is None:
        yield
        return
    unregister = token.on_cancel(abort)
    try:
        yield
    finally:
        unregister()


def cancelled_error(server: str, method: str) -> CancelledError:
    """What a cancelled request raises (its future is cancelled already: nobody sees it but
    the audit, which records its type)."""
    return CancelledError(f"{method} to MCP server {server!r} was cancelled")
