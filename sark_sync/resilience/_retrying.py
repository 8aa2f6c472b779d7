"""A deadline-aware urllib3 ``Retry`` and ``Timeout`` for the HTTP transport.

urllib3 retries inside ``urlopen``, below requests, where sark_sync cannot see. To keep one
deadline per call across every attempt, the transport puts an :class:`AttemptContext` in a
context variable for the duration of a request, and two urllib3 classes read it:

- :class:`DeadlineTimeout` is cloned by urllib3 once per attempt; the clone carries
  ``min(configured, time left)`` as connect, read and total timeouts, and counts the attempt.
  An attempt that would start with no time left raises :class:`DeadlineStop` instead.
- :class:`DeadlineRetry` decides what is safe to retry (the context says whether the request
  is idempotent), draws the full-jitter backoff or honours ``Retry-After`` (capped by the
  policy), and refuses a wait that would cross the deadline: it then ends the retries, records
  why in the context, and the transport raises ``DeadlineExceeded`` at once.

The context is per thread (a ``ContextVar``), so one session and one Retry object serve all
threads. Without a context (a request made outside sark_sync), the classes act like their
urllib3 parents with the policy's settings.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry, Timeout

from .._config import RetryPolicy
from .._deadline import Deadline

__all__ = ["AttemptContext", "DeadlineRetry", "DeadlineStop", "DeadlineTimeout", "current_attempt",
           "parse_retry_after"]

#: Methods that are safe to repeat whatever the request says.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Largest Retry-After read from a peer, in seconds (24 h, the longest duration accepted
#: anywhere): a larger value, or a date further ahead, reads as this.
MAX_RETRY_AFTER = 86_400.0

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
#: An HTTP date's year: four ASCII digits between spaces (RFC 9110 IMF-fixdate).
_YEAR = re.compile(r"\s[0-9]{4}\s", re.ASCII)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, or None if absent or unparsable (the backoff then
    applies).

    RFC 9110 allows delta-seconds (ASCII digits; a fraction is tolerated) or an HTTP date.
    Anything else (``inf``, ``1e400``, ``+5``, ``1_0``, non-ASCII digits) is unparsable. A
    value above :data:`MAX_RETRY_AFTER` (a date far ahead included) is read as that cap: still
    "longer than any call may wait", never an infinity a caller's ``time.sleep`` would reject.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        whole = value.split(".", 1)[0]
        if len(whole) > len(str(int(MAX_RETRY_AFTER))):  # no huge int conversions
            return MAX_RETRY_AFTER
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    written = _YEAR.search(value + " ")
    if written is not None and int(written.group()) < when.year:
        # email.utils reads a four-digit year below 100 as two digits (0068 -> 2068): the
        # date written is in the distant past, which means "now".
        return 0.0
    try:
        return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)
    except (ValueError, OverflowError):
        return None


class DeadlineStop(Exception):
    """Internal: an attempt or a wait would cross the call's deadline."""


@dataclass
class AttemptContext:
    """The mutable state of one logical request, read and written by the urllib3 hooks."""

    deadline: Deadline
    idempotent: bool
    accept_statuses: frozenset[int] = frozenset()
    attempts: int = 0
    slept: float = 0.0
    next_wait: float = 0.0
    #: Why the retries stopped early: "deadline" (a wait would cross it) or None.
    stopped: str | None = None
    retry_after_refused: float | None = None
    sleep: Callable[[float], None] = field(default=time.sleep)


_current: ContextVar[AttemptContext | None] = ContextVar("sark_sync_attempt", default=None)
current_attempt = _current


class DeadlineTimeout(Timeout):
    """A urllib3 Timeout whose per-attempt clone is bounded by the call's deadline."""

    def __init__(self, context: AttemptContext, connect: float, read: float) -> None:
        super().__init__(connect=connect, read=read)
        self._context = context
        self._attempt_connect = connect
        self._attempt_read = read

    def clone(self) -> Timeout:
        context = self._context
        remaining = context.deadline.remaining()
        if remaining <= 0:
            context.stopped = "deadline"
            raise DeadlineStop("no time left for another attempt")
        context.attempts += 1
        connect = min(self._attempt_connect, remaining)
        read = min(self._attempt_read, remaining)
        return Timeout(connect=connect, read=read, total=remaining)


class DeadlineRetry(Retry):
    """urllib3 ``Retry`` driven by a :class:`RetryPolicy` and the current call's deadline."""

    policy: RetryPolicy = RetryPolicy()

    @classmethod
    def from_policy(cls, policy: RetryPolicy) -> DeadlineRetry:
        retry = cls(
            total=policy.attempts - 1,
            connect=None,
            read=None,
            status=None,
            other=0,
            redirect=0,
            raise_on_redirect=False,
            raise_on_status=False,
            respect_retry_after_header=True,
            status_forcelist=policy.statuses,
            allowed_methods=None,
            backoff_factor=0,
        )
        retry.policy = policy
        return retry

    def new(self, **kw: Any) -> DeadlineRetry:
        retry = super().new(**kw)
        retry.policy = self.policy
        return retry

    def _is_method_retryable(self, method: str) -> bool:
        context = _current.get()
        if context is not None:
            return context.idempotent
        return method.upper() in IDEMPOTENT_METHODS

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        context = _current.get()
        if context is not None and status_code in context.accept_statuses:
            return False
        if not self.status_forcelist or status_code not in self.status_forcelist:
            return False
        # A 429 means the gateway did not process the request: safe to repeat for any method.
        return status_code == 429 or self._is_method_retryable(method)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any,
                  **kwargs: Any) -> DeadlineRetry:
        new_retry: DeadlineRetry = super().increment(method, url, *args, **kwargs)
        context = _current.get()
        if context is None:
            return new_retry
        response = kwargs.get("response")
        pool = kwargs.get("_pool")
        if context.attempts >= self.policy.attempts:
            # The transport re-sends requests whose body was lost; the policy's attempts bound
            # all of them together.
            raise MaxRetryError(pool, url or "", kwargs.get("error"))  # type: ignore[arg-type]
        retry_after = None
        if response is not None and response.status in RETRY_AFTER_STATUSES:
            # Parsed here, not by urllib3, which caps the value it reports.
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            if retry_after > self.policy.retry_after_max:
                # Too long to wait out: hand the response back; the caller sees retry_after.
                context.retry_after_refused = retry_after
                raise MaxRetryError(pool, url or "", None)  # type: ignore[arg-type]
            wait = retry_after
        else:
            wait = self.policy.backoff(len(new_retry.history))
        if wait >= context.deadline.remaining():
            context.stopped = "deadline"
            error = kwargs.get("error")
            raise MaxRetryError(pool, url or "", error)  # type: ignore[arg-type]
        context.next_wait = wait
        return new_retry

    def sleep(self, response: Any = None) -> None:
        context = _current.get()
        if context is None:
            super().sleep(response)
            return
        wait = context.deadline.bound(context.next_wait)
        context.next_wait = 0.0
        if wait > 0:
            context.sleep(wait)
            context.slept += wait

    def __repr__(self) -> str:
        return f"DeadlineRetry(total={self.total}, attempts={self.policy.attempts})"
