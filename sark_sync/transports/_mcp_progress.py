"""Progress of tool calls: tokens out, ``notifications/progress`` back to the caller, in order.

A call given ``progress=`` sends a ``progressToken`` of the session's own making in
``params._meta`` (kept in the 2026-07-28 envelope too); each ``notifications/progress`` the
server sends with that token becomes one ``progress(progress, total, message)`` call. The
contract:

- the callbacks run on the session's callbacks thread (:class:`~._mcp_callbacks.
  CallbackRunner`), never on the thread that reads the server, one after the other in the
  order the server sent them; a callback that raises is logged and the next one runs;
- a call returns its result only after the progress it received before its answer was
  delivered (waiting at most :data:`PROGRESS_FLUSH_TIMEOUT` seconds for a slow callback):
  once ``call_tool`` returns a result, no callback of that call runs any more. A call that
  fails (cancelled, timed out) does not wait: its caller is freed at once, and what was
  already queued may still run;
- a notification for no call in flight (an unknown or finished token) is ignored, as the
  spec says; one whose ``progress`` is not a finite number is skipped with a warning;
  ``total`` is kept only when it is a finite number and ``message`` only when it is a str
  (cut to :data:`MAX_PROGRESS_MESSAGE_CHARS`), so a hostile server can neither crash the
  reader nor hand the callback something else.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Optional

from ._mcp_callbacks import CallbackRunner

__all__ = ["MAX_PROGRESS_MESSAGE_CHARS", "PROGRESS_FLUSH_TIMEOUT", "ProgressHandler",
           "ProgressRelay"]

log = logging.getLogger("sark_sync.mcp")

#: ``progress(progress, total, message)``: what a call's progress callback is given.
ProgressHandler = Callable[[float, Optional[float], Optional[str]], None]

#: Characters of a progress ``message`` passed on (the rest is cut).
MAX_PROGRESS_MESSAGE_CHARS = 4096
#: Seconds a returning call waits for its progress callbacks still queued to run.
PROGRESS_FLUSH_TIMEOUT = 2.0


class ProgressRelay:
    """The progress tokens of one session's calls in flight, and their delivery.

    ``runner`` is the session's callbacks thread (shared with its other callbacks).
    """

    def __init__(self, server: str, runner: CallbackRunner) -> None:
        self.server = server
        self._runner = runner
        self._lock = threading.Lock()
        self._handlers: dict[str, ProgressHandler] = {}
        self._queued: set[str] = set()  # tokens whose progress was handed to the runner
        self._tokens = itertools.count(1)

    @contextmanager
    def tracking(self, params: dict[str, Any], handler: ProgressHandler | None
                 ) -> Iterator[None]:
        """Within the block (the request), deliver the progress of the call whose
        ``params`` this adds a ``progressToken`` to (nothing without ``handler``)."""
        if handler is None:
            yield
            return
        token = f"sark-{next(self._tokens)}"
        meta = params.get("_meta")
        params["_meta"] = dict(meta if isinstance(meta, Mapping) else {}, progressToken=token)
        with self._lock:
            self._handlers[token] = handler
        try:
            yield
        except BaseException:
            self._forget(token)
            raise
        if self._forget(token):
            self._flush()

    def _forget(self, token: str) -> bool:
        """Stop delivering ``token``'s progress; whether any was queued."""
        with self._lock:
            self._handlers.pop(token, None)
            queued = token in self._queued
            self._queued.discard(token)
        return queued

    def deliver(self, params: Mapping[str, Any]) -> None:
        """A ``notifications/progress`` (on the reader thread): queue the callback of the
        call it belongs to, if any."""
        token = params.get("progressToken")
        if not isinstance(token, str):
            return  # ours are str: no call in flight has this token
        with self._lock:
            handler = self._handlers.get(token)
            if handler is None:
                return  # no call in flight with this token: ignored, as the spec says
            value = _finite(params.get("progress"))
            if value is None:
                log.warning("%s sent a progress notification without a numeric progress; "
                            "skipped", self.server)
                return
            message = params.get("message")
            self._queued.add(token)
            self._runner.submit(handler, value, _finite(params.get("total")),
                                message[:MAX_PROGRESS_MESSAGE_CHARS]
                                if isinstance(message, str) else None)

    def _flush(self) -> None:
        """Wait (bounded) until what was queued before now ran: the call's last progress is
        delivered before the call returns. Called on the caller's thread, never the runner's
        (a progress callback calling the session back would wait for itself)."""
        if threading.current_thread().name == f"sark-sync-mcp-{self._runner.name}-callbacks":
            return
        done = threading.Event()
        if self._runner.submit(done.set) and not done.wait(PROGRESS_FLUSH_TIMEOUT):
            log.warning("%s: a progress callback still runs after %.3gs; the call returns",
                        self.server, PROGRESS_FLUSH_TIMEOUT)


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None
