"""The HTTP transport: one ``requests.Session`` per client, made safe to never hang.

Contract: :meth:`HTTPTransport.request` makes one logical request (its retries included)
within the caller's :class:`Deadline` and returns the decoded JSON body of a 2xx response, or
raises a ``GatewayError``. It is the one place where requests and urllib3 exceptions become
sark_sync exceptions (see :mod:`._common`).

How the deadline reaches every wait:

- a pool slot is a semaphore of ``max_workers`` permits acquired with the time left (requests
  passes no pool timeout, so ``pool_block=True`` could wait forever);
- each attempt's connect/read timeouts are ``min(configured, time left)``
  (:class:`~sark_sync._retry.DeadlineTimeout`), and backoff or Retry-After waits that would
  cross the deadline are not taken (:class:`~sark_sync._retry.DeadlineRetry`);
- the body is read in short reads, each with the socket timeout set to the time left, so a
  slow-drip body cannot outlive the deadline, and its size is capped.

Per-call cost matters: ``trust_env`` is resolved once (proxies, CA bundle) and then turned off,
because requests would otherwise re-read the environment on every call. Redirects are never
followed (every request carries credentials); cookies are never stored (one client may serve
many users).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from .._config import RetryPolicy, Timeouts
from .._deadline import Deadline
from .._exceptions import (
    APIError,
    DeadlineExceeded,
    GatewayError,
    ProtocolError,
)
from ..resilience._retrying import (
    AttemptContext,
    DeadlineRetry,
    DeadlineStop,
    DeadlineTimeout,
    current_attempt,
)
from ._common import (
    READ_FAILURES,
    close_session,
    error_from_response,
    new_session,
    snippet,
    socket_of,
    translate,
    translate_body_error,
)
from ._guarded import GuardedAdapter, guarded

__all__ = ["HTTPTransport", "Response"]

log = logging.getLogger("sark_sync.http")

#: Largest response body accepted, decoded; a gateway page of 1,000 items is far below it.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Bytes asked for per read of a response body.
READ_CHUNK = 64 * 1024


class _BodyLost(Exception):
    """Internal: the response body broke off; ``error`` is what the caller sees if no retry."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class Response:
    """A decoded gateway response: status, JSON body, attempts taken."""

    __slots__ = ("attempts", "data", "headers", "status_code")

    def __init__(self, status_code: int, data: Any, headers: Mapping[str, str], attempts: int):
        self.status_code = status_code
        self.data = data
        self.headers = headers
        self.attempts = attempts


class HTTPTransport:
    """Requests to one gateway, with pooled keep-alive connections and bounded waits."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Any,
        timeouts: Timeouts,
        retry: RetryPolicy,
        max_workers: int,
        user_agent: str,
        verify: bool | str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key  # a Secret or None
        self._timeouts = timeouts
        self._max_response_bytes = max_response_bytes
        self._retry = retry
        self._slots = threading.BoundedSemaphore(max_workers)
        self._session = new_session(base_url, user_agent, verify, GuardedAdapter(
            pool_connections=4,
            pool_maxsize=max(10, max_workers),
            max_retries=DeadlineRetry.from_policy(retry),
        ))

    def request(
        self,
        method: str,
        path: str,
        *,
        deadline: Deadline,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset(),
        timeouts: Timeouts | None = None,
    ) -> Response:
        """Make one logical request; return the JSON of a 2xx (or an accepted) response.

        ``timeouts`` overrides the transport's connect/read timeouts for this request.
        """
        timeouts = timeouts or self._timeouts
        url = self.base_url + path
        send_headers = dict(headers or {})
        if self._api_key is not None:
            send_headers["X-API-Key"] = self._api_key.reveal()
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        context = AttemptContext(
            deadline=deadline, idempotent=idempotent, accept_statuses=accept_statuses
        )
        request_id = send_headers.get("X-Request-ID")
        where = {"method": method, "url": url, "request_id": request_id}
        if not self._slots.acquire(timeout=deadline.remaining()):
            raise deadline.exceeded("waiting for a free connection slot", attempts=0, **where)
        token = current_attempt.set(context)
        try:
            with guarded(time.monotonic() + deadline.remaining()) as exchange:
                try:
                    response = self._exchange(method, url, params, body, send_headers, context,
                                              where, timeouts)
                except DeadlineExceeded:
                    raise
                except GatewayError as exc:
                    if exchange.cut:
                        raise self._deadline_error(context, exc, where) from exc
                    raise
                if exchange.cut:  # what came after the cut may be a truncated body
                    raise self._deadline_error(context, None, where, "reading the response")
                return response
        finally:
            current_attempt.reset(token)
            self._slots.release()

    def _exchange(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: bytes | None,
        headers: dict[str, str], context: AttemptContext, where: dict[str, Any],
        timeouts: Timeouts,
    ) -> Response:
        while True:
            response = self._send(method, url, params, body, headers, context, where, timeouts)
            try:
                return self._finish(response, context, where, timeouts.read)
            except _BodyLost as lost:
                self._before_body_retry(context, lost.error, where)
            finally:
                response.close()

    def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: bytes | None,
        headers: dict[str, str], context: AttemptContext, where: dict[str, Any],
        timeouts: Timeouts,
    ) -> requests.Response:
        """One ``Session.request`` (urllib3 retries inside), with errors translated."""
        try:
            return self._session.request(
                method, url, params=params, data=body, headers=headers,
                # requests passes a urllib3 Timeout through unchanged.
                timeout=DeadlineTimeout(  # type: ignore[arg-type]
                    context, timeouts.connect, timeouts.read
                ),
                allow_redirects=False, stream=True,
            )
        except DeadlineStop:
            raise self._deadline_error(context, None, where) from None
        except requests.RequestException as exc:
            error = translate(exc, **where, attempts=context.attempts)
            if context.stopped or context.deadline.expired:
                raise self._deadline_error(context, error, where) from exc
            raise error from exc

    def _before_body_retry(
        self, context: AttemptContext, error: GatewayError, where: dict[str, Any]
    ) -> None:
        """Wait before re-sending a request whose response body was lost, or raise.

        urllib3 retries only until the response headers arrive; a connection cut or a read
        timeout in the body is retried here, under the same rules: idempotent requests only,
        within the policy's attempts and the deadline.
        """
        if not context.idempotent or context.attempts >= self._retry.attempts:
            raise error
        wait = self._retry.backoff(context.attempts)
        if wait >= context.deadline.remaining():
            context.stopped = "deadline"
            raise self._deadline_error(context, error, where)
        if wait > 0:
            context.sleep(wait)
            context.slept += wait
        log.debug("retrying %s %s after a lost response body: %s", where["method"],
                  where["url"], type(error).__name__)

    def _finish(
        self, response: requests.Response, context: AttemptContext, where: dict[str, Any],
        read_timeout: float,
    ) -> Response:
        status = response.status_code
        where = dict(where, attempts=context.attempts)
        echoed = response.headers.get("X-Request-ID")
        if echoed is not None and where["request_id"] is not None \
                and echoed != where["request_id"]:
            # A gateway that sent one answer too many puts a keep-alive connection out of
            # step: this answer is another request's. Never hand it to the caller, and drop
            # the connection before its body is read (a body read to the end would hand the
            # connection back to the pool, still out of step).
            response.raw.close()
            raise ProtocolError(
                "the gateway's answer is for another request (its X-Request-ID differs): "
                "the connection was out of step and is closed", status_code=status, **where)
        raw = self._read_body(response, context, where, read_timeout)
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            raise APIError(
                f"gateway answered {status} redirecting to {location}; sark_sync does not follow "
                "redirects, since every request carries credentials: configure the final URL",
                status_code=status, **where,
            )
        if status >= 400 and status not in context.accept_statuses:
            error = error_from_response(response, raw, where)
            if context.stopped:
                raise self._deadline_error(context, error, where)
            if context.retry_after_refused is not None:
                error.retry_after = context.retry_after_refused
            raise error
        try:
            data = self._decode_json(response, raw, where)
        except ProtocolError:
            if status in context.accept_statuses:  # an accepted error status without JSON
                raise error_from_response(response, raw, where) from None
            raise
        log.debug("%s %s -> %d in %d attempt(s)", where["method"], where["url"], status,
                  context.attempts)
        return Response(status, data, response.headers, context.attempts)

    def _read_body(
        self, response: requests.Response, context: AttemptContext, where: dict[str, Any],
        read_timeout: float,
    ) -> bytes:
        limit = self._max_response_bytes
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ProtocolError(
                f"response body of {int(length)} bytes exceeds the {limit}-byte limit",
                status_code=response.status_code, **where,
            )
        raw = response.raw
        sock = socket_of(raw)
        chunks: list[bytes] = []
        size = 0
        deadline = context.deadline
        try:
            while True:
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise self._deadline_error(context, None, where, what="reading the response")
                if sock is not None:
                    sock.settimeout(min(read_timeout, remaining))
                chunk = raw.read1(READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(
                        f"response body exceeds the {limit}-byte limit",
                        status_code=response.status_code, **where,
                    )
                chunks.append(chunk)
        except GatewayError:  # ours, some of them OSErrors (DeadlineExceeded, ...)
            raise
        except READ_FAILURES as exc:
            error = translate_body_error(exc, status_code=response.status_code, **where)
            if deadline.expired:
                raise self._deadline_error(context, error, where, "reading the response") from exc
            error.__cause__ = exc
            raise _BodyLost(error) from exc
        return b"".join(chunks)

    def _decode_json(self, response: requests.Response, raw: bytes, where: dict[str, Any]) -> Any:
        content_type = response.headers.get("Content-Type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise ProtocolError(
                f"expected a JSON response, got Content-Type {content_type or 'none'!r}: "
                f"{snippet(raw)}",
                status_code=response.status_code, **where,
            )
        try:
            return json.loads(raw)
        except ValueError:
            raise ProtocolError(
                f"response is not valid JSON ({len(raw)} bytes): {snippet(raw)}",
                status_code=response.status_code, **where,
            ) from None
        except RecursionError:
            raise ProtocolError(
                f"response JSON is nested too deeply to decode ({len(raw)} bytes)",
                status_code=response.status_code, **where,
            ) from None

    @staticmethod
    def _deadline_error(
        context: AttemptContext, last_error: GatewayError | None, where: dict[str, Any],
        what: str = "",
    ) -> DeadlineExceeded:
        attempts = context.attempts
        what = what or f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if last_error is not None:
            what += f"; last error: {type(last_error).__name__}: {last_error.message}"
        error = context.deadline.exceeded(
            what, slept=context.slept, last_error=last_error, **dict(where, attempts=attempts)
        )
        if last_error is not None:
            error.__cause__ = last_error
            error.status_code = last_error.status_code
        return error

    def close(self) -> None:
        """Close every pooled connection now (see :func:`close_session`)."""
        close_session(self._session)
