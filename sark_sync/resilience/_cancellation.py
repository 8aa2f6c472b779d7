"""Cancellation of a call in flight: :class:`CancelToken`, the switch a caller flips.

A caller hands a token to ``invoke_tool``/``submit`` (``cancel=token``) or to an MCP session's
``call_tool``; ``submit``'s future has one of its own, flipped by ``future.cancel()``. The call
runs inside the token's :func:`cancellable` scope, and a channel sending an MCP request reads
it with :func:`current` and registers, for as long as the request is in flight, how to abandon
it at once (:meth:`CancelToken.on_cancel`): cut the HTTP exchange's socket, fail the stdio
waiter. The channel then tells the server (``notifications/cancelled`` with the token's
reason) and raises :class:`~sark_sync.CallCancelled`, which no retry repeats and no breaker
counts.

A context variable, not a thread-local: the scope is the call, and it ends with it. A scope
inside another (``call_tool(cancel=...)`` run by ``submit``'s worker) is cancelled by either
token.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Callable

from .._exceptions import CallCancelled, GatewayError, ValidationError

__all__ = ["CANCEL_WRITE_TIMEOUT", "CancelToken", "MAX_REASON_CHARS", "cancellable",
           "cancelled_error", "cancels", "check_token", "current", "interruptible",
           "raise_if_cancelled", "sent_reason", "tell_cancelled"]

log = logging.getLogger(__name__)

#: Longest ``reason`` accepted by :meth:`CancelToken.cancel` (it is sent to the server).
MAX_REASON_CHARS = 1000
#: Seconds a stdio channel waits to write ``notifications/cancelled`` while another writer
#: holds the pipe for a moment (a server that stopped reading is not told: nobody waits on it).
CANCEL_WRITE_TIMEOUT = 0.05


class CancelToken:
    """A one-way, thread-safe switch that cancels the calls it is given to.

    :meth:`cancel` (from any thread, any number of times: the first wins) frees every call
    waiting on the token at once: each raises :class:`~sark_sync.CallCancelled` and its MCP
    server is told. One token may be given to many calls (cancel a batch), and a call given a
    cancelled token raises before anything is sent.

    >>> token = CancelToken()
    >>> token.on_cancel(lambda: print("cancelled:", token.reason))  # doctest: +ELLIPSIS
    <function ...>
    >>> token.cancel("user left")
    cancelled: user left
    >>> token.cancelled
    True
    """

    __slots__ = ("_callbacks", "_event", "_keys", "_lock", "_reason")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._keys = itertools.count()
        self._reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """The reason given to the first :meth:`cancel`, or None."""
        return self._reason

    def cancel(self, reason: str | None = None) -> None:
        """Cancel every call given this token; later calls return at once.

        ``reason`` (at most ``MAX_REASON_CHARS`` characters; :class:`ValidationError`
        otherwise) goes to the server in ``notifications/cancelled`` and to the error:
        never put a secret in it. The callbacks run on this thread, in the order they were
        registered; one that raises is logged and the others still run.
        """
        if reason is not None and (not isinstance(reason, str)
                                   or len(reason) > MAX_REASON_CHARS):
            raise ValidationError(
                f"reason must be a str of at most {MAX_REASON_CHARS} characters or None")
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            _run(callback)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback()`` on :meth:`cancel` (at once, here, if it happened already): keep
        it quick, it runs on the cancelling thread. Returns the function that unregisters
        it."""
        if not callable(callback):
            raise ValidationError(f"callback must be callable, not {type(callback).__name__}")
        with self._lock:
            if not self._event.is_set():
                key = next(self._keys)
                self._callbacks[key] = callback
                return lambda: self._forget(key)
        _run(callback)
        return _nothing

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds passed; whether it was cancelled."""
        return self._event.wait(timeout)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)

    def __repr__(self) -> str:
        return f"<CancelToken {'cancelled' if self.cancelled else 'active'}>"


def _nothing() -> None:
    """What unregisters a callback that already ran."""


def _run(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:  # a caller's callback must not stop the others, nor the cancel()
        log.exception("a cancellation callback raised")


_current: ContextVar[CancelToken | None] = ContextVar("sark_sync_cancellation", default=None)


#: ``current()``: the token of the call running in this context (None when it has none). The
#: variable's own ``get``: read twice by every call, once by its client and once by its
#: transport.
current: Callable[[], CancelToken | None] = _current.get


def check_token(token: object, name: str = "cancel") -> CancelToken | None:
    """A ``cancel=`` argument checked: None or a :class:`CancelToken`."""
    if token is not None and not isinstance(token, CancelToken):
        raise ValidationError(f"{name} must be a sark_sync.CancelToken or None, not "
                              f"{type(token).__name__}")
    return token


@contextlib.contextmanager
def cancellable(token: CancelToken | None) -> Iterator[CancelToken | None]:
    """Run the block as a call that ``token`` cancels (None: the enclosing scope's, if any).

    Inside another scope, the block's token is one both cancel, so an outer ``submit`` and an
    inner ``call_tool(cancel=...)`` each stop it.
    """
    if token is None:
        yield _current.get()
        return
    outer = _current.get()
    scope, unlink = token, _nothing
    if outer is not None and outer is not token:
        scope = CancelToken()
        unlinks = [_relay(source, scope) for source in (outer, token)]

        def unlink() -> None:
            for forget in unlinks:
                forget()
    reset = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(reset)
        unlink()


def _relay(source: CancelToken, target: CancelToken) -> Callable[[], None]:
    """Cancel ``target`` (with its reason) when ``source`` is; returns the unlink."""
    return source.on_cancel(lambda: target.cancel(source.reason))


@contextlib.contextmanager
def cancels(token: CancelToken | None, abort: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``token``'s cancellation calls ``abort`` (None: nothing to do)."""
    if token is None:
        yield
        return
    unregister = token.on_cancel(abort)
    try:
        yield
    finally:
        unregister()


def cancelled_error(server: str, method: str, token: CancelToken | None = None
                    ) -> CallCancelled:
    """What a cancelled request raises (``token`` gives the reason)."""
    reason = None if token is None else token.reason
    return CallCancelled(f"{method} to MCP server {server!r} was cancelled", reason=reason,
                         server=server, method=method)


def sent_reason(error: CallCancelled, token: CancelToken) -> str:
    """The ``reason`` of the ``notifications/cancelled`` that ``token`` fired
    (``"cancelled"`` without one), recorded in ``error`` too (made before the token fired)."""
    error.reason = token.reason
    return token.reason or "cancelled"


def tell_cancelled(notify: Callable[..., None], request_id: int, reason: str,
                   timeout: float = CANCEL_WRITE_TIMEOUT) -> None:
    """Send ``notifications/cancelled`` for ``request_id`` with a channel's ``notify``; if it
    cannot go within ``timeout`` seconds, give up (logged at debug): the call is over anyway."""
    try:
        notify("notifications/cancelled", {"requestId": request_id, "reason": reason},
               timeout=timeout)
    except GatewayError as exc:
        log.debug("could not send notifications/cancelled for %s: %s", request_id,
                  type(exc).__name__)


def raise_if_cancelled(what: str, **context: Any) -> None:
    """:class:`~sark_sync.CallCancelled` if the current call's token fired (``what`` says
    where the call was: ``"before it was sent"``; ``context`` as ``GatewayError``'s)."""
    token = _current.get()
    if token is not None and token.cancelled:
        raise CallCancelled(f"the call was cancelled {what}", reason=token.reason, **context)


def interruptible(sleep: Callable[[float], None]) -> Callable[[float], None]:
    """``sleep`` for a retry loop, except that the current call's cancellation ends the wait
    at once with :class:`~sark_sync.CallCancelled` (no attempt follows a cancel)."""

    def wait(seconds: float) -> None:
        token = _current.get()
        if token is None:
            sleep(seconds)
        elif token.wait(seconds):
            raise_if_cancelled("while waiting to retry")

    return wait
