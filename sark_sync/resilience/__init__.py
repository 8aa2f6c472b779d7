"""Resilience: the retry loop, breakers, the deadline watchdog, fair (first-come-first-served)
slots, fork safety, and what they tell (log records, OpenTelemetry spans: :mod:`._observe`).

This is the face other packages import from (docs/ARCHITECTURE.md, "What may import what"):
the modules behind it are private. Fork safety is re-exported as the namespace
``forksafety`` (``forksafety.register(owner)``), since a bare ``register`` would not say what
it registers for.
"""

from __future__ import annotations

from . import _forksafety as forksafety
from ._breaker import Breaker, is_counted_failure, is_server_answer
from ._cancellation import (
    CANCEL_WRITE_TIMEOUT,
    MAX_REASON_CHARS,
    CancelToken,
    cancellable,
    cancelled_error,
    cancels,
    check_token,
    interruptible,
    raise_if_cancelled,
    sent_reason,
    tell_cancelled,
)
from ._cancellation import current as current_cancellation
from ._observe import carry_context, current_call, finished, observed, tracing
from ._retrying import (
    MAX_RETRY_AFTER,
    Retrying,
    mark_sent,
    mark_unsent,
    parse_retry_after,
    retryable,
)
from ._slots import FairSlots
from ._watchdog import DEADLINE_MARGIN, WATCHDOG_TICK, Watched, watchdog

__all__ = [
    "Breaker",
    "CANCEL_WRITE_TIMEOUT",
    "CancelToken",
    "DEADLINE_MARGIN",
    "FairSlots",
    "MAX_REASON_CHARS",
    "MAX_RETRY_AFTER",
    "Retrying",
    "WATCHDOG_TICK",
    "Watched",
    "cancellable",
    "cancelled_error",
    "cancels",
    "carry_context",
    "check_token",
    "current_call",
    "current_cancellation",
    "finished",
    "forksafety",
    "interruptible",
    "is_counted_failure",
    "is_server_answer",
    "mark_sent",
    "mark_unsent",
    "observed",
    "parse_retry_after",
    "raise_if_cancelled",
    "retryable",
    "sent_reason",
    "tell_cancelled",
    "tracing",
    "watchdog",
]
