"""The HTTP exchange of the policy-engine authorizers: one bounded JSON POST per decision.

An engine is a sidecar or a nearby service (OPA, SARK), so a decision is one attempt, never
retried: a retry would only spend the call's deadline on an engine that is already slow. The
whole exchange (connect, send, headers, body) fits in the time given, read in short reads whose
socket timeout is the time left, and every failure becomes
:class:`~sark_sync.AuthorizationUnavailable` naming the engine's URL, never a header (the SARK
authorizer sends an API key) nor the body (it may echo parameters).

The session is built as the gateway client's (``trust_env`` resolved once, no cookies, no
redirects) and is fork-aware: a child drops its parent's pooled sockets and builds its own.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from .._exceptions import AuthorizationUnavailable, ConfigurationError
from .._redact import Secret
from .._useragent import user_agent
from ..resilience import forksafety
from ..transports import (
    READ_FAILURES,
    GuardedAdapter,
    close_session,
    guarded,
    new_session,
    socket_of,
)

__all__ = ["DEFAULT_TIMEOUT", "EngineClient", "check_timeout", "check_url"]

#: Seconds a decision may take, connect and read included (the call's deadline bounds it too).
DEFAULT_TIMEOUT = 5.0
#: Seconds to connect to the engine, at most; it is near, so this fails a dead one fast.
CONNECT_TIMEOUT = 2.0
#: Largest decision accepted: filtered parameters may be as large as the parameters.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: Connections kept open to one engine (concurrent calls beyond it open short-lived ones).
POOL_SIZE = 16
READ_CHUNK = 64 * 1024


def check_url(url: object, what: str) -> str:
    """An engine's base URL without a trailing slash; ConfigurationError if it is not
    http(s)://host with no credentials, query or fragment (the message shows no secret)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} url must be a str, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} url must not carry credentials")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment:
        raise ConfigurationError(
            f"{what} url must be http:// or https:// with a host and no query, got scheme "
            f"{parts.scheme or 'none'!r} and host {parts.hostname or 'none'!r}")
    return url.rstrip("/")


def check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 < timeout < float("inf"):
        raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


class EngineClient:
    """POSTs JSON to one endpoint of a policy engine. Thread-safe and fork-aware."""

    def __init__(self, url: str, *, verify: bool | str | None,
                 api_key: Secret | None = None) -> None:
        self.url = url
        self._verify = verify
        self._api_key = api_key
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._pid = os.getpid()
        forksafety.register(self)

    def post(self, document: Mapping[str, Any], timeout: float) -> tuple[int, Any]:
        """POST ``document`` and return ``(status, decoded JSON)`` of a 2xx answer within
        ``timeout`` seconds; :class:`AuthorizationUnavailable` for anything else."""
        end = time.monotonic() + timeout
        where: dict[str, Any] = {"method": "POST", "url": self.url}
        if timeout <= 0:
            raise AuthorizationUnavailable("no time left to ask the policy engine", **where)
        headers = {"Content-Type": "application/json"}
        if self._api_key is not None:
            headers["X-API-Key"] = self._api_key.reveal()
        try:
            body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:  # parameters JSON cannot carry
            raise AuthorizationUnavailable(
                f"the authorization input is not JSON: {type(exc).__name__}", **where) from None
        session = self.session()
        with guarded(end) as exchange:
            try:
                response = session.post(
                    self.url, data=body, headers=headers, allow_redirects=False, stream=True,
                    timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
            except requests.RequestException as exc:
                if isinstance(exc, requests.Timeout) or exchange.cut:
                    raise AuthorizationUnavailable(
                        f"policy engine did not answer within {timeout:g}s", **where) from exc
                raise AuthorizationUnavailable(
                    f"could not reach the policy engine: {type(exc).__name__}", **where
                ) from exc
            try:
                raw = _read(response, end, where)
            except AuthorizationUnavailable as exc:
                if not exchange.cut:
                    raise
                raise AuthorizationUnavailable(
                    f"policy engine did not answer within {timeout:g}s", **where) from exc
            finally:
                response.close()
            if exchange.cut:  # an answer read after the cut may stand on truncated headers
                raise AuthorizationUnavailable(
                    f"policy engine did not answer within {timeout:g}s", **where)
        status = response.status_code
        if not 200 <= status < 300:
            raise AuthorizationUnavailable(
                f"policy engine answered {status} {response.reason or ''}".rstrip(),
                status_code=status, **where)
        try:
            return status, json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise AuthorizationUnavailable(
                f"policy engine's answer is not JSON ({len(raw)} bytes, {kind})",
                status_code=status, **where) from None

    def session(self) -> requests.Session:
        session = self._session
        if session is None or self._pid != os.getpid():

            with self._lock:
                if self._pid != os.getpid():  # a fork the at-fork hook did not see
                    self._after_fork_in_child()
                if self._session is None:
                    self._session = new_session(self.url, user_agent(), self._verify,
                                                GuardedAdapter(pool_connections=1,
                                                               pool_maxsize=POOL_SIZE,
                                                               max_retries=0))
                session = self._session
        return session

    def close(self) -> None:
        """Close the pooled connections now; the next request opens new ones."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            close_session(session)

    def _after_fork_in_child(self) -> None:
        # The parent's pooled sockets are the parent's: forget them, never close them.
        self._session = None
        self._lock = threading.Lock()
        self._pid = os.getpid()


def _read(response: requests.Response, end: float, where: dict[str, Any]) -> bytes:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise AuthorizationUnavailable(
            f"policy engine's answer of {length} bytes exceeds {MAX_ANSWER_BYTES}",
            status_code=response.status_code, **where)
    raw, sock = response.raw, socket_of(response.raw)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(left)
            chunk = raw.read1(READ_CHUNK, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AuthorizationUnavailable(
                    f"policy engine's answer exceeds {MAX_ANSWER_BYTES} bytes",
                    status_code=response.status_code, **where)
            chunks.append(chunk)
    except AuthorizationUnavailable:
        raise
    except READ_FAILURES as exc:
        timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc).lower() \
            or time.monotonic() >= end
        what = "did not finish its answer in time" if timed_out else \
            f"answer broke off ({type(exc).__name__})"
        raise AuthorizationUnavailable(f"policy engine {what}",
                                       status_code=response.status_code, **where) from exc
