"""Tool calls of GatewayClient: one call, a submitted call, a batch (DESIGN §2, §5).

A mixin, as :mod:`._discovery` is: these methods validate and encode a call
(:func:`._invocation.prepare`), then run it through the governance step
(:meth:`._governed.Governance.run`: authorize, audit) around the transport: the gateway's
``POST /api/v1/invoke`` through the breaker and retries, or a local server over stdio. They
live apart from the construction, lifecycle and transport selection in ``_client.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from .._config import Timeouts
from .._deadline import Deadline
from .._exceptions import ProtocolError, ValidationError
from .._models import Principal, ToolCall, ToolResult
from ._client_base import ClientPipeline
from ._invocation import Invocation, check_call, outcome, prepare

if TYPE_CHECKING:
    from ..transports.http import Response
    from ._client import GatewayClient

__all__ = ["InvocationMixin"]


class InvocationMixin(ClientPipeline):
    """Tool calls. Mixed into :class:`GatewayClient`."""

    def invoke_tool(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None = None, *,
        user_token: str | None = None, timeout: float | Timeouts | None = None,
        idempotency_key: str | None = None, principal: Principal | None = None,
    ) -> ToolResult:
        """Call ``tool`` on ``server`` and return its :class:`ToolResult`.

        :param parameters: the tool's arguments, a JSON-serialisable mapping.
        :param user_token: the end user's JWT, sent as ``Authorization: Bearer``.
        :param timeout: this call's deadline (seconds or :class:`Timeouts`).
        :param idempotency_key: deduplicates retries at the gateway; generated when absent
            (unless the client was made with ``idempotency_keys=False``).
        :param principal: who the call is for, for the client's authorizer; by default read
            (unverified, advisory) from ``user_token``'s claims ``sub``, ``roles``, ``teams``.

        A tool error is a result (``is_error``); call ``raise_for_error()`` to raise it.
        Raises :class:`ValidationError` for bad arguments (before any request; a malformed
        ``user_token`` too when there is an authorizer), :class:`AuthorizationDenied`,
        :class:`AuthorizationUnavailable`, :class:`CircuitOpenError`,
        :class:`DeadlineExceeded`, or another :class:`GatewayError`.
        """
        deadline = self._deadline(timeout)
        prepared = self._prepare(server, tool, parameters, user_token, idempotency_key,
                                 principal)
        return self._execute(prepared, deadline, user_token)

    def _prepare(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None,
        user_token: str | None, idempotency_key: str | None, principal: Principal | None,
    ) -> Invocation:
        """Validate and encode a call; nothing is sent yet. The names and header values are
        checked first, before anything (the local server lookup, the principal's token) reads
        them."""
        server, tool, user_token, idempotency_key = check_call(server, tool, user_token,
                                                               idempotency_key)
        return prepare(
            server, tool, parameters, user_token, idempotency_key,
            local=self._local(server) is not None, auto_key=self.idempotency_keys,
            retry_safe=self._retry_safe_tools.get((server, tool), False),
            principal=self._governance.principal(principal, user_token),
            snapshot=self._governance.authorizer is not None)

    def _execute(self, call: Invocation, deadline: Deadline, user_token: str | None = None
                 ) -> ToolResult:
        client = cast("GatewayClient", self)  # the governance step discovers through it
        return self._governance.run(client, call, deadline, self._transmit, user_token)

    def _transmit(self, call: Invocation, deadline: Deadline) -> ToolResult:
        if call.local:
            local = self._local(call.server)
            assert local is not None
            return local.invoke(call.server, call.tool, call.arguments, deadline, self.retry,
                                self._guard(call.server))
        started = time.perf_counter()

        def parse(response: Response) -> ToolResult:
            # Inside the breaker: a malformed answer is the server's failure, not a success.
            latency_ms = (time.perf_counter() - started) * 1000.0
            try:
                return ToolResult.from_invoke_response(
                    response.data, server=call.server, tool=call.tool, latency_ms=latency_ms,
                    attempts=response.attempts,
                )
            except ValueError as exc:
                raise ProtocolError(f"malformed invoke response: {exc}", server=call.server,
                                    tool=call.tool, attempts=response.attempts) from None

        return self._exchange("POST", "/api/v1/invoke", parse, server=call.server,
                              tool=call.tool, deadline=deadline, idempotent=call.idempotent,
                              body=call.body, headers=call.headers)

    def submit(
        self, server: str, tool: str, parameters: Mapping[str, Any] | None = None, *,
        user_token: str | None = None, timeout: float | Timeouts | None = None,
        idempotency_key: str | None = None, principal: Principal | None = None,
    ) -> Future[ToolResult]:
        """Run :meth:`invoke_tool` on the client's thread pool and return its future.

        Arguments are validated now (a bad name raises here, not from the future). The
        deadline starts now too, so time spent queued counts against it.
        """
        deadline = self._deadline(timeout)
        prepared = self._prepare(server, tool, parameters, user_token, idempotency_key,
                                 principal)
        return self._executor().submit(self._execute, prepared, deadline, user_token)

    def invoke_many(
        self, calls: Iterable[ToolCall], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Run many calls on the thread pool (at most ``max_workers`` at once); results come
        back in the order of ``calls``.

        Every call is validated before any is sent: one bad item (a non-ToolCall included)
        raises :class:`ValidationError` and nothing runs. With ``return_exceptions=True`` a
        failed call's exception takes its place in the list; otherwise, once every call has
        finished, the first failure (in the order of ``calls``) is raised. Each call's
        deadline starts now, so waiting is bounded.
        """
        if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Iterable):
            raise ValidationError(
                f"invoke_many takes an iterable of ToolCall, not {type(calls).__name__}")
        if not isinstance(return_exceptions, bool):
            raise ValidationError("return_exceptions must be a bool, not "
                                  f"{type(return_exceptions).__name__}")
        prepared: list[tuple[Invocation, Deadline, str | None]] = []
        for index, call in _items(calls):
            if not isinstance(call, ToolCall):
                raise ValidationError(
                    f"invoke_many takes ToolCall items, not {type(call).__name__} (item "
                    f"{index})"
                )
            prepared.append((
                self._prepare(call.server, call.tool, call.parameters, call.user_token,
                              call.idempotency_key, call.principal),
                self._deadline(call.timeout), call.user_token,
            ))
        executor = self._executor()
        pending = [(executor.submit(self._execute, invocation, deadline, token), deadline)
                   for invocation, deadline, token in prepared]
        outcomes = [outcome(future, deadline) for future, deadline in pending]
        if not return_exceptions:
            for result in outcomes:
                if isinstance(result, BaseException):
                    raise result
        return outcomes


def _items(calls: Iterable[ToolCall]) -> Iterator[tuple[int, ToolCall]]:
    """``enumerate(calls)``, with an exception of the caller's iterable turned into
    :class:`ValidationError` naming its type (its message, the caller's, is not repeated)."""
    iterator = iter(calls)
    index = 0
    while True:
        try:
            call = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise ValidationError(f"invoke_many could not iterate its calls: item {index} "
                                  f"raised {type(exc).__name__}") from None
        yield index, call
        index += 1
