"""The sark_sync exception tree.

Every error sark_sync raises derives from :class:`GatewayError`, so ``except GatewayError``
catches them all; foreign exceptions (requests, urllib3, socket) are translated at one boundary
per transport and chained with ``raise ... from exc``. Leaves also subclass the builtin they
resemble, so ``except TimeoutError`` or ``except PermissionError`` work as expected::

    GatewayError
    ├── ConfigurationError (ValueError)
    │   └── ValidationError               bad names or parameters, caught before any request
    ├── ClientClosedError (RuntimeError)
    ├── TransportNotAvailableError        transport_mode forbids the transport a call needs
    ├── TransportError                    the request may not have reached the gateway
    │   ├── ConnectionFailed (ConnectionError)
    │   ├── TransportTimeout (TimeoutError)
    │   ├── ProtocolError                 malformed, truncated, oversize or non-JSON responses
    │   ├── ProcessStartError (OSError)   a local MCP server could not be started
    │   ├── ProcessExitedError            a local MCP server exited (exit code, stderr tail)
    │   └── SessionExpiredError           a remote MCP server forgot our session twice (404)
    ├── RPCError                          a JSON-RPC error from an MCP server (code, data)
    ├── CapabilityNotSupported            the MCP server did not declare what a method needs
    ├── CallCancelled (CancelledError)    the caller cancelled an MCP call (CancelToken, future)
    ├── DeadlineExceeded (TimeoutError)   the call's deadline ran out (attempts, slept, last error)
    ├── CircuitOpenError                  the breaker fails fast without touching the network
    ├── AuthorizationDenied (PermissionError)   403 policy_denied, or a client-side policy denial
    ├── AuthorizationUnavailable          the policy engine gave no usable decision (fail closed)
    ├── ToolExecutionError                ToolResult.raise_for_error() on an MCP tool error
    └── APIError                          the gateway answered with an error envelope
        ├── BadRequestError               400, 422 invalid_request
        ├── AuthenticationError           401 unauthenticated
        ├── NotFoundError (LookupError)   404 not_found
        ├── IdempotencyConflictError      409 idempotency_conflict
        ├── PayloadTooLargeError          413 payload_too_large
        ├── RateLimitError                429 rate_limited (retry_after)
        └── ServerError                   5xx
            ├── UpstreamError             502 upstream_error
            ├── ServiceUnavailableError   503 unavailable (retry_after)
            └── UpstreamTimeoutError      504 upstream_timeout

Context travels as attributes (``status_code``, ``request_id``, ``server``, ``tool``,
``attempts``, ``retry_after`` ...), never as secrets: messages are built by sark_sync from
names and codes, and parameter values or credentials are never put into them.

``retryable`` is what the one retry rule (:func:`retry_rule`) says for an idempotent call,
``retry_after`` the seconds to wait first, when known. Every error travels: its ``args`` are
``(message, state)``, the context as JSON (``_errors_codec``), so ``pickle`` and Celery's JSON
result backend rebuild it, type and attributes, as ``cls(*args)``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from concurrent.futures import CancelledError
from typing import Any, Optional

from ._errors_codec import EXCHANGE_MARK, STATUSES_MARK, restore, state_of

_State = Optional[Mapping[str, Any]]  # what rebuilds an error from its args (GatewayError)

__all__ = [
    "APIError", "AuthenticationError", "AuthorizationDenied", "AuthorizationUnavailable",
    "BadRequestError", "CallCancelled", "CapabilityNotSupported", "CircuitOpenError",
    "ClientClosedError", "ConfigurationError", "ConnectionFailed", "DeadlineExceeded",
    "GatewayError", "IdempotencyConflictError", "NotFoundError", "PayloadTooLargeError",
    "ProcessExitedError", "ProcessStartError", "ProtocolError", "RPCError", "RateLimitError",
    "ServerError", "ServiceUnavailableError", "SessionExpiredError", "ToolExecutionError",
    "TransportError", "TransportNotAvailableError", "TransportTimeout", "UpstreamError",
    "UpstreamTimeoutError", "ValidationError", "error_for_status", "DEFAULT_RETRY_STATUSES",
    "retry_rule"]

#: The context every error may carry, in the order ``str(error)`` shows it.
_CONTEXT_FIELDS = ("method", "url", "status_code", "code", "request_id", "server", "tool",
                   "attempts", "retry_after")
#: Statuses retried for idempotent requests (429 for every request): RetryPolicy's default.
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class GatewayError(Exception):
    """Root of every sark_sync error; carries what a caller needs to act on it.

    All context is keyword-only and optional. ``str(error)`` is the message followed by the
    context that is set, e.g. ``"unavailable: down (status_code=503, attempts=3)"``.
    ``state`` rebuilds an error from its ``args``: ``type(error)(*error.args)``.
    """

    def __init__(
        self, message: str, state: _State = None, /, *,
        method: str | None = None, url: str | None = None, status_code: int | None = None,
        code: str | int | None = None, request_id: str | None = None,
        server: str | None = None, tool: str | None = None, attempts: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.server = server
        self.tool = tool
        self.attempts = attempts
        self.retry_after = retry_after
        restore(self.__dict__, state)

    @property
    def args(self) -> tuple[Any, ...]:
        """``(message, state)``: the attributes that are set, as JSON (always current)."""
        state = state_of(self.__dict__)
        return (self.message, state) if state else (self.message,)

    @args.setter
    def args(self, value: tuple[Any, ...]) -> None:  # the message, and any state they carry
        self.message, *state = value
        restore(self.__dict__, state[0] if state else None)

    @property
    def retryable(self) -> bool:
        """Whether sark_sync's retry rule would try this error again for an idempotent call
        (:func:`retry_rule`, with the statuses of the retry loop it came through)."""
        statuses = self.__dict__.get(STATUSES_MARK, DEFAULT_RETRY_STATUSES)
        return retry_rule(self, idempotent=True, statuses=statuses)

    def context(self) -> dict[str, Any]:
        """The context fields that are set, in a stable order."""
        return {name: value for name in _CONTEXT_FIELDS
                if (value := getattr(self, name)) is not None}

    def _with(self, **context: Any) -> GatewayError:
        """Fill context fields that are still unset (the pipeline knows more than a transport)."""
        for name, value in context.items():
            if value is not None and getattr(self, name, None) is None:
                setattr(self, name, value)
        return self

    def __str__(self) -> str:
        details = ", ".join(f"{key}={value}" for key, value in self.context().items())
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> Any:  # rebuilt from its args as Celery does, then the attributes
        return (type(self), self.args, self.__dict__.copy())


class ConfigurationError(GatewayError, ValueError):
    """The client was configured with an invalid value (URL, timeout, policy ...)."""


class ValidationError(ConfigurationError):
    """A call's arguments are invalid; raised before any request is made."""


class ClientClosedError(GatewayError, RuntimeError):
    """The client was used after ``close()``."""


class TransportNotAvailableError(GatewayError):
    """The configured ``transport_mode`` does not allow the transport this call needs."""


class TransportError(GatewayError):
    """The exchange with the gateway failed below the HTTP status level."""


class ConnectionFailed(TransportError, ConnectionError):
    """The connection could not be made, or broke before a response arrived."""


class TransportTimeout(TransportError, TimeoutError):
    """A connect or read timeout of a single attempt."""


class ProtocolError(TransportError):
    """The response was not what the wire contract allows: not JSON, truncated, too large."""


class ProcessStartError(TransportError, OSError):
    """A local MCP server could not be started (no such command, not executable, ...)."""

    def __init__(self, message: str, state: _State = None, /, *, command: str | None = None,
                 **context: Any) -> None:
        self.command = command  # each subclass sets its own first: the state may override it
        GatewayError.__init__(self, message, state, **context)


class ProcessExitedError(TransportError):
    """A local MCP server exited; ``returncode`` and the last lines of its stderr say why.

    A negative ``returncode`` is the signal that ended it (as in ``subprocess``).
    """

    def __init__(self, message: str, state: _State = None, /, *, returncode: int | None = None,
                 stderr_tail: str = "", **context: Any) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(message, state, **context)

    def __str__(self) -> str:
        text = super().__str__()
        if self.stderr_tail:
            text += "\nlast lines of its stderr:\n" + self.stderr_tail
        return text


class SessionExpiredError(TransportError):
    """A remote MCP server answered 404 to a request that carried its session id, again after
    a new session was opened for it: the server ran neither request (``server`` names it)."""


class RPCError(GatewayError):
    """An MCP server answered a request with a JSON-RPC error.

    ``code`` is the JSON-RPC integer code (-32601 method not found, -32602 invalid params ...),
    ``rpc_message`` the server's own message and ``data`` its optional data.
    """

    def __init__(self, message: str, state: _State = None, /, *, code: int | None = None,
                 rpc_message: str = "", data: Any = None, **context: Any) -> None:
        self.rpc_message = rpc_message
        self.data = data
        super().__init__(message, state, code=code, **context)


class CapabilityNotSupported(GatewayError):
    """The MCP server did not declare the capability a method needs (``resources``,
    ``prompts``, ``completions``), so the request was never sent: a server that did not
    declare it may not answer it, and retrying cannot change what it declared.

    ``capability`` is the capability, ``method`` the MCP method that needs it
    (``resources/read``), ``server`` the server's name.
    """

    def __init__(self, message: str, state: _State = None, /, *, capability: str = "",
                 method: str | None = None, **context: Any) -> None:
        self.capability = capability
        super().__init__(message, state, method=method, **context)


class CallCancelled(GatewayError, CancelledError):
    """The caller cancelled the call (a :class:`~sark_sync.CancelToken`, ``future.cancel()``);
    an MCP server was told (``notifications/cancelled``; at 2026-07-28 the connection closed).
    Never retried nor counted by a breaker; ``reason`` is the one given to ``cancel()``."""

    def __init__(self, message: str, state: _State = None, /, *, reason: str | None = None,
                 **context: Any) -> None:
        self.reason = reason
        super().__init__(message, state, **context)


class DeadlineExceeded(GatewayError, TimeoutError):
    """The call's deadline ran out, across every attempt and wait.

    ``attempts`` is how many requests were made, ``slept`` the seconds spent in backoff and
    Retry-After waits, ``last_error`` the error of the last attempt (or None).
    """

    def __init__(self, message: str, state: _State = None, /, *, timeout: float | None = None,
                 slept: float = 0.0, last_error: BaseException | None = None,
                 **context: Any) -> None:
        self.timeout = timeout
        self.slept = slept
        self.last_error = last_error
        super().__init__(message, state, **context)

    def context(self) -> dict[str, Any]:
        ctx = super().context()
        if self.timeout is not None:
            ctx["timeout"] = self.timeout
        if self.slept:
            ctx["slept"] = round(self.slept, 3)
        if self.last_error is not None:
            ctx["last_error"] = type(self.last_error).__name__
        return ctx


class CircuitOpenError(GatewayError):
    """The breaker for ``breaker`` is open: the call failed fast without touching the network.

    ``opened_at`` is the wall-clock time (UTC, datetime) it opened, ``probe_at`` when it will
    admit the next probe, ``failures`` the consecutive failures that opened it.
    """

    def __init__(self, message: str, state: _State = None, /, *, breaker: str = "",
                 opened_at: Any = None, probe_at: Any = None, failures: int = 0,
                 **context: Any) -> None:
        self.breaker = breaker
        self.opened_at = opened_at
        self.probe_at = probe_at
        self.failures = failures
        super().__init__(message, state, **context)


class AuthorizationDenied(GatewayError, PermissionError):
    """The policy denied the call (403 ``policy_denied``, or the client's pre-check)."""

    def __init__(self, message: str, state: _State = None, /, *, reason: str | None = None,
                 audit_id: str | None = None, **context: Any) -> None:
        self.reason = reason
        self.audit_id = audit_id
        super().__init__(message, state, **context)


class AuthorizationUnavailable(GatewayError):
    """The client's authorizer could not decide: the policy engine was unreachable, timed out,
    answered a non-2xx status or a malformed decision, or a callable authorizer raised.

    The call is refused (fail closed) and nothing is sent to the gateway; it is not retried
    and no breaker counts it. ``url`` and ``status_code`` say which engine and what it
    answered, when known; the cause is chained. An authorizer built with ``fail_open=True``
    allows the call instead, with a warning log.
    """


class ToolExecutionError(GatewayError):
    """The tool ran and reported an error (MCP ``isError: true``); see ``result``."""

    def __init__(self, message: str, state: _State = None, /, *, result: Any = None,
                 **context: Any) -> None:
        self.result = result
        super().__init__(message, state, **context)


class APIError(GatewayError):
    """The gateway answered with a non-2xx status and (usually) an error envelope."""


class BadRequestError(APIError):
    """400/422 ``invalid_request``: the gateway rejected the request as malformed."""


class AuthenticationError(APIError):
    """401 ``unauthenticated``: missing or invalid API key or user token."""


class NotFoundError(APIError, LookupError):
    """404 ``not_found``: no such server or tool."""


class IdempotencyConflictError(APIError):
    """409 ``idempotency_conflict``: the key was used before with a different request."""


class PayloadTooLargeError(APIError):
    """413 ``payload_too_large``: the request body exceeds the gateway's limit."""


class RateLimitError(APIError):
    """429 ``rate_limited``; ``retry_after`` says when the gateway accepts calls again."""


class ServerError(APIError):
    """5xx: the gateway or the server behind it failed."""


class UpstreamError(ServerError):
    """502 ``upstream_error``: the MCP server behind the gateway failed."""


class ServiceUnavailableError(ServerError):
    """503 ``unavailable``; ``retry_after`` is set when the gateway sent it."""


class UpstreamTimeoutError(ServerError):
    """504 ``upstream_timeout``: the MCP server behind the gateway did not answer in time."""


def retry_rule(error: BaseException, *, idempotent: bool, statuses: Collection[int]) -> bool:
    """The one rule: may the request that failed with ``error`` be tried again? (Described
    at :func:`sark_sync.resilience.retryable`, which applies it with a policy's statuses.)"""
    if not isinstance(error, GatewayError) or isinstance(error, (DeadlineExceeded, CallCancelled)):
        return False
    exchange: object = error.__dict__.get(EXCHANGE_MARK)
    if exchange in ("unsent", "final"):
        return exchange == "unsent"
    status = error.status_code
    if isinstance(error, APIError) and status is not None:
        return status in statuses and (status == 429 or idempotent)
    return idempotent and (exchange == "sent" or isinstance(
        error, (ConnectionFailed, TransportTimeout, ProcessExitedError)))


#: Status code -> exception class for gateway error responses.
STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 404: NotFoundError,
    409: IdempotencyConflictError, 413: PayloadTooLargeError, 422: BadRequestError,
    429: RateLimitError, 502: UpstreamError, 503: ServiceUnavailableError,
    504: UpstreamTimeoutError,
}


def error_for_status(status_code: int, message: str, *, reason: str | None = None,
                     audit_id: str | None = None, **context: Any) -> GatewayError:
    """Build the exception for a non-2xx gateway response (403 becomes AuthorizationDenied)."""
    if status_code == 403:
        return AuthorizationDenied(message, reason=reason, audit_id=audit_id,
                                   status_code=status_code, **context)
    cls = STATUS_ERRORS.get(status_code) or (ServerError if status_code >= 500 else APIError)
    return cls(message, status_code=status_code, **context)
