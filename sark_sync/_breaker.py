"""Thread-correct circuit breakers built on the ``circuitbreaker`` package.

The package gives the state machine (closed → open after N failures → half-open after the
recovery timeout) and the failure predicate, but it has no locking, lets every caller through
while half-open, registers every decorated breaker in a process-global monitor, and turns a
configured ``0`` into its default. :class:`Breaker` extends it:

- state transitions happen under a lock; the protected call itself never runs under it;
- half-open admits exactly one probe: the first caller after the recovery timeout; the others
  fail fast until the probe's outcome closes the breaker or opens it again;
- ``decorate`` does not register in the global monitor (the client owns its breakers);
- the clock is injectable, so tests move time instead of sleeping.

What counts as a failure (DESIGN §5): connection errors, timeouts, 5xx, 429 and malformed
responses. Not counted: other 4xx, policy denials, tool errors, and a deadline that ran out
before any request was made (that is congestion in this process, not a sick server). An
uncounted outcome is proof the server answered, so it closes the breaker like a success.
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
    CircuitBreaker,
)

from ._config import BreakerPolicy
from ._exceptions import (
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = ["Breaker", "is_counted_failure"]

T = TypeVar("T")


def is_counted_failure(exc_type: type[BaseException], exc: BaseException | None = None) -> bool:
    """The failure predicate (circuitbreaker's ``expected_exception`` signature)."""
    if issubclass(exc_type, DeadlineExceeded):
        return bool(getattr(exc, "attempts", None))
    return issubclass(exc_type, (TransportError, ServerError, RateLimitError))


class Breaker(CircuitBreaker):  # type: ignore[misc]
    """One circuit breaker, safe to share between threads."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BreakerPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            failure_threshold=policy.failure_threshold,
            recovery_timeout=policy.recovery_timeout,
            expected_exception=is_counted_failure,
            name=name,
        )
        # The package reads "value or default"; honour the configured value exactly.
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
    def open_remaining(self) -> float:
        """Seconds until an open breaker admits its probe (<= 0 once it may)."""
        return float(self._opened + self._recovery_timeout - self._clock())

    @property
    def state(self) -> str:
        if self._state == STATE_OPEN and self.open_remaining <= 0:
            return str(STATE_HALF_OPEN)
        return self._state

    @property
    def open_until(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=max(0.0, self.open_remaining))

    # -- the call ------------------------------------------------------------------------------

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` under the breaker; raise :class:`CircuitOpenError` if it is open."""
        probe = self._admit()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            if self.is_failure(type(exc), exc):
                self._on_failure(exc, probe)
            else:
                self._on_success(probe)
            raise
        except BaseException:
            # KeyboardInterrupt and the like say nothing about the server: free the probe slot.
            if probe:
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
            return True

    def _on_success(self, probe: bool) -> None:
        if self._state == STATE_CLOSED and self._failure_count == 0 and not probe:
            return
        with self._lock:
            self._state = STATE_CLOSED
            self._failure_count = 0
            self._last_failure = None
            self._opened_wall = None
            # Closed means no probe is pending, whoever's success closed it.
            self._probing = False

    def _on_failure(self, exc: BaseException, probe: bool) -> None:
        with self._lock:
            # Keep the type only: the exception's traceback would pin frames, responses and
            # sockets for as long as the breaker lives.
            self._last_failure = type(exc)
            self._failure_count += 1
            if probe or self._failure_count >= self._failure_threshold:
                self._state = STATE_OPEN
                self._opened = self._clock()
                self._opened_wall = datetime.now(timezone.utc)
            if probe:
                self._probing = False

    def reset(self) -> None:
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
        )

    def __repr__(self) -> str:
        return f"<Breaker {self._name!r} state={self.state} failures={self._failure_count}>"
