"""Immutable configuration values: timeouts, retry policy, breaker policy, environment.

Like urllib3's ``Retry``, every value here is a frozen dataclass: safe to share between
clients and threads, and varied with ``dataclasses.replace``. Edge values mean what they say:
``attempts=1`` is "no retry", ``backoff_base=0`` is "retry at once", ``recovery_timeout=0`` is
"probe at the next call". Invalid values raise :class:`ConfigurationError` at construction, not
at the first call.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError

__all__ = ["BreakerPolicy", "RestartPolicy", "RetryPolicy", "Timeouts"]

#: Seconds a whole call may take, every attempt and wait included.
DEFAULT_DEADLINE = 30.0
#: Seconds to establish a TCP (and TLS) connection; short, since loopback and LANs connect fast.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for each read on the socket.
DEFAULT_READ_TIMEOUT = 30.0

#: Total attempts of a retryable call, the first included.
DEFAULT_ATTEMPTS = 3
#: Seconds of the first backoff ceiling; full jitter draws the wait from [0, ceiling].
DEFAULT_BACKOFF_BASE = 0.5
#: Growth of the backoff ceiling per attempt.
DEFAULT_BACKOFF_MULTIPLIER = 2.0
#: Largest backoff ceiling, in seconds.
DEFAULT_BACKOFF_MAX = 8.0
#: Longest Retry-After the client waits out; longer ones fail fast with ``retry_after`` set.
DEFAULT_RETRY_AFTER_MAX = 120.0
#: Statuses retried for idempotent requests (429 is retried for every request).
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})

#: Consecutive counted failures that open a breaker.
DEFAULT_FAILURE_THRESHOLD = 5
#: Seconds an open breaker waits before admitting one probe.
DEFAULT_RECOVERY_TIMEOUT = 30.0

ENV_GATEWAY_URL = "SARK_GATEWAY_URL"
ENV_API_KEY = "SARK_API_KEY"

Number = Union[int, float]


def _check_seconds(name: str, value: object, *, allow_zero: bool, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt socket timeouts and the per-call deadline, in seconds.

    ``connect`` and ``read`` bound one attempt's socket waits; ``deadline`` bounds the whole
    call, retries and backoff included. Each attempt uses ``min(configured, time left)``.
    All three must be > 0.

    >>> Timeouts(deadline=10)
    Timeouts(connect=5.0, read=30.0, deadline=10)
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        for name in ("connect", "read", "deadline"):
            _check_seconds(f"Timeouts.{name}", getattr(self, name), allow_zero=False)

    @classmethod
    def coerce(cls, value: Timeouts | Number | None) -> Timeouts:
        """Accept a :class:`Timeouts`, a number of seconds, or None (the defaults).

        A number ``t`` means "the whole call within t seconds": ``deadline = read = t`` and
        ``connect = min(5, t)``.
        """
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        _check_seconds("timeout", value, allow_zero=False)
        seconds = float(value)
        return cls(connect=min(DEFAULT_CONNECT_TIMEOUT, seconds), read=seconds, deadline=seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a failed call again.

    ``attempts`` counts every try (``1`` disables retries). The wait before retry *n* (n >= 1)
    is drawn uniformly from ``[0, min(backoff_max, backoff_base * backoff_multiplier**(n-1))]``
    ("full jitter"; ``jitter=False`` waits the ceiling itself). A ``Retry-After`` from a 429 or
    503 replaces the backoff when it is at most ``retry_after_max``; a longer one fails fast
    with ``retry_after`` on the error. Which requests are safe to retry is not configurable
    here: see ``docs/gateway/ERROR_HANDLING.md``.
    """

    attempts: int = DEFAULT_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    backoff_max: float = DEFAULT_BACKOFF_MAX
    jitter: bool = True
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX
    statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError("RetryPolicy.attempts must be an int")
        if self.attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy.attempts must be >= 1 (1 disables retries), got {self.attempts}"
            )
        _check_seconds("RetryPolicy.backoff_base", self.backoff_base, allow_zero=True)
        _check_seconds("RetryPolicy.backoff_max", self.backoff_max, allow_zero=True)
        _check_seconds("RetryPolicy.retry_after_max", self.retry_after_max, allow_zero=True)
        if (
            isinstance(self.backoff_multiplier, bool)
            or not isinstance(self.backoff_multiplier, (int, float))
            or not self.backoff_multiplier >= 1
            or math.isinf(self.backoff_multiplier)
        ):
            raise ConfigurationError("RetryPolicy.backoff_multiplier must be a finite number >= 1")
        statuses = frozenset(self.statuses)
        if not all(isinstance(s, int) and 400 <= s <= 599 for s in statuses):
            raise ConfigurationError("RetryPolicy.statuses must be 4xx/5xx status codes")
        object.__setattr__(self, "statuses", statuses)

    def backoff_ceiling(self, retry_number: int) -> float:
        """The largest wait before retry ``retry_number`` (1 for the first retry)."""
        exponent = max(0, retry_number - 1)
        try:
            ceiling = self.backoff_base * self.backoff_multiplier**exponent
        except OverflowError:
            ceiling = self.backoff_max
        return min(self.backoff_max, ceiling)

    def backoff(self, retry_number: int) -> float:
        """The wait before retry ``retry_number``: full jitter below its ceiling."""
        return self.jittered(self.backoff_ceiling(retry_number))

    def jittered(self, ceiling: float) -> float:
        """A wait of at most ``ceiling``: uniform in [0, ceiling] with ``jitter``, else it."""
        return random.uniform(0.0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True)
class BreakerPolicy:
    """Circuit breaker settings, one breaker per (gateway, server).

    After ``failure_threshold`` consecutive counted failures (connection errors, timeouts,
    5xx, 429) the breaker opens; after ``recovery_timeout`` seconds it admits exactly one probe,
    whose success closes it and whose failure opens it again. ``enabled=False`` turns breakers
    off. ``failure_threshold`` must be >= 1; ``recovery_timeout`` may be 0.
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT
    enabled: bool = True

    def __post_init__(self) -> None:
        threshold = self.failure_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(
                f"BreakerPolicy.failure_threshold must be an int >= 1, got {threshold!r}"
            )
        _check_seconds("BreakerPolicy.recovery_timeout", self.recovery_timeout, allow_zero=True)


#: Restarts of a crashed local server allowed within ``DEFAULT_RESTART_WINDOW`` seconds.
DEFAULT_MAX_RESTARTS = 3
#: The window, in seconds, in which restarts are counted.
DEFAULT_RESTART_WINDOW = 60.0
#: Seconds before the first restart; doubled for each further restart in the window.
DEFAULT_RESTART_BACKOFF = 0.2


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed local MCP server is started again.

    A server that exited is restarted by the next call that needs it, at most
    ``max_restarts`` times within ``window`` seconds, waiting ``backoff * 2**(n-1)`` (within
    the call's deadline) before restart *n* of the window. Past that, calls fail with
    :class:`ProcessExitedError` until the window moves on. ``max_restarts=0`` never restarts.
    An idle server is never stopped for being idle.
    """

    max_restarts: int = DEFAULT_MAX_RESTARTS
    window: float = DEFAULT_RESTART_WINDOW
    backoff: float = DEFAULT_RESTART_BACKOFF

    def __post_init__(self) -> None:
        count = self.max_restarts
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigurationError(f"RestartPolicy.max_restarts must be an int >= 0, got "
                                     f"{count!r}")
        _check_seconds("RestartPolicy.window", self.window, allow_zero=False)
        _check_seconds("RestartPolicy.backoff", self.backoff, allow_zero=True)


def resolve_base_url(base_url: str | None) -> str:
    """The gateway URL from the argument or ``SARK_GATEWAY_URL``, validated, without trailing /."""
    url = base_url if base_url is not None else os.environ.get(ENV_GATEWAY_URL)
    if not url:
        raise ConfigurationError(
            f"no gateway URL: pass GatewayClient(base_url) or set {ENV_GATEWAY_URL}"
        )
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a str, not {type(url).__name__}")
    # Messages name the scheme and host only: a rejected URL may carry a secret.
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigurationError("gateway URL must not carry credentials; use api_key=")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"gateway URL must be http:// or https:// with a host, got scheme "
            f"{parts.scheme or 'none'!r} and host {parts.hostname or 'none'!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"gateway URL must not have a query or fragment (host {parts.hostname!r})"
        )
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    """The API key from the argument or ``SARK_API_KEY`` (None or an empty variable: send
    no key). An explicit empty ``api_key=""`` is an error, not a silent "no key"."""
    key = api_key if api_key is not None else (os.environ.get(ENV_API_KEY) or None)
    if key is not None and (not isinstance(key, str) or not key or "\n" in key or "\r" in key):
        raise ConfigurationError("api_key must be a non-empty single-line str")
    return key or None
