"""The one retry loop of the package, and the one rule for what may be retried.

Every path that retries (a gateway request, a local server's tool call, the event stream's
reconnections, the audit sink's batches) runs :class:`Retrying`: it counts attempts, draws the
full-jitter backoff of a :class:`RetryPolicy` (or honours a ``Retry-After`` up to the policy's
cap), and never starts a wait that would cross the call's :class:`Deadline`: for a backoff it
raises ``DeadlineExceeded`` at once instead, carrying the attempts, the time slept and the last
error; for a ``Retry-After`` the 429 or 503 itself, with its ``retry_after``. Its sleep is
injectable, so tests never sleep, and a stream can make its wait end on close.

What may be retried is decided in one place, :func:`retryable`, from two facts: how far the
failed exchange got (a transport marks its errors with :func:`mark_unsent` or
:func:`mark_sent`: a request that never left may always be sent again, one that may have been
processed only if it is idempotent) and, for an answer, its status
(:meth:`RetryPolicy.retryable_status`; a 429 says the request was not processed). Every
error's ``retryable`` is that rule for an idempotent request.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

from .._config import RetryPolicy
from .._deadline import Deadline
from .._errors_codec import EXCHANGE_MARK, STATUSES_MARK
from .._exceptions import (
    DEFAULT_RETRY_STATUSES,
    DeadlineExceeded,
    GatewayError,
    TransportTimeout,
    retry_rule,
)
from ._observe import answered_after, retrying_after

__all__ = ["MAX_RETRY_AFTER", "Retrying", "mark_sent", "mark_unsent", "parse_retry_after",
           "retryable"]

T = TypeVar("T")

#: Statuses whose Retry-After replaces the backoff.
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


#: How far a failed exchange got, as a transport marks it on the error it raises (the mark
#: travels with the error, so its ``retryable`` stays right in another process).
_EXCHANGE = EXCHANGE_MARK


def mark_unsent(error: GatewayError) -> GatewayError:
    """Mark ``error`` as a failure before the request left (no connection was made): any
    request may be sent again."""
    error.__dict__[_EXCHANGE] = "unsent"
    return error


def mark_sent(error: GatewayError, *, retryable: bool = True) -> GatewayError:
    """Mark ``error`` as a failure after the request may have been processed (a connection
    broken mid-exchange, a read timeout, a body cut short): sent again only if idempotent, and
    never with ``retryable=False`` (a TLS failure, an answer for another request)."""
    error.__dict__[_EXCHANGE] = "sent" if retryable else "final"
    return error


def retryable(error: BaseException, *, idempotent: bool, policy: RetryPolicy) -> bool:
    """The one rule: may the request that failed with ``error`` be tried again?

    Never for a deadline or a cancelled call, nor for anything that is not a
    :class:`GatewayError`. A request that never left: always. An answer: when the policy lists
    its status (:meth:`RetryPolicy.retryable_status`) and the request is idempotent, or the
    status is 429 (the gateway did not process it). A broken exchange (connection lost,
    timeout, a local server that died mid-call): only an idempotent request.

    The rule itself is :func:`sark_sync._exceptions.retry_rule`, so that every error's
    ``retryable`` (this rule for an idempotent request, with the statuses of the loop the error
    came through) can never disagree with what the loop did.
    """
    return retry_rule(error, idempotent=idempotent, statuses=policy.statuses)


class Retrying:
    """Attempts of one logical operation, within a policy and (optionally) a deadline.

    ``retryable(error)`` says whether a failed attempt may be repeated (default: never);
    ``attempts`` overrides the policy's count (the event stream's ``max_reconnects + 1``);
    ``backoff(n)`` overrides the policy's wait before retry ``n`` (the event stream's base is the
    server's ``retry:``); ``sleep(seconds)`` waits (a stream's returns early when it is closed).

    >>> retrying = Retrying(RetryPolicy(attempts=2, jitter=False), Deadline(5.0),
    ...                     retryable=lambda error: True, sleep=lambda seconds: None)
    >>> retrying.call(lambda: "ok"), retrying.attempts
    ('ok', 1)
    """

    __slots__ = ("_backoff", "_previous", "_retryable", "_sleep", "attempts", "deadline",
                 "exhausted", "max_attempts", "policy", "slept", "what")

    def __init__(
        self, policy: RetryPolicy, deadline: Deadline | None = None, *,
        retryable: Callable[[GatewayError], bool] = lambda error: False,
        attempts: int | None = None, backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] = time.sleep, what: str = "",
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.max_attempts = policy.attempts if attempts is None else attempts
        self.what = what
        self._retryable = retryable
        self._backoff = policy.backoff if backoff is None else backoff
        self._sleep = sleep
        #: Attempts made so far (consecutive ones, after :meth:`reset`).
        self.attempts = 0
        #: Seconds spent waiting between attempts.
        self.slept = 0.0
        #: True once the attempts ran out (the last error was raised as it was).
        self.exhausted = False
        self._previous: GatewayError | None = None  # the last attempt's error, for a deadline

    def call(self, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it returns, or raise: the error of an attempt that may not be
        repeated, the last error when the attempts run out, or ``DeadlineExceeded``."""
        while True:
            self.attempts += 1
            try:
                answer = attempt()
            except GatewayError as exc:
                self.failed(exc)
            else:
                answered_after(self.attempts)
                return answer

    def failed(self, error: GatewayError) -> None:
        """After a failed attempt: wait before the next one, or raise (``error`` itself, or
        ``DeadlineExceeded`` when the wait would cross the deadline)."""
        error._with(attempts=self.attempts)
        if self.policy.statuses != DEFAULT_RETRY_STATUSES:  # for error.retryable
            error.__dict__.setdefault(STATUSES_MARK, self.policy.statuses)
        deadline = self.deadline
        if isinstance(error, DeadlineExceeded):  # a transport ran out of time
            unsent = error.__dict__.get(_EXCHANGE) == "unsent"  # this attempt never left
            error.attempts = self.attempts - 1 if unsent else self.attempts
            error.slept = error.slept or self.slept
            if error.last_error is None:  # cut with nothing to blame: the attempt before
                error.last_error = self._previous
            raise error
        self._previous = error
        if deadline is not None and deadline.expired and isinstance(error, TransportTimeout):
            raise self.deadline_error(error) from error
        if not self._retryable(error):
            raise error
        if self.attempts >= self.max_attempts:
            self.exhausted = True
            raise error
        wait = self._backoff(self.attempts)
        retry_after = error.retry_after if error.status_code in RETRY_AFTER_STATUSES else None
        if retry_after is not None:
            if retry_after > self.policy.retry_after_max or (
                    deadline is not None and retry_after >= deadline.remaining()):
                # Too long to wait out, or past the deadline: the caller gets the gateway's
                # own answer (RateLimitError, ServiceUnavailableError) and its retry_after,
                # to come back later; the deadline itself did not run out.
                raise error
            wait = retry_after
        if deadline is not None and wait >= deadline.remaining():
            raise self.deadline_error(error) from error
        retrying_after(error, self.attempts, self.max_attempts, wait)
        if wait > 0:
            self._sleep(wait)
            self.slept += wait

    def reset(self) -> None:
        """Start counting again (an event stream that received an event)."""
        self.attempts = 0
        self.exhausted = False

    def deadline_error(self, last_error: GatewayError | None, what: str = ""
                       ) -> DeadlineExceeded:
        """``DeadlineExceeded`` for this operation: attempts, time slept, the last error."""
        assert self.deadline is not None
        attempts = self.attempts
        what = what or self.what or \
            f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        context = last_error.context() if last_error is not None else {}
        context.pop("retry_after", None)
        context["attempts"] = attempts
        if last_error is not None:
            what += f"; last error: {type(last_error).__name__}: {last_error.message}"
        error = self.deadline.exceeded(what, slept=self.slept, last_error=last_error, **context)
        if last_error is not None:
            error.__cause__ = last_error
        return error
