"""One deadline per logical call, shared by every layer that waits.

A call's deadline starts when the call is made (for ``submit`` and ``invoke_many``: when it is
submitted, so time spent queued counts). Each layer asks it for the time left: the pool slot
wait, each attempt's socket timeouts, each backoff or Retry-After sleep. Nothing waits past it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from ._exceptions import DeadlineExceeded

if TYPE_CHECKING:
    from ._config import Timeouts

__all__ = ["Deadline"]


class Deadline:
    """The instant a call must be finished by, on a monotonic clock.

    ``clock`` is injectable so tests can move time without sleeping. ``timeouts``, when
    given, are the call's per-attempt socket timeouts (each still bounded by the time left).
    """

    __slots__ = ("_clock", "_expires_at", "timeout", "timeouts")

    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.timeout = timeout
        self.timeouts = timeouts
        self._clock = clock
        self._expires_at = clock() + timeout

    def remaining(self) -> float:
        """Seconds left; never negative."""
        return max(0.0, self._expires_at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._expires_at

    def bound(self, seconds: float) -> float:
        """``min(seconds, time left)``: the longest a single wait may take."""
        return min(seconds, self.remaining())

    def exceeded(self, what: str, **context: object) -> DeadlineExceeded:
        """The error to raise when ``what`` could not finish in time."""
        return DeadlineExceeded(
            f"deadline of {self.timeout:g}s exceeded {what}", timeout=self.timeout, **context  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return f"<Deadline timeout={self.timeout:g}s remaining={self.remaining():.3f}s>"
