"""What the HTTP and SSE transports share: the session they build, the way they release it,
and the translation of requests/urllib3 failures and error envelopes into ``GatewayError``.

One place for the translation, so that a refused connection or a 401 reads the same whether
it came from a tool call or from an event stream. Messages name the failure, never a header
value (credentials travel in headers).
"""

from __future__ import annotations

import functools
import http.cookiejar
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from http.client import HTTPException, HTTPResponse
from typing import Any, Callable

import requests
import urllib3.exceptions
from requests.utils import get_environ_proxies
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)

from .._exceptions import (
    ConnectionFailed,
    GatewayError,
    ProtocolError,
    TransportTimeout,
    error_for_status,
)
from ..resilience import mark_sent, mark_unsent, parse_retry_after
from ._guarded import GuardedAdapter, was_cut

__all__ = [
    "call_headers",
    "close_session",
    "error_from_answer",
    "error_from_response",
    "READ_FAILURES",
    "new_session",
    "prepare_direct",
    "send_direct",
    "send_prepared",
    "short_reads",
    "snippet",
    "socket_of",
    "translate",
    "translate_body_error",
    "with_call_headers",
]

#: What reading a response body may raise when the peer breaks off, lies or is cut: the
#: socket's errors, http.client's and urllib3's, and the ValueError of a file closed under the
#: read. Anything else (an exception a signal handler raised, such as Celery's soft time
#: limit) is not the peer's doing and passes through unchanged.
READ_FAILURES: tuple[type[Exception], ...] = (
    OSError, ValueError, AttributeError, HTTPException, urllib3.exceptions.HTTPError)
#: How much of a non-JSON body an error message quotes.
SNIPPET_CHARS = 200
#: Longest code, message, reason or audit id taken from an error envelope: a peer's 1 MB
#: message must not become a 1 MB exception (nor a 1 MB log line).
ENVELOPE_FIELD_CHARS = 1000


def new_session(base_url: str, user_agent: str, verify: bool | str | None,
                adapter: GuardedAdapter, accept: str = "application/json") -> requests.Session:
    """A session for one gateway: no cookies, no redirects' credentials, environment read once.

    requests re-reads proxies and the CA bundle from the environment on every request while
    ``trust_env`` is on; they are resolved here, once, and ``trust_env`` is turned off.
    """
    session = requests.Session()
    session.proxies = dict(get_environ_proxies(base_url))
    if verify is None:
        env = os.environ
        verify = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or True
    session.verify = verify
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers.clear()
    session.headers.update({"User-Agent": user_agent, "Accept": accept})
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send_direct(session: requests.Session, method: str, url: str, *,
                params: Mapping[str, Any] | None, data: bytes | None, headers: Mapping[str, str],
                timeout: tuple[float, float]) -> requests.Response:
    """``session.request(method, url, ..., allow_redirects=False, stream=True)`` for a session
    made by :func:`new_session`, without what such a session never uses: see
    :func:`prepare_direct`."""
    prepared = prepare_direct(session, method, url, params=params, data=data, headers=headers)
    if prepared is None:
        return session.request(method, url, params=params, data=data, headers=headers,
                               timeout=timeout, allow_redirects=False, stream=True)
    return send_prepared(session, prepared, timeout)


def prepare_direct(session: requests.Session, method: str, url: str, *,
                   params: Mapping[str, Any] | None, data: bytes | None,
                   headers: Mapping[str, str]) -> requests.PreparedRequest | None:
    """The request ``session.request`` would send, for a session made by :func:`new_session`;
    ``None`` for a session given ``auth`` or hooks (their flows re-send through the session:
    it must go through ``Session.request``).

    Why: ``Session.request`` merges settings, cookies and hooks that :func:`new_session` has
    fixed once (no cookies kept, no redirects followed, no environment read, no hooks) and
    makes three cookie jars per call; on the gateway's hot path that was about a tenth of a
    call's CPU, which decides calls/s when threads share a client (issue 16). The request is
    prepared by ``PreparedRequest``'s own steps (URL and params, session and call headers,
    credentials in the URL, body and its Content-Length), so it is the same request on the
    wire; :func:`send_prepared` sends it with the session's adapter, proxies, ``verify`` and
    ``cert``.
    """
    if session.auth is not None or any(session.hooks.values()):
        return None
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, params)
    merged = requests.structures.CaseInsensitiveDict(session.headers)
    merged.update(headers)
    prepared.prepare_headers(merged)
    prepared.prepare_body(data, None)
    prepared.prepare_auth(None)
    prepared.prepare_hooks({})
    return prepared


def send_prepared(session: requests.Session, prepared: requests.PreparedRequest,
                  timeout: tuple[float, float]) -> requests.Response:
    """Send what :func:`prepare_direct` made, as ``Session.send`` would (streamed)."""
    assert prepared.url is not None
    return session.get_adapter(prepared.url).send(
        prepared, stream=True, timeout=timeout,
        verify=True if session.verify is None else session.verify, cert=session.cert,
        proxies=session.proxies)


def close_session(session: requests.Session) -> None:
    """Close every pooled connection of ``session`` now.

    urllib3 2's ``PoolManager.clear()`` only forgets its pools and leaves their sockets to the
    garbage collector, which may never come while a traceback still references one.
    """
    for adapter in set(session.adapters.values()):
        managers = [getattr(adapter, "poolmanager", None)]
        managers += list(getattr(adapter, "proxy_manager", {}).values())
        for manager in managers:
            pools = getattr(manager, "pools", None)
            if pools is None:
                continue
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    session.close()


def error_from_response(response: requests.Response, raw: bytes, where: dict[str, Any]
                        ) -> GatewayError:
    """The exception for a non-2xx ``requests`` response (see :func:`error_from_answer`)."""
    return error_from_answer(response.status_code, raw, response.headers, where,
                             reason=response.reason or "")


def error_from_answer(status: int, raw: bytes, headers: Mapping[str, str],
                      where: Mapping[str, Any], *, reason: str = "",
                      peer: str = "gateway") -> GatewayError:
    """The exception for a non-2xx answer, from the gateway's error envelope if it sent one
    (code, message, reason, audit id) and its Retry-After; ``peer`` names who answered."""
    code = message = why = audit_id = None
    request_id = where.get("request_id")
    try:
        envelope = json.loads(raw)
        error = envelope.get("error") if isinstance(envelope, dict) else None
    except (ValueError, RecursionError):
        error = None
    if isinstance(error, dict):
        code = _opt_str(error.get("code"))
        message = _opt_str(error.get("message"))
        request_id = _opt_str(error.get("request_id")) or request_id
        why = _opt_str(error.get("reason"))
        audit_id = _opt_str(error.get("audit_id"))
    text = message or f"{peer} answered {status} {reason}".strip()
    if code:
        text = f"{code}: {text}"
    context = dict(where, request_id=request_id)
    return error_for_status(
        status, text, code=code, reason=why, audit_id=audit_id,
        retry_after=parse_retry_after(headers.get("Retry-After")), **context,
    )


def socket_of(raw: Any) -> socket.socket | None:
    """The socket under a urllib3 response, to set its timeout per read."""
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _opt_str(value: object) -> str | None:
    """A non-empty str field of an error envelope, cut to :data:`ENVELOPE_FIELD_CHARS`."""
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= ENVELOPE_FIELD_CHARS else value[:ENVELOPE_FIELD_CHARS] + "..."


def snippet(raw: bytes) -> str:
    text = raw[:SNIPPET_CHARS].decode("utf-8", "replace")
    return repr(text) + ("..." if len(raw) > SNIPPET_CHARS else "")


def translate(exc: requests.RequestException, *, peer: str = "the gateway",
              **context: Any) -> GatewayError:
    """requests' exceptions -> ours, marked for the retry rule: a connection never made is
    unsent (any request may be repeated), a broken exchange is sent (idempotent requests only),
    a TLS failure or an invalid request is final. The message names the failure, never a
    header value; ``peer`` names the other side (``the gateway``, ``MCP server 'x'``)."""
    if was_cut():
        return mark_sent(TransportTimeout(f"timed out waiting for {_answer_of(peer)}",
                                          **context))
    reason = _reason(exc)
    if isinstance(exc, requests.ConnectTimeout) or (
            isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError)):
        return mark_unsent(TransportTimeout(f"timed out connecting to {peer}", **context))
    if isinstance(exc, requests.ReadTimeout) or isinstance(reason, ReadTimeoutError):
        return mark_sent(TransportTimeout(f"timed out waiting for {_answer_of(peer)}",
                                          **context))
    if isinstance(exc, requests.exceptions.SSLError):
        return mark_sent(ConnectionFailed(f"TLS error talking to {peer}: {_root(exc)}",
                                          **context), retryable=False)
    if isinstance(exc, requests.ConnectionError):
        error = ConnectionFailed(f"could not reach {peer}: {_root(exc)}", **context)
        return mark_unsent(error) if isinstance(reason, NewConnectionError) else mark_sent(error)
    if isinstance(exc, (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL)):
        return mark_sent(ProtocolError(f"invalid request or response: {_root(exc)}", **context),
                         retryable=False)
    return mark_sent(ConnectionFailed(f"request failed: {_root(exc)}", **context))


def _answer_of(peer: str) -> str:
    return f"{peer}'s response" if peer == "the gateway" else f"the response of {peer}"


def _reason(exc: BaseException) -> BaseException | None:
    """The urllib3 error inside requests' wrapper (and inside a MaxRetryError)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
    if isinstance(inner, MaxRetryError):
        return inner.reason
    return inner


def translate_body_error(exc: Exception, **context: Any) -> GatewayError:
    """A failure while reading a body: a timeout, or a body cut short or malformed; the
    request was sent, so only an idempotent one may be repeated."""
    if isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc).lower() \
            or was_cut():
        return mark_sent(TransportTimeout("timed out reading the gateway's response body",
                                          **context))
    return mark_sent(ProtocolError(f"response body was cut short or malformed: {_root(exc)}",
                                   **context))


def _root(exc: BaseException) -> str:
    """The innermost cause's type and message (urllib3 nests several layers)."""
    seen = set()
    while True:
        inner = exc.__cause__ or exc.__context__
        args = getattr(exc, "args", ())
        if inner is None and args and isinstance(args[0], BaseException):
            inner = args[0]
        reason = getattr(exc, "reason", None)
        if inner is None and isinstance(reason, BaseException):
            inner = reason
        if inner is None or id(inner) in seen:
            return f"{type(exc).__name__}: {exc}"[:300]
        seen.add(id(exc))
        exc = inner


#: The extra headers of the tool call this thread is making (a call's ``headers=``, checked
#: by the client); only the POST of its ``tools/call`` carries them (:func:`with_call_headers`).
_CALL_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("sark_sync_call_headers",
                                                                default=None)


@contextmanager
def call_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """In this block (this thread), a remote MCP server's ``tools/call`` carries ``headers``.

    A context variable rather than an argument through the session layers: the headers
    belong to one call, never to the session (its ``initialize``, listings and notifications
    are shared by every caller, so one caller's credentials must not reach them)."""
    token = _CALL_HEADERS.set(headers)
    try:
        yield
    finally:
        _CALL_HEADERS.reset(token)


def with_call_headers(headers: dict[str, str], method: str) -> dict[str, str]:
    """``headers`` of a message POSTed for ``method``, with the current call's extra headers
    when it is a ``tools/call`` (they replace the session's of the same name, whatever its
    case; the protocol's own names were refused when the call was made)."""
    extra = _CALL_HEADERS.get()
    if not extra or method != "tools/call":
        return headers
    names = {name.lower() for name in extra}
    merged = {name: value for name, value in headers.items() if name.lower() not in names}
    merged.update(extra)
    return merged


def short_reads(raw: Any) -> Callable[[int], bytes]:
    """``read1`` of a stream's body: http.client's, under urllib3's, when urllib3 has nothing
    to decode (no ``Content-Encoding``, nothing buffered yet).

    Why: a gateway writes each event as one HTTP chunk, and a ``read1`` returns one chunk at
    most; urllib3's layer over http.client's (its error catcher, decoder and buffer checks)
    cost as much per event as the event's parsing (issue 16: 0.57-0.65 times a raw parser's
    rate). What urllib3 would add is not needed here: no decoding (the stream asks for
    ``identity``), and its errors only rename http.client's, which the reconnect loop
    catches as they are (``OSError``, ``HTTPException``). Anything else goes through urllib3.
    """
    base = getattr(raw, "_fp", None)
    encoding = raw.headers.get("Content-Encoding", "identity").strip().lower()
    buffered = getattr(raw, "_decoded_buffer", None)
    if isinstance(base, HTTPResponse) and encoding in ("", "identity") \
            and buffered is not None and len(buffered) == 0:
        return base.read1
    return functools.partial(raw.read1, decode_content=True)
