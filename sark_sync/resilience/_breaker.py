"""Thread-correct circuit breakers, composed from the ``circuitbreaker`` package.

The package gives the vocabulary (the states closed → open after N failures → half-open after
the recovery timeout) and the failure predicate builder, but its ``CircuitBreaker`` has no
locking, lets every caller through while half-open, registers every decorated breaker in a
process-global monitor, turns a configured ``0`` into its default, and is a context manager
whose ``with breaker:`` admits calls while open and closes the breaker on exit. So
:class:`Breaker` does not subclass it: it reuses the state names and
``build_failure_predicate`` only, and has exactly one way in, :meth:`Breaker.call` (the
decorator forms go through it):

- state transitions happen under a lock; the protected call itself never runs under it;
- half-open admits exactly one probe: the first caller after the recovery timeout; the others
  fail fast until the probe's outcome closes the breaker or opens it again;
- only an outcome from the server moves the breaker. A call that never reached it (a deadline
  that ran out waiting for a connection slot, a refused argument, a closed client, an
  interrupt) changes nothing: a probe that ended so frees the probe slot and the breaker stays
  half-open, for the next caller to probe;
- nothing is registered globally (the client owns its breakers); the clock is injectable, so
  tests move time instead of sleeping;
- every transition (open, half-open probe, closed again) is one record on the
  ``sark_sync.breaker`` logger, outside the lock, naming the call that caused it
  (:mod:`._observe`).

What counts as a failure (docs/gateway/ERROR_HANDLING.md): connection errors, timeouts, 5xx,
429 and malformed responses (:class:`ProtocolError`), and a deadline that ran out after at least
one request.
An answer of the server that is not a failure (other 4xx, a gateway policy denial, a JSON-RPC
error, a tool error) is proof the server answered, so it closes the breaker like a success.
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

from circuitbreaker import (  # type: ignore[import-untyped]  # the package ships no types
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    build_failure_predicate,
)

from .._config import BreakerPolicy
from .._exceptions import (
    APIError,
    AuthorizationDenied,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitError,
    RPCError,
    ServerError,
    ToolExecutionError,
    TransportError,
)
from ._observe import breaker_transition

__all__ = ["Breaker", "is_counted_failure", "is_server_answer"]

T = TypeVar("T")


def is_counted_failure(exc_type: type[BaseException], exc: BaseException | None = None) -> bool:
    """The failure predicate (circuitbreaker's ``expected_exception`` signature): the server
    failed or could not be reached."""
    if issubclass(exc_type, DeadlineExceeded):
        return bool(getattr(exc, "attempts", None))
    return issubclass(exc_type, (TransportError, ServerError, RateLimitError))


def is_server_answer(exc: BaseException) -> bool:
    """Whether an uncounted exception is still an answer of the server (it closes the
    breaker), rather than something that happened before any request (it changes nothing)."""
    if isinstance(exc, AuthorizationDenied):
        return exc.status_code is not None  # the gateway's 403, not the client's authorizer
    return isinstance(exc, (APIError, RPCError, ToolExecutionError))


class Breaker:
    """One circuit breaker, safe to share between threads.

    :param name: what it guards, shown in :class:`CircuitOpenError` (the client uses the
        gateway URL and server name, or ``local:<name>``).
    :param policy: the threshold and recovery timeout (see :class:`BreakerPolicy`).
    :param clock: a monotonic clock in seconds; tests pass a fake one.

    Use :meth:`call`, :meth:`decorate` or the breaker itself as a decorator. It is not a
    context manager: a ``with`` block cannot be refused entry cleanly nor tell its outcome.
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BreakerPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.is_failure: Callable[[type[BaseException], BaseException | None], bool] = (
            build_failure_predicate(is_counted_failure))
        self._failure_threshold = policy.failure_threshold
        self._recovery_timeout = policy.recovery_timeout
        self._clock = clock
        self._name: str = name
        self._state: str = STATE_CLOSED
        self._failure_count: int = 0
        self._last_failure: type[BaseException] | None = None
        self._opened = clock()
        self._opened_wall: datetime | None = None
        self._lock = threading.Lock()
        self._probing = False

    # -- state, on the injectable clock ------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def failure_threshold(self) -> int:
        return self._failure_threshold

    @property
    def recovery_timeout(self) -> float:
        return self._recovery_timeout

    @property
    def failure_count(self) -> int:
        """Consecutive counted failures so far (0 once closed again)."""
        return self._failure_count

    @property
    def last_failure(self) -> type[BaseException] | None:
        """The type of the last counted failure (only the type: an exception would pin its
        traceback's frames, responses and sockets for as long as the breaker lives)."""
        return self._last_failure

    @property
    def open_remaining(self) -> float:
        """Seconds until an open breaker admits its probe (<= 0 once it may)."""
        return float(self._opened + self._recovery_timeout - self._clock())

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open, and the probe may be sent)."""
        if self._state == STATE_OPEN and self.open_remaining <= 0:
            return str(STATE_HALF_OPEN)
        return self._state

    @property
    def closed(self) -> bool:
        return self.state == str(STATE_CLOSED)

    @property
    def opened(self) -> bool:
        return self.state == str(STATE_OPEN)

    @property
    def open_until(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=max(0.0, self.open_remaining))

    # -- the call ------------------------------------------------------------------------------

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` under the breaker; raise :class:`CircuitOpenError` if it is open."""
        probe = self._admit()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, Exception) and self.is_failure(type(exc), exc):
                self._on_failure(exc, probe)
            elif isinstance(exc, Exception) and is_server_answer(exc):
                self._on_success(probe)
            elif probe:  # no word from the server: free the probe slot, change nothing
                with self._lock:
                    self._probing = False
            raise
        self._on_success(probe)
        return result

    def decorate(self, function: Callable[..., T]) -> Callable[..., T]:
        """Decorator form; unlike the package's, it registers nothing globally."""
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            return self.call(function, *args, **kwargs)

        return wrapper

    __call__ = decorate  # ``@breaker``, as with the package

    def _admit(self) -> bool:
        """Let the call through (True if it is the half-open probe) or raise."""
        if self._state == STATE_CLOSED:  # fast path: no lock while closed
            return False
        with self._lock:
            if self._state == STATE_CLOSED:
                return False
            if self.open_remaining > 0 or self._probing:
                raise self._open_error()
            self._probing = True
        breaker_transition(self._name, str(STATE_OPEN), str(STATE_HALF_OPEN),
                           self._failure_count)
        return True

    def _on_success(self, probe: bool) -> None:
        if self._state == STATE_CLOSED and self._failure_count == 0 and not probe:
            return
        with self._lock:
            was = str(STATE_HALF_OPEN) if probe else str(self._state)
            self._state = STATE_CLOSED
            self._failure_count = 0
            self._last_failure = None
            self._opened_wall = None
            # Closed means no probe is pending, whoever's success closed it.
            self._probing = False
        if was != STATE_CLOSED:
            breaker_transition(self._name, was, str(STATE_CLOSED), 0)

    def _on_failure(self, exc: BaseException, probe: bool) -> None:
        with self._lock:
            was = str(STATE_HALF_OPEN) if probe else str(self._state)
            self._last_failure = type(exc)
            self._failure_count += 1
            if probe or self._failure_count >= self._failure_threshold:
                self._state = STATE_OPEN
                self._opened = self._clock()
                self._opened_wall = datetime.now(timezone.utc)
            if probe:
                self._probing = False
            opened, failures = self._state == STATE_OPEN and was != STATE_OPEN, \
                self._failure_count
        if opened:  # logged outside the lock: a slow handler must not hold up other callers
            breaker_transition(self._name, was, str(STATE_OPEN), failures, exc)

    def reset(self) -> None:
        """Close the breaker and forget its failures (an operator's override)."""
        with self._lock:
            self._state = STATE_CLOSED
            self._failure_count = 0
            self._last_failure = None
            self._opened_wall = None
            self._probing = False

    def _open_error(self) -> CircuitOpenError:
        remaining = max(0.0, self.open_remaining)
        probe_at = datetime.now(timezone.utc) + timedelta(seconds=remaining)
        last = self._last_failure.__name__ if self._last_failure is not None else "none"
        state = "half-open, probe in flight" if self.open_remaining <= 0 else "open"
        return CircuitOpenError(
            f"circuit {self._name!r} is {state} after {self._failure_count} consecutive "
            f"failures (last: {last}); next probe in {remaining:.1f}s",
            breaker=str(self._name),
            opened_at=self._opened_wall,
            probe_at=probe_at,
            failures=self._failure_count,
            retry_after=round(remaining, 3),  # when a call may pass again (0: a probe is out)
        )

    def __repr__(self) -> str:
        return f"<Breaker {self._name!r} state={self.state} failures={self._failure_count}>"

    def __str__(self) -> str:
        return self._name
