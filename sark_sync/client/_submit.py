"""The thread pool's side of the client: ``submit``'s cancellable future and ``invoke_many``.

A :class:`CallFuture` is a :class:`concurrent.futures.Future` whose ``cancel()`` also works
while the call runs: it ends the future cancelled at once and fires the call's own
:class:`~sark_sync.CancelToken` (a ``cancel=`` token given to ``submit`` cancels the future).
A call to an MCP server (by URL or over stdio) is abandoned then (its socket cut, its waiter
failed), the server is sent ``notifications/cancelled`` (at 2026-07-28 the connection is
closed instead) and the worker is free; the audit records an ``error`` of type
``CallCancelled``. A request still being set up (the connection, the handshake) is not cut:
the call ends when its ``tools/call`` begins.

A gateway call (REST, no MCP request id) cannot be withdrawn: its future is the executor's,
whose ``cancel()`` of a running call returns False, as before.

A submitted call runs in the submitter's OpenTelemetry context (its span is a child of the
span current at ``submit``), never in its other context variables (a cancellation scope).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .._deadline import Deadline
from .._exceptions import ValidationError
from .._models import ToolCall, ToolResult
from ..resilience import CancelToken, cancellable, carry_context
from ._invocation import Invocation, items, outcome

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["CallFuture", "invoke_many", "submit"]

T = TypeVar("T")


class CallFuture(Future[T]):
    """A future whose running call can be cancelled (see the module)."""

    def __init__(self, cancellation: CancelToken) -> None:
        super().__init__()
        self._cancellation = cancellation

    def cancel(self) -> bool:
        """Cancel the call, pending or running: True unless it has finished."""
        if super().cancel():  # not started: it never will
            return True
        with self._condition:
            if self._state != RUNNING:
                return self.cancelled()
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:  # concurrent.futures.wait / as_completed
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._cancellation.cancel()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def set_result(self, result: T) -> None:
        try:
            super().set_result(result)
        except InvalidStateError:
            if not self.cancelled():
                raise

    def set_exception(self, exception: BaseException | None) -> None:
        try:
            super().set_exception(exception)
        except InvalidStateError:
            if not self.cancelled():
                raise


def submit(executor: ThreadPoolExecutor, mcp: bool, function: Callable[..., T], *args: Any,
           cancel: CancelToken | None = None) -> Future[T]:
    """``executor.submit(function, *args)``; for a call to an MCP server (``mcp``), a
    :class:`CallFuture`, the call running in the scope of its cancellation. ``cancel``
    cancels the future (a running gateway call's future stays running, as ``cancel()``'s)."""
    if not mcp:  # a gateway call cannot be withdrawn: the executor's future, as ever
        return _linked(executor.submit(carry_context(function), *args), cancel)
    cancellation = CancelToken()
    future: CallFuture[T] = CallFuture(cancellation)

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with cancellable(cancellation):
                result = function(*args)
        except BaseException as exc:  # delivered to the future, as the executor does
            future.set_exception(exc)
        else:
            future.set_result(result)

    executor.submit(carry_context(run)).add_done_callback(
        lambda work: future.cancel() if work.cancelled() else None)  # a pool shut down
    return _linked(future, cancel)


def _linked(future: Future[T], token: CancelToken | None) -> Future[T]:
    """``future``, cancelled by ``token`` until it is done."""
    if token is not None:
        forget = token.on_cancel(future.cancel)
        future.add_done_callback(lambda _: forget())
    return future


def invoke_many(pipeline: Pipeline, calls: Iterable[ToolCall], return_exceptions: bool
                ) -> list[Any]:
    """``GatewayClient.invoke_many`` (documented there)."""
    if not isinstance(return_exceptions, bool):
        raise ValidationError("return_exceptions must be a bool, not "
                              f"{type(return_exceptions).__name__}")
    prepared: list[tuple[Invocation, Deadline, str | None]] = [
        (pipeline.prepare(call.server, call.tool, call.parameters, call.user_token,
                          call.idempotency_key, call.principal),
         pipeline.deadline(call.timeout), call.user_token)
        for _, call in items(calls)]
    executor = pipeline.executor()
    pending: list[tuple[Future[ToolResult], Deadline]] = [
        (executor.submit(carry_context(pipeline.invoke), invocation, deadline, token), deadline)
        for invocation, deadline, token in prepared]
    outcomes = [outcome(future, deadline) for future, deadline in pending]
    if not return_exceptions:
        for result in outcomes:
            if isinstance(result, BaseException):
                raise result
    return outcomes
