"""The HTTP audit sink: batches of events posted to SARK by one background thread.

``emit`` appends to a bounded queue; a worker thread, started on the first event, posts batches
``{"events": [...]}`` to ``POST <url>/api/v1/gateway/audit`` with ``X-Gateway-Api-Key``:

- **At-least-once**, in emit order. The package's one retry loop retries a batch after a
  connection error, a timeout or a status the policy retries (408, 429, 502-504 by default),
  honouring ``Retry-After``. A batch stored but unanswered is sent again: receivers dedupe by
  ``event_id`` (a uuid4), or by the batch's ``Idempotency-Key``, the same on every attempt.
- **Never silently dropped.** An event that cannot be delivered goes to the fallback sink
  (WARNING records on ``sark_sync.audit.fallback``) and is counted in ``dropped_to_fallback``:
  when the queue is full (``max_queue``), when a batch's attempts are exhausted, when the
  server refuses it for good (another 4xx, a redirect: redirects are never followed, so the
  key never goes to another host), when ``close()``'s time runs out, and after ``close()``.
- **``emit`` never blocks on I/O and never raises.** The lock it takes is never held across
  a request or a log call.
- **``close()`` delivers what was emitted before it**, within ``close_timeout`` seconds
  (backoff waits and request timeouts are cut to fit), then joins the thread. What is left
  when the time is up goes to the fallback. ``flush()`` waits for the same without closing.
- **The thread is a daemon**, so an unclosed sink cannot hang interpreter exit; an ``atexit``
  hook closes (flushes) such sinks instead. Close sinks explicitly anyway.
- **Fork-safe.** A forked child never uses the parent's thread, session or locks: it forgets
  the parent's queue (the parent delivers it), resets its counters, and starts its own thread
  and session at its first event; it must ``close()`` before ``os._exit``, or that is lost.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import uuid
import weakref
from collections import deque

import requests

from .._config import RetryPolicy, resolve_base_url
from .._exceptions import (
    ConfigurationError,
    ConnectionFailed,
    GatewayError,
    TransportTimeout,
    error_for_status,
)
from .._redact import Secret
from .._useragent import user_agent
from .._validation import HEADER_RULE, header_value_problem, plain_str
from ..resilience import Retrying, forksafety, mark_sent, parse_retry_after, retryable
from ..transports import Exchange, GuardedAdapter, close_session, guarded, new_session
from ._audit_event import AuditEvent
from ._audit_sinks import AuditSink, fallback_sink, log, to_fallback

__all__ = ["AUDIT_PATH", "HTTPSink"]

#: Where SARK receives audit batches, under its base URL.
AUDIT_PATH = "/api/v1/gateway/audit"
#: Events per request.
DEFAULT_BATCH_SIZE = 100
#: Seconds an event may wait for its batch to fill before it is sent anyway.
DEFAULT_FLUSH_INTERVAL = 1.0
#: Events held in memory while the server is slow or down; past that, the fallback log.
DEFAULT_MAX_QUEUE = 10_000
#: Seconds of one request (connect and each read).
DEFAULT_TIMEOUT = 10.0
#: Seconds ``close()`` spends delivering what is queued before falling back to the log.
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Audit delivery is worth more patience than a call: 5 attempts over up to ~7.5 s of backoff.
DEFAULT_RETRY = RetryPolicy(attempts=5)
#: Seconds ``close()`` waits past its deadline for the request in progress to notice it.
JOIN_GRACE = 1.0

_open_sinks: weakref.WeakSet[HTTPSink] = weakref.WeakSet()


class HTTPSink:
    """Posts events to SARK's audit endpoint in batches, from a background thread.

    ``url`` is SARK's base URL (``http(s)://host[:port][/prefix]``, no credentials, query or
    fragment). ``api_key`` (a ``str`` or a :class:`~sark_sync._redact.Secret`) is sent as
    ``X-Gateway-Api-Key`` and shown nowhere. ``batch_size`` >= 1 events go per request;
    ``flush_interval`` >= 0 seconds is the longest an event waits for a full batch (0: send at
    once); ``max_queue`` >= 1 events wait in memory at most; ``timeout`` > 0 bounds each
    request; ``close_timeout`` >= 0 bounds ``close()``. ``verify`` is requests' (None: the
    environment's CA bundle, else the system's). Invalid values raise ``ConfigurationError``.

    Counters (this process's): ``sent``, ``dropped_to_fallback``, ``failed_batches``,
    ``retries``; ``pending`` is what is queued or being sent.

    >>> with HTTPSink("https://sark.example", api_key=key) as sink:  # doctest: +SKIP
    ...     sink.emit(AuditEvent(server="demo", tool="echo", outcome="success"))
    """

    def __init__(
        self, url: str, *, api_key: str | Secret, batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL, max_queue: int = DEFAULT_MAX_QUEUE,
        retry: RetryPolicy = DEFAULT_RETRY, timeout: float = DEFAULT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT, verify: bool | str | None = None,
        fallback: AuditSink | None = None,
    ) -> None:
        self.url = resolve_base_url(url, what="HTTPSink url") + AUDIT_PATH
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        if not isinstance(key, str):
            raise ConfigurationError(f"HTTPSink api_key must be a str, not {type(key).__name__}")
        key = plain_str(key)
        problem = header_value_problem(key)
        if problem is not None:  # never quoting the key
            raise ConfigurationError(f"HTTPSink api_key {problem}; {HEADER_RULE}")
        self._api_key = Secret(key)
        _check_int("batch_size", batch_size)
        _check_int("max_queue", max_queue)
        _check_seconds("flush_interval", flush_interval, allow_zero=True)
        _check_seconds("timeout", timeout, allow_zero=False)
        _check_seconds("close_timeout", close_timeout, allow_zero=True)
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError("HTTPSink retry must be a RetryPolicy")
        self.batch_size, self.max_queue, self.retry = batch_size, max_queue, retry
        self.flush_interval, self.timeout = flush_interval, timeout
        self.close_timeout, self.verify = close_timeout, verify
        self.fallback: AuditSink = fallback if fallback is not None else fallback_sink()
        self._init_state()
        forksafety.register(self)
        _open_sinks.add(self)

    def _init_state(self) -> None:
        """Locks, queue, thread and counters: at construction, and again in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)  # the worker waits here
        self._progress = threading.Condition(self._lock)  # flush() and close() wait here
        self._queue: deque[tuple[float, AuditEvent]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_deadline = math.inf
        self._exchange: Exchange | None = None  # the request in flight, cut at close()'s end
        self._overflowing = False
        self._enqueued = self._resolved = self._in_flight = self._flush_target = 0
        self.sent = self.dropped_to_fallback = self.failed_batches = self.retries = 0

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        with self._lock:
            return len(self._queue) + self._in_flight

    # -- the caller's side ---------------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for delivery; never blocks on I/O, never raises."""
        try:
            self._check_fork()
            with self._lock:
                if self._closed:
                    why = "the sink is closed"
                elif len(self._queue) >= self.max_queue:
                    why = f"the queue is full ({self.max_queue} events)"
                    first_overflow, self._overflowing = not self._overflowing, True
                    if not first_overflow:
                        why = ""  # said once per overflow, not once per event
                else:
                    if not self._queue or len(self._queue) + 1 >= self.batch_size:
                        self._has_work.notify()
                    self._queue.append((time.monotonic(), event))
                    self._enqueued += 1
                    self._ensure_worker()
                    return
                self.dropped_to_fallback += 1
            if why:
                log.warning("audit events to %s go to the fallback sink: %s", self.url, why)
            to_fallback(self.fallback, [event])
        except Exception as exc:  # a bug here must not fail the audited call
            log.error("HTTPSink.emit failed with %s", type(exc).__name__)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted before this call was delivered or handed to the
        fallback; at most ``timeout`` seconds (None: no limit). True if they all were."""
        self._check_fork()
        with self._lock:
            target = self._enqueued
            if self._resolved >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._ensure_worker()
            self._has_work.notify()
            return self._progress.wait_for(lambda: self._resolved >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds (default ``close_timeout``), hand
        what remains to the fallback, and stop the thread. Idempotent; never raises."""
        self._check_fork()
        limit = self.close_timeout if timeout is None else max(0.0, timeout)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close_deadline = time.monotonic() + limit
                if self._exchange is not None:
                    self._exchange.tighten(self._close_deadline)
            _open_sinks.discard(self)
            if self._queue:
                try:
                    self._ensure_worker()
                except RuntimeError:  # no new threads at interpreter shutdown: the log below
                    pass
            self._has_work.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, self._close_deadline - time.monotonic()) + JOIN_GRACE)
            if thread.is_alive():
                log.warning("the audit thread for %s is still in a request after close(); its "
                            "batch will be delivered or logged when the request ends", self.url)
        with self._lock:
            left = [event for _, event in self._queue]
            self._queue.clear()
            self._resolved += len(left)
            self.dropped_to_fallback += len(left)
            self._progress.notify_all()
        if left:
            log.warning("%d audit events not delivered to %s before close() timed out; they "
                        "went to the fallback sink", len(left), self.url)
            to_fallback(self.fallback, left)

    def __enter__(self) -> HTTPSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HTTPSink({self.url!r}, api_key=[secure])"

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a fork that bypassed os.register_at_fork
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        # The parent's queue is the parent's to deliver; its thread does not exist here, and
        # its session's sockets are shared with it: dropped, never closed.
        closed = self._closed
        self._init_state()
        self._closed = closed
        if not closed:
            _open_sinks.add(self)

    def _ensure_worker(self) -> None:
        """Start the worker if it is not running (first event, after a fork or a crash)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sark_sync-audit-http",
                                            daemon=True)
            self._thread.start()

    # -- the worker's side ---------------------------------------------------------------------

    def _run(self) -> None:
        session: requests.Session | None = None
        batch: list[AuditEvent] = []
        try:
            while True:
                batch = self._take_batch()
                if not batch:
                    return
                if session is None:
                    session = new_session(self.url, user_agent("audit"), self.verify,
                                          GuardedAdapter(pool_connections=1, pool_maxsize=1))
                self._deliver(session, batch)
                self._resolve(batch)
                batch = []
        except Exception as exc:  # a bug: account for the batch, let the next emit restart
            log.error("the audit thread for %s failed with %s", self.url, type(exc).__name__)
            self._give_up(batch, f"the thread failed with {type(exc).__name__}", 0)
            self._resolve(batch)
        finally:
            if session is not None:
                close_session(session)

    def _take_batch(self) -> list[AuditEvent]:
        """Wait until a batch is due; empty when closed and drained."""
        with self._lock:
            while True:
                if self._queue:
                    urgent = (self._closed or len(self._queue) >= self.batch_size
                              or self._resolved < self._flush_target)
                    due = self._queue[0][0] + self.flush_interval - time.monotonic()
                    if urgent or due <= 0:
                        count = min(self.batch_size, len(self._queue))
                        self._in_flight = count
                        self._overflowing = False  # room again: warn at the next overflow
                        return [self._queue.popleft()[1] for _ in range(count)]
                    self._has_work.wait(due)
                elif self._closed:
                    return []
                else:
                    self._has_work.wait()

    def _resolve(self, batch: list[AuditEvent]) -> None:
        with self._lock:
            self._resolved += len(batch)
            self._in_flight = 0
            self._progress.notify_all()

    def _deliver(self, session: requests.Session, batch: list[AuditEvent]) -> None:
        """Post ``batch`` within the retry policy (the package's one retry loop and rule: a
        batch is idempotent, its events deduplicated by id), or give it to the fallback."""
        body = ('{"events":[' + ",".join(e.to_json() for e in batch) + "]}").encode("ascii")
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        retrying = Retrying(self.retry, None, sleep=self._pause, retryable=lambda error: (
            retryable(error, idempotent=True, policy=self.retry)))
        made = 0

        def attempt() -> None:
            nonlocal made
            timeout = self._attempt_timeout()
            if timeout is None:
                raise mark_sent(GatewayError("close() timed out"), retryable=False)
            with self._lock:
                self.retries += 1 if made else 0
            made += 1
            self._post(session, body, headers, timeout)

        try:
            retrying.call(attempt)
        except GatewayError as error:
            late = error.retry_after is not None and error.retry_after > self.retry.retry_after_max
            self._give_up(batch, error.message + (f" with Retry-After {error.retry_after:g}s "
                          "(longer than retry_after_max)" if late else ""), made)
            return
        with self._lock:
            self.sent += len(batch)

    def _post(self, session: requests.Session, body: bytes, headers: dict[str, str],
              timeout: float) -> None:
        """One attempt; raises what went wrong, named by type or status only."""
        headers = dict(headers, **{"X-Gateway-Api-Key": self._api_key.reveal()})
        with guarded(time.monotonic() + timeout) as exchange:
            with self._lock:
                self._exchange = exchange
                if self._closed:  # close() came between _attempt_timeout and here
                    exchange.tighten(self._close_deadline)
            try:
                with session.post(self.url, data=body, headers=headers, allow_redirects=False,
                                  timeout=(min(timeout, 5.0), timeout)) as response:
                    status = response.status_code
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except requests.RequestException as exc:
                if not exchange.cut:
                    raise ConnectionFailed(type(exc).__name__) from None
            finally:
                with self._lock:
                    self._exchange = None
        if exchange.cut:  # a status read after the cut may stand on truncated headers
            raise TransportTimeout("the request outlived its time")
        if not 200 <= status < 300:
            raise error_for_status(status, f"status {status}", retry_after=retry_after)

    def _attempt_timeout(self) -> float | None:
        """This attempt's request timeout: ``timeout``, cut to close()'s deadline; None when
        that deadline has passed."""
        with self._lock:
            if not self._closed:
                return self.timeout
            remaining = self._close_deadline - time.monotonic()
        return min(self.timeout, remaining) if remaining > 0 else None

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before a retry, or less if close()'s deadline comes first."""
        end = time.monotonic() + seconds
        with self._lock:
            while (remaining := (min(end, self._close_deadline) if self._closed else end)
                   - time.monotonic()) > 0:
                self._has_work.wait(remaining)

    def _give_up(self, batch: list[AuditEvent], why: str, attempts: int) -> None:
        if not batch:  # the thread failed between batches
            return
        with self._lock:
            self.failed_batches += 1
            self.dropped_to_fallback += len(batch)
        log.warning("audit batch of %d events not delivered to %s after %d attempts (%s); it "
                    "went to the fallback sink", len(batch), self.url, attempts, why)
        to_fallback(self.fallback, batch)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"HTTPSink {name} must be an int >= 1")


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"HTTPSink {name} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"HTTPSink {name} must be {'>= 0' if allow_zero else '> 0'}")


@atexit.register
def _close_open_sinks() -> None:
    """Deliver what sinks nobody closed still hold (daemon threads still run at this point)."""
    for sink in list(_open_sinks):
        sink.close()
