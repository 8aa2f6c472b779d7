"""The HTTP transport: one ``requests.Session`` per client, made safe to never hang.

Contract (:class:`~sark_sync.transports._base.GatewayTransport`): :meth:`HTTPTransport.send`
makes **one attempt** within the caller's :class:`Deadline` and returns the decoded JSON body of
a 2xx (or an accepted) response, or raises a ``GatewayError``, marked for the pipeline's retry
rule (:func:`~sark_sync.resilience.mark_unsent`, :func:`~sark_sync.resilience.mark_sent`). It is
the one place where requests and urllib3 exceptions become sark_sync exceptions (see
:mod:`._common`). Retries are not done here: urllib3's are off, and the pipeline's one loop
(:class:`~sark_sync.resilience.Retrying`) calls :meth:`send` again.

How the deadline reaches every wait:

- a pool slot is one of ``max_workers`` permits (:class:`~sark_sync.resilience.FairSlots`)
  acquired with the time left (requests passes no pool timeout, so ``pool_block=True`` could
  wait forever). The slots are first-come-first-served: with more threads than slots, callers
  get them in the order they asked, so no caller loses the race round after round (a plain
  semaphore's waiters race for each release, which stretched p99 to 2.4 times raw requests'
  with 32 threads on 8 slots);
- the attempt's connect/read timeouts are ``min(configured, time left)``, and the whole
  exchange (connect, headers, interim responses, body) is cut by the deadline watchdog
  (:mod:`._guarded`) when the time is up, however slowly the peer trickles;
- the body is read in short reads, each with the socket timeout set to the time left, and its
  size is capped.

Per-call cost matters: ``trust_env`` is resolved once (proxies, CA bundle) and then turned off,
because requests would otherwise re-read the environment on every call. Redirects are never
followed (every request carries credentials); cookies are never stored (one client may serve
many users).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from urllib3.util import Retry

from .._config import Timeouts
from .._deadline import Deadline
from .._exceptions import APIError, DeadlineExceeded, GatewayError, ProtocolError
from ..resilience import FairSlots, mark_sent, mark_unsent
from ._base import Request, Response
from ._common import (
    READ_FAILURES,
    close_session,
    error_from_response,
    new_session,
    prepare_direct,
    send_direct,
    send_prepared,
    snippet,
    socket_of,
    translate,
    translate_body_error,
)
from ._guarded import GuardedAdapter, guarded

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "HTTPTransport", "Response"]

log = logging.getLogger(__name__)

#: Largest response body accepted, decoded; a gateway page of 1,000 items is far below it.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Bytes asked for per read of a response body.
READ_CHUNK = 64 * 1024
#: urllib3 makes exactly one attempt: the pipeline's loop retries (and sees every attempt).
NO_RETRIES = Retry(total=0, read=False, redirect=0, raise_on_redirect=False,
                   raise_on_status=False)


class HTTPTransport:
    """Requests to one gateway, with pooled keep-alive connections and bounded waits."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Any,
        timeouts: Timeouts,
        max_workers: int,
        user_agent: str,
        verify: bool | str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key  # a Secret or None
        self._timeouts = timeouts
        self._max_response_bytes = max_response_bytes
        self._slots = FairSlots(max_workers)
        self._session = new_session(base_url, user_agent, verify, GuardedAdapter(
            pool_connections=4, pool_maxsize=max(10, max_workers), max_retries=NO_RETRIES))

    def send(self, request: Request, *, deadline: Deadline,
             accept_statuses: frozenset[int] = frozenset()) -> Response:
        """One attempt at ``request``; the JSON of a 2xx (or an accepted) response.

        The connect and read timeouts are the deadline's :class:`Timeouts` (else the
        transport's), each bounded by the time left.
        """
        url = self.base_url + request.path
        headers = request.headers
        if self._api_key is not None:
            headers = dict(headers, **{"X-API-Key": self._api_key.reveal()})
        if request.body is not None:
            headers = dict(headers, **{"Content-Type": "application/json"})
        where: dict[str, Any] = {"method": request.method, "url": url,
                                 "request_id": request.headers.get("X-Request-ID")}
        # Prepared before a slot is taken, and read after it is given back: a slot bounds the
        # requests in flight, and the client's own work on a call (preparing it, decoding the
        # answer) would only keep a connection idle while other threads wait for it.
        try:
            prepared = prepare_direct(self._session, request.method, url,
                                      params=request.params or None, data=request.body,
                                      headers=headers)
        except requests.RequestException as exc:
            raise translate(exc, **where) from exc
        if not self._slots.acquire(timeout=deadline.remaining()):
            raise mark_unsent(deadline.exceeded("waiting for a free connection slot", **where))
        try:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise mark_unsent(deadline.exceeded("before sending the request", **where))
            timeouts = deadline.timeouts or self._timeouts
            with guarded(time.monotonic() + remaining) as exchange:
                try:
                    response, raw = self._exchange(
                        request, prepared, url, headers, where, deadline, timeouts.read,
                        (min(timeouts.connect, remaining), min(timeouts.read, remaining)))
                except DeadlineExceeded:
                    raise
                except GatewayError as exc:
                    if exchange.cut:
                        raise _deadline_error(deadline, exc, where) from exc
                    raise
                if exchange.cut:  # what came after the cut may be a truncated body
                    raise _deadline_error(deadline, None, where, "reading the response")
        finally:
            self._slots.release()
        return self._interpret(response, raw, where, accept_statuses)

    def _exchange(
        self, request: Request, prepared: requests.PreparedRequest | None, url: str,
        headers: dict[str, str], where: dict[str, Any], deadline: Deadline,
        read_timeout: float, attempt_timeouts: tuple[float, float],
    ) -> tuple[requests.Response, bytes]:
        """Send, and read the whole body (the connection is back in the pool on return)."""
        try:
            if prepared is not None:
                response = send_prepared(self._session, prepared, attempt_timeouts)
            else:
                response = send_direct(self._session, request.method, url,
                                       params=request.params or None, data=request.body,
                                       headers=headers, timeout=attempt_timeouts)
        except requests.RequestException as exc:
            error = translate(exc, **where)
            if deadline.expired:
                raise _deadline_error(deadline, error, where) from exc
            raise error from exc
        try:
            return response, self._read(response, where, deadline, read_timeout)
        finally:
            response.close()

    def _read(self, response: requests.Response, where: dict[str, Any], deadline: Deadline,
              read_timeout: float) -> bytes:
        status = response.status_code
        echoed = response.headers.get("X-Request-ID")
        if echoed is not None and where["request_id"] is not None \
                and echoed != where["request_id"]:
            # A gateway that sent one answer too many puts a keep-alive connection out of
            # step: this answer is another request's. Never hand it to the caller, and drop
            # the connection before its body is read (a body read to the end would hand the
            # connection back to the pool, still out of step).
            response.raw.close()
            raise mark_sent(ProtocolError(
                "the gateway's answer is for another request (its X-Request-ID differs): "
                "the connection was out of step and is closed", status_code=status, **where),
                retryable=False)
        return self._read_body(response, where, deadline, read_timeout)

    def _interpret(self, response: requests.Response, raw: bytes, where: dict[str, Any],
                   accept_statuses: frozenset[int]) -> Response:
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            raise APIError(
                f"gateway answered {status} redirecting to {location}; sark_sync does not follow "
                "redirects, since every request carries credentials: configure the final URL",
                status_code=status, **where,
            )
        if status >= 400 and status not in accept_statuses:
            raise error_from_response(response, raw, where)
        try:
            data = self._decode_json(response, raw, where)
        except ProtocolError:
            if status in accept_statuses:  # an accepted status without JSON: final, as its
                # JSON would have been (the caller asked to see this status, not to retry it)
                raise mark_sent(error_from_response(response, raw, where),
                                retryable=False) from None
            raise
        log.debug("%s %s -> %d", where["method"], where["url"], status)
        return Response(status, data, response.headers)

    def _read_body(self, response: requests.Response, where: dict[str, Any], deadline: Deadline,
                   read_timeout: float) -> bytes:
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
        try:
            while True:
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise _deadline_error(deadline, None, where, "reading the response")
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
                raise _deadline_error(deadline, error, where, "reading the response") from exc
            raise error from exc
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

    def close(self) -> None:
        """Close every pooled connection now (see :func:`close_session`)."""
        close_session(self._session)


def _deadline_error(deadline: Deadline, last_error: GatewayError | None, where: dict[str, Any],
                    what: str = "during the request") -> DeadlineExceeded:
    """The attempt was cut by the deadline; the retry loop adds the attempts and waits."""
    if last_error is not None:
        what += f"; last error: {type(last_error).__name__}: {last_error.message}"
    error = deadline.exceeded(what, last_error=last_error, **where)
    if last_error is not None:
        error.__cause__ = last_error
        error.status_code = last_error.status_code
    return error
