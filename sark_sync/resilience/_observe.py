"""What a call tells about itself: a log record per retry and per breaker transition, and an
OpenTelemetry span per logical call.

**Logs.** The retry loop logs each retry on ``sark_sync.retry`` (INFO) and every breaker
transition on ``sark_sync.breaker`` (WARNING when it opens, INFO when it half-opens or closes
again). Each record carries structured attributes (``extra``): ``request_id``, ``server``,
``tool``, ``attempt`` (None where unknown), and ``wait``, ``error_type``, ``status_code`` for a
retry, ``breaker``, ``state``, ``previous_state`` for a transition. They come from the call
running in this context (:func:`observed`), so a record names the call that caused it. No
header, parameter or credential is ever in a record: only names, counts and error types.

**Spans.** With ``opentelemetry-api`` installed (the ``otel`` extra), each tool
call is a span ``sark_sync invoke_tool`` and each discovery request ``sark_sync <METHOD>``
(kind CLIENT) with the attributes ``sark.server``, ``sark.tool``, ``sark.transport``,
``sark.request_id`` and, at its end, ``sark.attempts`` (and ``sark.tool_error`` for a result
with ``is_error``); each retry and breaker transition is an event on it; a call that raised
ends with status ERROR and ``error.type``. The spans go wherever the application's tracer
provider sends them (none configured: nowhere, at the API's no-op cost). Without the package
the import fails once, here, and every function below is a plain pass-through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, NamedTuple, TypeVar

from ..__version__ import __version__

#: ``opentelemetry.trace`` and ``opentelemetry.context`` once imported (on the first call, never
#: at ``import sark_sync``, which loads only the runtime dependencies), None without the
#: ``otel`` extra; ``_UNLOADED`` until then.
_UNLOADED: Any = object()
trace: Any = _UNLOADED
otel_context: Any = _UNLOADED

__all__ = ["answered_after", "breaker_transition", "carry_context", "current_call",
           "finished", "observed", "retrying_after", "tracing"]

T = TypeVar("T")


def _load() -> None:
    """Import OpenTelemetry the first time a call needs it (a lost race imports it twice,
    harmlessly: the import system serializes it and both get the same modules)."""
    global trace, otel_context
    try:
        # loaded on demand: an optional extra, kept out of `import sark_sync`
        from opentelemetry import context as loaded_context
        from opentelemetry import trace as loaded_trace  # loaded on demand, as above
    except ImportError:  # absent: tracing costs nothing (tests simulate it)
        trace, otel_context = None, None
    else:
        trace, otel_context = loaded_trace, loaded_context


def _trace() -> Any:
    if trace is _UNLOADED:
        _load()
    return trace


def _context() -> Any:
    if otel_context is _UNLOADED:
        _load()
    return otel_context


def tracing() -> bool:
    """Whether OpenTelemetry spans are made (``opentelemetry-api`` can be imported)."""
    return _trace() is not None


#: The instrumentation scope of the spans.
TRACER_NAME = "sark_sync"

retry_log = logging.getLogger("sark_sync.retry")
breaker_log = logging.getLogger("sark_sync.breaker")


class CallContext(NamedTuple):
    """The call running in this context, as log records and events name it."""

    request_id: str | None
    server: str | None
    tool: str | None


_CALL: ContextVar[CallContext | None] = ContextVar("sark_sync_call", default=None)


def current_call() -> CallContext | None:
    """The call :func:`observed` is running in this context, if any."""
    return _CALL.get()


@contextmanager
def observed(operation: str, *, server: str | None, tool: str | None,
             request_id: str | None, transport: str, attributes: dict[str, Any] | None = None,
             ) -> Iterator[Any]:
    """Run the block as one logical call: its retries and breaker transitions are logged with
    its names, and (with OpenTelemetry) it is the current span ``sark_sync <operation>``,
    yielded (None without OpenTelemetry); an exception ends it with status ERROR."""
    token = _CALL.set(CallContext(request_id, server, tool))
    trace = _trace()
    try:
        if trace is None:
            yield None
            return
        tracer = trace.get_tracer(TRACER_NAME, __version__)
        names = {"sark.server": server, "sark.tool": tool, "sark.transport": transport,
                 "sark.request_id": request_id, **(attributes or {})}
        with tracer.start_as_current_span(
                f"sark_sync {operation}", kind=trace.SpanKind.CLIENT,
                attributes={k: v for k, v in names.items() if v is not None},
                record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except BaseException as exc:
                attempts = getattr(exc, "attempts", None)
                if isinstance(attempts, int):
                    span.set_attribute("sark.attempts", attempts)
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise
    finally:
        _CALL.reset(token)


def finished(span: Any, attempts: int, tool_error: bool = False) -> None:
    """Record a call's outcome on its span (None: no tracing)."""
    if span is not None:
        span.set_attribute("sark.attempts", attempts)
        if tool_error:
            span.set_attribute("sark.tool_error", True)


def answered_after(attempts: int) -> None:
    """The retry loop got an answer at attempt ``attempts``: the span of the current call
    (:func:`observed`; never another span of the application's) counts them."""
    trace = _trace() if _CALL.get() is not None else None
    if trace is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("sark.attempts", attempts)


def retrying_after(error: BaseException, attempt: int, max_attempts: int, wait: float) -> None:
    """The retry loop is about to wait ``wait`` seconds and try again after ``attempt``
    failed with ``error``: one log record, one span event."""
    call = _CALL.get() or CallContext(None, None, None)
    status = getattr(error, "status_code", None)
    error_type = type(error).__name__
    retry_log.info(
        "retrying %s after attempt %d of %d failed with %s%s; waiting %.3fs",
        _where(call), attempt, max_attempts, error_type,
        f" ({status})" if status is not None else "", wait,
        extra={"request_id": call.request_id, "server": call.server, "tool": call.tool,
               "attempt": attempt, "wait": wait, "error_type": error_type,
               "status_code": status})
    _event("sark_sync.retry", {"sark.attempt": attempt, "sark.wait": wait,
                               "error.type": error_type})


def breaker_transition(breaker: str, previous: str, state: str, failures: int,
                       error: BaseException | None = None) -> None:
    """Breaker ``breaker`` went from ``previous`` to ``state``: one log record (WARNING when
    it opens), one span event."""
    call = _CALL.get() or CallContext(None, None, None)
    attempts = getattr(error, "attempts", None)
    cause = f" after {failures} consecutive failures (last: {type(error).__name__})" \
        if error is not None else ""
    breaker_log.log(
        logging.WARNING if state == "open" else logging.INFO,
        "circuit %r is %s (was %s)%s", breaker, state, previous, cause,
        extra={"request_id": call.request_id, "server": call.server, "tool": call.tool,
               "attempt": attempts if isinstance(attempts, int) else None,
               "breaker": breaker, "state": state, "previous_state": previous,
               "failures": failures})
    _event("sark_sync.breaker", {"sark.breaker": breaker, "sark.breaker.state": state})


def carry_context(function: Callable[..., T]) -> Callable[..., T]:
    """``function``, run with this thread's OpenTelemetry context wherever it runs (a call
    submitted to the thread pool is a child of the submitter's span); itself without it."""
    otel_context = _context()
    if otel_context is None:
        return function
    captured = otel_context.get_current()

    def run(*args: Any, **kwargs: Any) -> T:
        token = otel_context.attach(captured)
        try:
            return function(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def _where(call: CallContext) -> str:
    if call.server is None:
        return "a request"
    return f"{call.server}/{call.tool}" if call.tool else call.server


def _event(name: str, attributes: dict[str, Any]) -> None:
    """An event on the current call's span (never on a span of the application's)."""
    trace = _trace() if _CALL.get() is not None else None
    if trace is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)
