"""Immutable configuration values: timeouts, retry policy, breaker policy, environment.

Like urllib3's ``Retry``, every value here is a frozen dataclass: safe to share between
clients and threads, and varied with ``dataclasses.replace``. Edge values mean what they say:
``attempts=1`` is "no retry", ``backoff_base=0`` is "retry at once", ``recovery_timeout=0`` is
"probe at the next call". Invalid values raise :class:`ConfigurationError` at construction, not
at the first call.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import urlsplit

from ._exceptions import DEFAULT_RETRY_STATUSES, ConfigurationError
from ._validation import HEADER_RULE, describe, header_value_problem, plain_str

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
# DEFAULT_RETRY_STATUSES (408, 429, 502-504) lives with the retry rule, in _exceptions.

#: Consecutive counted failures that open a breaker.
DEFAULT_FAILURE_THRESHOLD = 5
#: Seconds an open breaker waits before admitting one probe.
DEFAULT_RECOVERY_TIMEOUT = 30.0

#: Longest duration accepted anywhere, in seconds (24 h): timeouts, deadlines, backoff,
#: Retry-After and recovery waits. Longer values are refused, never clamped; past about 1e9 s
#: the platform's timers overflow.
MAX_SECONDS = 86_400.0
#: Most attempts a RetryPolicy may make (the first included).
MAX_ATTEMPTS = 100
#: Largest backoff growth factor per attempt.
MAX_BACKOFF_MULTIPLIER = 100.0
#: Most consecutive failures a breaker may be set to wait for before opening.
MAX_FAILURE_THRESHOLD = 10_000
#: Most worker threads and concurrent connections of one client; each connection slot is
#: allocated up front, so millions would make the first call take seconds.
MAX_WORKERS = 1_024
#: Largest ``max_response_bytes`` (1 GiB): a response is held in memory whole.
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
#: Longest gateway URL, in characters.
MAX_URL_LENGTH = 2_048
#: Most consecutive failed attempts an event stream may be told to make before giving up.
MAX_RECONNECTS = 10_000

ENV_GATEWAY_URL = "SARK_GATEWAY_URL"
ENV_API_KEY = "SARK_API_KEY"

Number = Union[int, float]


def _seconds(name: str, value: object, *, allow_zero: bool, allow_none: bool = False,
             maximum: float | None = MAX_SECONDS) -> Number | None:
    """``value`` as a plain int or float if it is a valid number of seconds (a subclass's
    overridden arithmetic is left behind), else ConfigurationError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, not {type(value).__name__}")
    number: Number = float.__float__(value) if isinstance(value, float) else int.__int__(value)
    if isinstance(number, float) and (math.isnan(number) or math.isinf(number)):
        raise ConfigurationError(f"{name} must be finite, got {number!r}")
    if number == 0:
        number = type(number)(0)  # -0.0 is zero (and 0 means zero, never "the default")
    if number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be {bound}, got {describe(number)}")
    if maximum is not None and number > maximum:
        raise ConfigurationError(
            f"{name} must be at most {maximum:g} seconds ({maximum / 3600:g} h), got "
            f"{describe(number)}")
    return number


def _check_seconds(name: str, value: object, *, allow_zero: bool, allow_none: bool = False,
                   maximum: float | None = MAX_SECONDS) -> None:
    _seconds(name, value, allow_zero=allow_zero, allow_none=allow_none, maximum=maximum)


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a number of seconds up to :data:`MAX_SECONDS`, else
    ConfigurationError naming ``name`` and the rule."""
    return float(_seconds(name, value, allow_zero=allow_zero) or 0)


def check_count(name: str, value: object, low: int, high: int) -> int:
    """``value`` as a plain int from ``low`` to ``high``, else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or \
            not low <= int.__int__(value) <= high:
        raise ConfigurationError(f"{name} must be an int from {low} to {high:,}, got "
                                 f"{describe(value)}")
    return int.__int__(value)


def _normalise(instance: object, name: str, value: object) -> None:
    object.__setattr__(instance, name, value)


def _statuses(value: object) -> frozenset[int]:
    """RetryPolicy.statuses as a frozenset of plain ints, each 400 to 599."""
    try:
        items: frozenset[object] = frozenset(value)  # type: ignore[call-overload]
    except TypeError:  # not iterable, or unhashable items
        items = frozenset({None})
    if isinstance(value, (str, bytes)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 400 <= s <= 599 for s in items):
        raise ConfigurationError(
            "RetryPolicy.statuses must be a collection of 4xx/5xx status codes (ints)")
    return frozenset(int.__int__(s) for s in items if isinstance(s, int))


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt socket timeouts and the per-call deadline, in seconds.

    ``connect`` and ``read`` bound one attempt's socket waits; ``deadline`` bounds the whole
    call, retries and backoff included. Each attempt uses ``min(configured, time left)``.
    All three must be > 0 and at most :data:`MAX_SECONDS` (24 h).

    >>> Timeouts(deadline=10)
    Timeouts(connect=5.0, read=30.0, deadline=10)
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        for name in ("connect", "read", "deadline"):
            _normalise(self, name, _seconds(f"Timeouts.{name}", getattr(self, name),
                                            allow_zero=False))

    @classmethod
    def coerce(cls, value: Timeouts | Number | None) -> Timeouts:
        """Accept a :class:`Timeouts`, a number of seconds, or None (the defaults).

        A number ``t`` means "the whole call within t seconds": ``deadline = read = t`` and
        ``connect = min(5, t)``.
        """
        if value is None:
            return cls()
        if type(value) is Timeouts:
            return value
        if isinstance(value, Timeouts):  # a subclass: rebuilt, so its values are checked
            return cls(connect=value.connect, read=value.read, deadline=value.deadline)
        seconds = float(_seconds("timeout", value, allow_zero=False) or 0)
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

    Limits: ``attempts`` 1 to :data:`MAX_ATTEMPTS` (100); every duration 0 to
    :data:`MAX_SECONDS` (24 h); ``backoff_multiplier`` 1 to :data:`MAX_BACKOFF_MULTIPLIER`.
    """

    attempts: int = DEFAULT_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    backoff_max: float = DEFAULT_BACKOFF_MAX
    jitter: bool = True
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX
    statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        _normalise(self, "attempts", check_count("RetryPolicy.attempts (1 disables retries)",
                                            self.attempts, 1, MAX_ATTEMPTS))
        for name in ("backoff_base", "backoff_max", "retry_after_max"):
            _normalise(self, name, _seconds(f"RetryPolicy.{name}", getattr(self, name),
                                            allow_zero=True))
        multiplier = self.backoff_multiplier
        number = None if isinstance(multiplier, bool) or not isinstance(
            multiplier, (int, float)) else float(float.__float__(multiplier) if isinstance(
                multiplier, float) else int.__int__(multiplier))
        if number is None or not 1 <= number <= MAX_BACKOFF_MULTIPLIER:
            raise ConfigurationError(
                f"RetryPolicy.backoff_multiplier must be a number from 1 to "
                f"{MAX_BACKOFF_MULTIPLIER:g}, got {describe(multiplier)}")
        _normalise(self, "backoff_multiplier", number)
        if not isinstance(self.jitter, bool):
            raise ConfigurationError(
                f"RetryPolicy.jitter must be a bool, not {type(self.jitter).__name__}")
        _normalise(self, "statuses", _statuses(self.statuses))

    def retryable_status(self, status_code: int) -> bool:
        """Whether an answer with ``status_code`` may be retried: the one rule, used by every
        path that retries (gateway calls, the event stream, the audit sink). Idempotency is
        checked separately: see :func:`sark_sync.resilience.retryable`."""
        return status_code in self.statuses

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
    off. ``failure_threshold`` is 1 to :data:`MAX_FAILURE_THRESHOLD`; ``recovery_timeout`` 0
    to :data:`MAX_SECONDS` (24 h).
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT
    enabled: bool = True

    def __post_init__(self) -> None:
        _normalise(self, "failure_threshold", check_count(
            "BreakerPolicy.failure_threshold", self.failure_threshold, 1, MAX_FAILURE_THRESHOLD))
        _normalise(self, "recovery_timeout", _seconds(
            "BreakerPolicy.recovery_timeout", self.recovery_timeout, allow_zero=True))
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(
                f"BreakerPolicy.enabled must be a bool, not {type(self.enabled).__name__}")


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
    Every spawn after the first counts, a start whose handshake failed included, so a server
    that dies while starting cannot be spawned once per call. An idle server is never stopped
    for being idle.
    """

    max_restarts: int = DEFAULT_MAX_RESTARTS
    window: float = DEFAULT_RESTART_WINDOW
    backoff: float = DEFAULT_RESTART_BACKOFF

    def __post_init__(self) -> None:
        count = self.max_restarts
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigurationError(f"RestartPolicy.max_restarts must be an int >= 0, got "
                                     f"{count!r}")
        _check_seconds("RestartPolicy.window", self.window, allow_zero=False, maximum=None)
        _check_seconds("RestartPolicy.backoff", self.backoff, allow_zero=True, maximum=None)


def resolve_base_url(base_url: str | None, what: str = "gateway URL") -> str:
    """The gateway URL from the argument or ``SARK_GATEWAY_URL``, validated, without trailing /.

    Refused, with a message that never quotes the URL (it may carry a secret): a non-str, a
    URL longer than :data:`MAX_URL_LENGTH`, whitespace or control characters anywhere, a
    scheme other than http/https, no host, userinfo (``user:pass@``), a malformed host or
    IPv6 literal, a port that is not 1-65535, a query or a fragment.
    """
    url = base_url if base_url is not None else os.environ.get(ENV_GATEWAY_URL)
    if url is None or (isinstance(url, str) and not url):
        raise ConfigurationError(
            f"no {what}: pass GatewayClient(base_url) or set {ENV_GATEWAY_URL}"
            if what == "gateway URL" else f"no {what} given")
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a str, not {type(url).__name__}")
    url = plain_str(url)
    if len(url) > MAX_URL_LENGTH:
        raise ConfigurationError(f"{what} is longer than {MAX_URL_LENGTH} characters")
    for index, char in enumerate(url):
        if char.isspace() or not char.isprintable():
            raise ConfigurationError(
                f"{what} has whitespace or a control character at index {index}")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # unbalanced brackets, a bad IPv6 literal
        raise ConfigurationError(
            f"{what} cannot be parsed: unbalanced brackets or an invalid IPv6 host") from None
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        raise ConfigurationError(f"{what} has an invalid port: ports are 1 to 65535") from None
    # From here messages name the scheme and host only.
    if "@" in parts.netloc:
        raise ConfigurationError(f"{what} must not carry credentials (user:password@); use "
                                 + ("headers= or auth=" if "MCP" in what else "api_key="))
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigurationError(
            f"{what} must be http:// or https:// with a host, got scheme "
            f"{parts.scheme or 'none'!r} and host {hostname or 'none'!r}"
        )
    if parts.netloc.startswith("["):  # Python < 3.11.4 does not check the literal itself
        if not _ipv6(hostname):
            raise ConfigurationError(
                f"{what} cannot be parsed: unbalanced brackets or an invalid IPv6 host")
    elif not _valid_host(hostname):
        raise ConfigurationError(
            f"{what} has an invalid host: letters, digits, '.', '-' and '_', or an IP address")
    if port is not None and port < 1:
        raise ConfigurationError(f"{what} has an invalid port: ports are 1 to 65535")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigurationError(
            f"{what} must not have a query or fragment (host {hostname!r})"
        )
    return url.rstrip("/")


def _ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).version == 6
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    labels = host.split(".")
    return all(label and all(ch.isalnum() or ch in "-_" for ch in label)
               for label in (labels[:-1] if labels[-1] == "" else labels))


def resolve_api_key(api_key: str | None, what: str = "api_key") -> str | None:
    """The API key from the argument or ``SARK_API_KEY`` (None or an empty variable: send
    no key). An explicit empty ``api_key=""`` is an error, not a silent "no key".

    The key must be a valid header value (see :func:`~._validation.header_value_problem`:
    visible ASCII, spaces only inside, at most 8,192 characters); the error says what is wrong
    and where, naming the argument or the variable, never the key.
    """
    source = what
    key: object = api_key
    if api_key is None:
        key = os.environ.get(ENV_API_KEY) or None
        source = f"the environment variable {ENV_API_KEY}"
        if key is None:
            return None
    if not isinstance(key, str):
        raise ConfigurationError(f"{what} must be a str, not {type(key).__name__}")
    key = plain_str(key)
    problem = header_value_problem(key)
    if problem is not None:
        raise ConfigurationError(f"{source} {problem}; {HEADER_RULE}")
    return key
