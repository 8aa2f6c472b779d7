"""Idempotency-Key deduplication for POST /api/v1/invoke.

Contract (docs/gateway/CLIENT_USAGE.md, "Retries and idempotency"): the first request with a
key runs and its response (status, headers, body) is stored; a repeat with the same key and the
same request fingerprint gets the stored response without running anything; the same key with
another fingerprint is a conflict; a repeat arriving while the first is still running waits for
it, bounded by ``wait`` seconds and by :meth:`IdempotencyStore.close`, then replays. Keys are
scoped (per API key) by the caller.

The store is bounded: at most ``capacity`` finished entries, each kept ``ttl`` seconds after
it finished; the oldest finished entries go first. Entries still running are never evicted:
their owner must :meth:`~IdempotencyStore.finish` or :meth:`~IdempotencyStore.abandon` them
(an abandoned key lets the next waiter run the request itself).
"""

from __future__ import annotations

import enum
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from ._wire import Response

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_TTL", "Claim", "IdempotencyStore", "Outcome"]

#: Finished keys kept at most.
DEFAULT_CAPACITY = 10_000
#: Seconds a finished key is kept: 24 h, longer than any client's retries of one call.
DEFAULT_TTL = 24 * 3600.0


class Outcome(enum.Enum):
    RUN = "run"  # the caller owns the key: run, then finish() or abandon()
    REPLAY = "replay"  # a stored response is available
    CONFLICT = "conflict"  # the key was used with another fingerprint
    BUSY = "busy"  # still running after the bounded wait, or the store closed


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    response: Response | None = None


@dataclass
class _Entry:
    fingerprint: bytes
    response: Response | None = None
    expires_at: float = 0.0


class IdempotencyStore:
    """A bounded, thread-safe map of (scope, key) to the first response given for it."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._closed = False
        self._finished = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def begin(self, scope: str, key: str, fingerprint: bytes, *, wait: float) -> Claim:
        """Claim ``key`` for a request with ``fingerprint``; see :class:`Outcome`."""
        give_up = time.monotonic() + wait
        with self._cond:
            while True:
                self._purge()
                entry = self._entries.get((scope, key))
                if entry is None:
                    if self._closed:
                        return Claim(Outcome.BUSY)
                    self._entries[(scope, key)] = _Entry(fingerprint)
                    return Claim(Outcome.RUN)
                if entry.fingerprint != fingerprint:
                    return Claim(Outcome.CONFLICT)
                if entry.response is not None:
                    return Claim(Outcome.REPLAY, entry.response)
                remaining = give_up - time.monotonic()
                if remaining <= 0 or self._closed:
                    return Claim(Outcome.BUSY)
                self._cond.wait(remaining)

    def finish(self, scope: str, key: str, response: Response) -> None:
        """Store the response of the request that owns ``key`` and wake its waiters."""
        with self._cond:
            entry = self._entries.pop((scope, key), None)
            if entry is not None:
                entry.response = response
                entry.expires_at = self._clock() + self._ttl
                self._entries[(scope, key)] = entry  # now the newest finished entry
                self._finished += 1
                self._evict()
            self._cond.notify_all()

    def abandon(self, scope: str, key: str) -> None:
        """Forget a key whose request never produced a response; a waiter may run it."""
        with self._cond:
            entry = self._entries.get((scope, key))
            if entry is not None and entry.response is None:
                del self._entries[(scope, key)]
            self._cond.notify_all()

    def close(self) -> None:
        """Release every waiter at once (they answer BUSY); used when the gateway stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _purge(self) -> None:
        # Finished entries sit in finish order, so expiry times only grow along the dict.
        now = self._clock()
        doomed: list[tuple[str, str]] = []
        for k, entry in self._entries.items():
            if entry.response is None:
                continue
            if entry.expires_at > now:
                break
            doomed.append(k)
        for k in doomed:
            del self._entries[k]
            self._finished -= 1

    def _evict(self) -> None:
        doomed: list[tuple[str, str]] = []
        excess = self._finished - self._capacity
        for k, entry in self._entries.items():
            if len(doomed) >= excess:
                break
            if entry.response is not None:
                doomed.append(k)
        for k in doomed:
            del self._entries[k]
            self._finished -= 1
