"""The client's side of the server's own requests: sampling, elicitation, roots.

:class:`ClientHandlers` holds the user's handlers of one session and answers with them, the
same way in both eras: a 2025 server sends ``sampling/createMessage``, ``elicitation/create``
or ``roots/list`` as a JSON-RPC request (:meth:`ClientHandlers.dispatch`, called on the
channel's reader), a 2026-07-28 server embeds them in an ``input_required`` result
(:meth:`ClientHandlers.answer`, called by :mod:`._mcp_input`).

A handler never runs on the reader thread: it may take minutes (a human answering a form) or
call tools of the same server, whose answers that reader must deliver. Each runs on a thread
``sark-sync-mcp-<name>-handler``, at most :data:`MAX_CONCURRENT` at once (beyond that the
server is answered -32603 "busy"), bounded by ``handler_timeout``: a late handler's server gets
a -32603 error and its result, when it comes, is dropped. A handler that raises answers -32603
with the exception's type and message, credentials in it hidden (an :class:`RPCError`
keeps its code), malformed params
-32602, a request without a handler -32601. ``close()`` joins the threads, bounded.

Only the capabilities of the handlers given are declared (:meth:`ClientHandlers.capabilities`):
a server must not ask for the others.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

from .._exceptions import ConfigurationError, GatewayError, RPCError, ValidationError
from .._mcp_requests import (
    ElicitationRequest,
    ElicitationResult,
    Root,
    RootsRequest,
    SamplingRequest,
    SamplingResult,
)
from .._redact import REDACTED
from ..resilience import forksafety
from ..wire import jsonrpc
from ._mcp_options import check_seconds

__all__ = ["HANDLER_OPTIONS", "ClientHandlers", "DEFAULT_HANDLER_TIMEOUT", "HandlerFailure",
           "MAX_CONCURRENT", "check_handler_options"]

log = logging.getLogger("sark_sync.mcp")

#: Seconds a handler may take to answer (a human filling a form needs time).
DEFAULT_HANDLER_TIMEOUT = 60.0
#: Handlers running at once per session; a server asking for more is answered "busy".
MAX_CONCURRENT = 32
#: Seconds ``close()`` waits for running handlers, all together.
CLOSE_JOIN_TIMEOUT = 2.0
#: Characters of a handler's exception message sent to the server.
MAX_ERROR_TEXT = 200
#: The JSON-RPC error of a handler that failed, timed out or could not run.
INTERNAL_ERROR = -32603
#: The version from which elicitation declares its modes (``{"form": {}}``).
ELICITATION_MODES_SINCE = "2025-11-25"

SamplingHandler = Callable[[SamplingRequest], Union[SamplingResult, Mapping[str, Any]]]
ElicitationHandler = Callable[[ElicitationRequest],
                              Union[ElicitationResult, Mapping[str, Any]]]
RootsSource = Union[Sequence[Union[Root, str]],
                    Callable[[RootsRequest], Sequence[Union[Root, str]]]]
Error = Callable[[str], Exception]
METHODS = ("sampling/createMessage", "elicitation/create", "roots/list")
#: The session options that make :class:`ClientHandlers` (LocalServer's, RemoteServer's ...).
HANDLER_OPTIONS = ("sampling", "elicitation", "roots", "handler_timeout")


def check_handler_options(options: Mapping[str, Any], *, where: str,
                          error: Error = ValidationError) -> dict[str, Any]:
    """``options`` (the ``**handlers`` of a method that passes them on) if each is one of
    :data:`HANDLER_OPTIONS` (their values are checked where the session is made)."""
    unknown = sorted(str(key)[:40] for key in options if key not in HANDLER_OPTIONS)
    if unknown:
        raise error(f"{where} got unexpected option(s) {', '.join(unknown)}; it takes "
                    f"{', '.join(HANDLER_OPTIONS)} besides its own")
    return dict(options)


class HandlerFailure(Exception):
    """The JSON-RPC error a server's request is answered with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Outcome:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ClientHandlers:
    """The handlers of one session. ``sampling(request) -> SamplingResult | dict``,
    ``elicitation(request) -> ElicitationResult | dict``; ``roots`` a sequence of
    :class:`Root` (or ``file://`` URI strings), or ``roots(request) -> sequence`` asked each
    time (only then is ``listChanged`` declared: see ``notify_roots_changed``).
    ``handler_timeout``: seconds each handler may take. A wrong type raises ``error``."""

    def __init__(self, name: str, *, sampling: SamplingHandler | None = None,
                 elicitation: ElicitationHandler | None = None,
                 roots: RootsSource | None = None,
                 handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
                 error: Error = ConfigurationError) -> None:
        self.name = name
        for what, value in (("sampling", sampling), ("elicitation", elicitation)):
            if value is not None and not callable(value):
                raise error(f"{what} must be a callable or None, not {type(value).__name__}")
        self.sampling, self.elicitation = sampling, elicitation
        self.roots: RootsSource | None = roots
        self._static_roots: tuple[Root, ...] | None = None
        if roots is not None and not callable(roots):
            if isinstance(roots, (str, bytes)) or not isinstance(roots, Sequence):
                raise error("roots must be a sequence of Root or file:// URIs, or a callable")
            try:
                self._static_roots = tuple(Root.coerce(r) for r in roots)
            except ValidationError as exc:
                raise error(f"roots: {exc}") from None
        seconds = check_seconds("handler_timeout", handler_timeout, error=error)
        assert seconds is not None
        self.handler_timeout = seconds
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False
        forksafety.register(self)  # a child never waits on its parent's threads or locks

    @property
    def dynamic_roots(self) -> bool:
        """Whether the roots come from a callable (and may change: ``listChanged``)."""
        return self.roots is not None and self._static_roots is None

    def capabilities(self, version: str | None) -> dict[str, Any]:
        """The client capabilities to declare at ``version``: those of the handlers given."""
        caps: dict[str, Any] = {}
        if self.sampling is not None:
            caps["sampling"] = {}
        if self.elicitation is not None:
            caps["elicitation"] = ({"form": {}} if version is not None
                                   and version >= ELICITATION_MODES_SINCE else {})
        if self.roots is not None:
            caps["roots"] = {"listChanged": True} if self.dynamic_roots else {}
        return caps

    def check_roots_change(self) -> None:
        """ValidationError unless the roots may change (``roots`` is a callable): a session
        with fixed roots, or none, never declared ``listChanged``."""
        if not self.dynamic_roots:
            raise ValidationError(
                f"notify_roots_changed needs roots= to be a callable; the session with "
                f"{self.name!r} has {'fixed roots' if self.roots is not None else 'no roots'}")

    def handles(self, method: str) -> bool:
        handler = {"sampling/createMessage": self.sampling, "elicitation/create":
                   self.elicitation, "roots/list": self.roots}.get(method)
        return handler is not None

    # -- 2025: a request of the server, answered on a thread of its own ---------------------

    def dispatch(self, request: jsonrpc.Request, channel: Any) -> bool:
        """Answer ``request`` on ``channel`` (its ``respond``/``respond_error``) from a
        handler thread; False if it is no request a handler of this session serves. Called on
        the reader thread: never blocks on a handler."""
        if not self.handles(request.method):
            return False
        if not self._slots.acquire(blocking=False):
            channel.respond_error(request.id, INTERNAL_ERROR,
                                  f"sark-sync is busy: {MAX_CONCURRENT} requests are running")
            return True
        self._slots.release()  # taken again by answer(), on the handler thread
        try:
            self._spawn(self._serve, (request, channel))
        except HandlerFailure as failure:  # the session is closing
            channel.respond_error(request.id, failure.code, failure.message)
        return True

    def _serve(self, request: jsonrpc.Request, channel: Any) -> None:
        try:
            try:
                result = self.answer(request.method, request.params, None)
            except HandlerFailure as failure:
                channel.respond_error(request.id, failure.code, failure.message)
            else:
                channel.respond(request.id, result)
        except GatewayError as exc:  # the server is gone, or the channel closed
            log.debug("%s: could not answer %s: %s", self.name, request.method, exc)

    # -- both eras ----------------------------------------------------------------------------

    def answer(self, method: str, params: Any, deadline: float | None) -> dict[str, Any]:
        """The result of the server's ``method`` request, as the wire carries it, from its
        handler run on a handler thread for at most ``handler_timeout`` seconds (and not past
        ``deadline``, a ``time.monotonic()``); :class:`HandlerFailure` otherwise."""
        if not self.handles(method):
            raise HandlerFailure(jsonrpc.METHOD_NOT_FOUND,
                                 f"method not supported by sark-sync: {method[:80]}")
        try:
            run, finish = self._prepare(method, params)
        except ValueError as exc:
            raise HandlerFailure(jsonrpc.INVALID_PARAMS,
                                 f"invalid {method} params: {str(exc)[:MAX_ERROR_TEXT]}") from None
        if run is None:
            return finish(None)
        timeout = self.handler_timeout
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        if not self._slots.acquire(blocking=False):
            raise HandlerFailure(INTERNAL_ERROR,
                                 f"sark-sync is busy: {MAX_CONCURRENT} requests are running")
        outcome = _Outcome()
        try:
            self._spawn(self._run, (run, outcome))
        except BaseException:
            self._slots.release()
            raise
        if not outcome.done.wait(timeout):
            raise HandlerFailure(INTERNAL_ERROR,
                                 f"the {method} handler did not answer within {timeout:.3g}s")
        if outcome.error is not None:
            raise _failure_of(outcome.error, method) from None
        try:
            return finish(outcome.value)
        except ValidationError as exc:
            raise HandlerFailure(INTERNAL_ERROR, f"the {method} handler returned an invalid "
                                 f"result: {str(exc)[:MAX_ERROR_TEXT]}") from None

    def _prepare(self, method: str, params: Any
                 ) -> tuple[Callable[[], Any] | None, Callable[[Any], dict[str, Any]]]:
        """The handler call (None: nothing to run) and how its value becomes the result."""
        if method == "sampling/createMessage":
            sampling, sample = self.sampling, SamplingRequest.from_params(params, self.name)
            assert sampling is not None
            return (lambda: sampling(sample)), _sampling_result
        if method == "elicitation/create":
            elicitation = self.elicitation
            elicit = ElicitationRequest.from_params(params, self.name)
            assert elicitation is not None
            return (lambda: elicitation(elicit)), _elicitation_result
        RootsRequest.from_params(params, self.name)
        if self._static_roots is not None:
            static = self._static_roots
            return None, lambda _: {"roots": [r.to_dict() for r in static]}
        source = self.roots
        assert callable(source)
        return (lambda: source(RootsRequest(self.name))), _roots_result

    def _run(self, call: Callable[[], Any], outcome: _Outcome) -> None:
        try:
            outcome.value = call()
        except BaseException as exc:  # reported to the server; the thread ends cleanly
            outcome.error = exc
        finally:
            outcome.done.set()
            self._slots.release()

    def _spawn(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        with self._lock:
            if self._closed:
                raise HandlerFailure(INTERNAL_ERROR, "the client session is closing")
            thread = threading.Thread(target=run, name=f"sark-sync-mcp-{self.name}-handler",
                                      daemon=True)
            self._threads.add(thread)
        thread.start()

    def close(self, timeout: float = CLOSE_JOIN_TIMEOUT) -> None:
        """Refuse new requests and join the running handlers, for ``timeout`` seconds in all
        (a handler still running after that is left to end on its own, with a warning).
        Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            log.warning("%s: a request handler is still running after close", self.name)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's handler threads do not exist here, and a lock or
        slot they held stays held forever: new ones (also run by the fork hook)."""
        self._threads = set()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    _after_fork_in_child = forget_after_fork


def _failure_of(exc: BaseException, method: str) -> HandlerFailure:
    """The error a failed handler answers: an RPCError keeps its code; anything else is
    -32603 with the exception's type and message (cut short, never its traceback)."""
    if isinstance(exc, RPCError):
        code = exc.code if isinstance(exc.code, int) else INTERNAL_ERROR
        return HandlerFailure(code, (exc.rpc_message or exc.message)[:MAX_ERROR_TEXT])
    if isinstance(exc, HandlerFailure):
        return exc
    text = scrub(str(exc)[:2 * MAX_ERROR_TEXT])[:MAX_ERROR_TEXT]  # bounded regex work
    return HandlerFailure(INTERNAL_ERROR,
                          f"the {method} handler failed: {type(exc).__name__}: {text}")


#: What looks like a credential in an exception's message: ``password=x``, ``token: x``,
#: ``Bearer x``, a URL's ``user:password@``. The message goes to the server.
_CREDENTIALS = re.compile(
    r"(?i)(?P<key>\b[\w.-]*(?:passw(?:or)?d|secret|token|api[_-]?key|authorization|cookie)"
    r"[\w.-]*[\"']?\s*[=:]\s*[\"']?)(?:bearer\s+|basic\s+)?(?P<value>[^\s,;&\"']+)"
    r"|(?P<scheme>\b(?:bearer|basic)\s+)(?P<credential>[^\s,;&\"']+)"
    r"|(?P<slashes>//)(?P<userinfo>[^/\s@]+)@")


def scrub(text: str) -> str:
    """``text`` with what looks like a credential shown as ``[secure]``."""
    def hide(match: re.Match[str]) -> str:
        prefix = match.group("key") or match.group("scheme") or match.group("slashes")
        return f"{prefix}{REDACTED}" + ("@" if match.group("slashes") else "")

    return _CREDENTIALS.sub(hide, text)


def _sampling_result(value: Any) -> dict[str, Any]:
    result = value if isinstance(value, SamplingResult) else SamplingResult.from_dict(value)
    return result.to_dict()


def _elicitation_result(value: Any) -> dict[str, Any]:
    result = value if isinstance(value, ElicitationResult) \
        else ElicitationResult.from_dict(value)
    return result.to_dict()


def _roots_result(value: Any) -> dict[str, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValidationError("the roots handler must return a sequence of Root or file:// URIs")
    return {"roots": [Root.coerce(r).to_dict() for r in value]}
