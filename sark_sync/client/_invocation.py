"""Tool calls prepared for sending, and the outcome of calls run on the thread pool.

A call is validated and encoded once, before anything is sent (so ``invoke_many`` can refuse a
bad batch before any call runs), then sent, and re-sent on retry, as the same bytes with the
same ``Idempotency-Key``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Optional

from .._deadline import Deadline
from .._exceptions import ValidationError
from .._models import Principal, ToolCall, ToolResult
from .._validation import (
    decode_json,
    encode_arguments,
    encode_invocation,
    json_copy,
    validate_header_value,
    validate_name,
)
from ..resilience import CancelToken, check_token

__all__ = ["Invocation", "ProgressCallback", "check_call", "check_progress", "invoke_request",
           "items", "outcome", "prepare"]

#: Seconds a waiter on a submitted call allows beyond its deadline for the worker to report.
RESULT_GRACE = 1.0

#: ``progress(progress, total, message)``: a tool call's progress notifications, in order.
ProgressCallback = Callable[[float, Optional[float], Optional[str]], None]


def check_progress(progress: object) -> ProgressCallback | None:
    """A ``progress=`` argument checked: None or a callable."""
    if progress is not None and not callable(progress):
        raise ValidationError(
            f"progress must be a callable or None, not {type(progress).__name__}")
    return progress


class Invocation:
    """A validated tool call, ready to send (and to re-send on retry): for the gateway an
    encoded body and headers; for a local server (``local=True``) the checked arguments.

    ``arguments`` are the call's parameters in both cases (for the authorizer and the audit
    hook; the gateway is sent ``body``); ``principal`` who the call is for, if known;
    ``filtered`` the parameter paths the client's authorizer removed (see :meth:`replace`);
    ``transport`` what the audit names: ``"http"`` (the gateway), ``"stdio"`` (a local
    server) or ``"mcp-http"`` (a remote MCP server, also ``local``: reached directly);
    ``progress`` the caller's progress callback (MCP servers only) and ``cancel`` its
    :class:`~sark_sync.CancelToken`, both checked.
    """

    __slots__ = ("arguments", "body", "cancel", "filtered", "headers", "idempotent", "local",
                 "principal", "progress", "server", "tool", "transport")

    def __init__(self, server: str, tool: str, body: bytes, headers: dict[str, str],
                 idempotent: bool, *, local: bool = False,
                 arguments: Mapping[str, Any] | None = None,
                 principal: Principal | None = None, filtered: tuple[str, ...] = (),
                 transport: str | None = None, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> None:
        self.server = server
        self.tool = tool
        self.body = body
        self.headers = headers
        self.idempotent = idempotent
        self.local = local
        self.arguments = arguments or {}
        self.principal = principal
        self.filtered = filtered
        self.transport = transport or ("stdio" if local else "http")
        self.progress = progress
        self.cancel = cancel

    def replace(self, *, headers: dict[str, str], arguments: Mapping[str, Any] | None = None,
                filtered: tuple[str, ...] = ()) -> Invocation:
        """This call with other headers and, if ``arguments`` is not None, those parameters
        instead (re-encoded; ``ValidationError`` if JSON cannot carry them)."""
        body, new_arguments = self.body, self.arguments
        if arguments is not None:
            new_arguments = arguments
            if self.local:
                encode_arguments(arguments)
            else:
                body = encode_invocation(self.server, self.tool, arguments)
        return Invocation(self.server, self.tool, body, headers, self.idempotent,
                          local=self.local, arguments=new_arguments, principal=self.principal,
                          filtered=filtered, transport=self.transport,
                          progress=self.progress, cancel=self.cancel)


def outcome(future: Future[ToolResult], deadline: Deadline) -> ToolResult | BaseException:
    """The result or the exception of a submitted call, waiting at most until its deadline
    (plus a grace for the worker to report)."""
    try:
        return future.result(timeout=deadline.remaining() + RESULT_GRACE)
    except FutureTimeout:
        future.cancel()
        return deadline.exceeded("waiting for a submitted call", attempts=0)
    except Exception as exc:
        return exc


def check_call(server: object, tool: object, user_token: object, idempotency_key: object
               ) -> tuple[str, str, str | None, str | None]:
    """A call's names and header values, checked (as plain str) before anything else reads
    them; :class:`ValidationError` naming the argument, never quoting a header value."""
    return (validate_name(server, "server"), validate_name(tool, "tool"),
            None if user_token is None else validate_header_value(user_token, "user_token"),
            None if idempotency_key is None else validate_header_value(
                idempotency_key, "idempotency_key"))


def invoke_request(
    server: str, tool: str, parameters: Mapping[str, Any] | None, user_token: str | None,
    idempotency_key: str | None,
) -> tuple[bytes, dict[str, str]]:
    """An invocation's body and headers, from arguments :func:`check_call` passed (the
    parameters are checked here, as they are encoded)."""
    body = encode_invocation(server, tool, parameters)
    headers: dict[str, str] = {}
    if user_token is not None:
        headers["Authorization"] = f"Bearer {user_token}"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return body, headers


def prepare(
    server: str, tool: str, parameters: Mapping[str, Any] | None, user_token: str | None,
    idempotency_key: str | None, extra: Mapping[str, str], *, local: bool, auto_key: bool,
    retry_safe: bool, principal: Principal | None, snapshot: bool, transport: str | None = None,
    progress: object = None, cancel: object = None,
) -> Invocation:
    """Encode a call for a local server or the gateway; nothing is sent. The names and header
    values are those :func:`check_call` returned; the parameters are checked here. ``extra``
    are the caller's checked headers (for a remote MCP server, the invocation's ``headers``).

    ``auto_key`` adds a generated ``Idempotency-Key`` when the caller gave none;
    ``retry_safe`` says the tool is annotated read-only or idempotent. With ``snapshot``
    (the call will be authorized), ``arguments`` is a copy of the parameters as they are
    sent, so that a caller changing its dict after ``submit()`` cannot make the authorizer
    judge other parameters than those sent. ``transport`` as :class:`Invocation`'s;
    ``progress`` and ``cancel`` are checked (:class:`ValidationError`).
    """
    checked_progress = check_progress(progress)
    token = check_token(cancel)
    if local:
        arguments = encode_arguments(parameters)
        if snapshot:
            arguments = json_copy(arguments)
        return Invocation(server, tool, b"", dict(extra), False, local=True, arguments=arguments,
                          principal=principal, transport=transport,
                          progress=checked_progress, cancel=token)
    body, headers = invoke_request(server, tool, parameters, user_token, idempotency_key)
    headers = {"X-Request-ID": str(uuid.uuid4()), **extra, **headers}  # one id, all attempts
    if idempotency_key is None and auto_key:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    idempotent = "Idempotency-Key" in headers or retry_safe
    sent = decode_json(body)["parameters"] if snapshot else parameters
    return Invocation(server, tool, body, headers, idempotent, principal=principal,
                      arguments=sent, progress=checked_progress, cancel=token)



def items(calls: object) -> Iterator[tuple[int, ToolCall]]:
    """``enumerate(calls)`` for ``invoke_many``, each item checked to be a :class:`ToolCall`;
    an exception of the caller's iterable becomes :class:`ValidationError` naming its type
    (its message, the caller's, is not repeated)."""
    if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Iterable):
        raise ValidationError(
            f"invoke_many takes an iterable of ToolCall, not {type(calls).__name__}")
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
        if not isinstance(call, ToolCall):
            raise ValidationError(
                f"invoke_many takes ToolCall items, not {type(call).__name__} (item {index})")
        yield index, call
        index += 1
