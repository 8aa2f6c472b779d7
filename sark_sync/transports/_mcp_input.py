"""MCP 2026-07-28's multi-round-trip requests: a server that needs input asks in its answer.

At 2026-07-28 a server never sends a request of its own. A ``tools/call``, ``prompts/get`` or
``resources/read`` that needs the user (an elicitation), the client's LLM (sampling) or its
roots is answered with an interim result instead::

    {"resultType": "input_required",
     "inputRequests": {"<key>": {"method": "elicitation/create", "params": {...}}, ...},
     "requestState": "<opaque>"}

and the client sends the same request again with ``params.inputResponses`` (``{"<key>":
<the result of that request>}``) and ``params.requestState`` echoed verbatim; the server may
ask again. :class:`InputLoop` does this for the HTTP channel: each input request is answered
by the session's :class:`~._mcp_handlers.ClientHandlers` (the same handlers a 2025 server's
requests reach), at most :data:`MAX_ROUNDS` rounds, all within the original call's deadline.
A handler that fails fails the call: an :class:`RPCError` with the code a 2025 server would
have been answered (-32601 no handler, -32602 malformed request, -32603 the handler failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from .._exceptions import ProtocolError, RPCError
from ._mcp_handlers import ClientHandlers, HandlerFailure

__all__ = ["INPUT_METHODS", "InputLoop", "MAX_INPUT_REQUESTS", "MAX_ROUNDS",
           "is_input_required"]

#: The requests a 2026 server may answer ``input_required``.
INPUT_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
#: Rounds of input one call may take (a server asking forever ends here).
MAX_ROUNDS = 10
#: Input requests one round may carry.
MAX_INPUT_REQUESTS = 64
#: Characters of ``requestState`` echoed at most.
MAX_STATE = 1_000_000


class Requester(Protocol):
    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        ...


def is_input_required(result: Any) -> bool:
    return isinstance(result, Mapping) and result.get("resultType") == "input_required"


class InputLoop:
    """Answers the ``input_required`` results of one channel with ``handlers``; what the
    channel calls (:meth:`resolve`) after each request, and what declares the client's
    capabilities in the 2026 envelope (:meth:`capabilities`)."""

    def __init__(self, handlers: ClientHandlers) -> None:
        self.handlers = handlers
        self._inside = threading.local()  # this thread's retry: its answer goes back to us

    def capabilities(self, version: str | None) -> dict[str, Any]:
        return self.handlers.capabilities(version)

    def resolve(self, channel: Requester, method: str, params: Mapping[str, Any] | None,
                result: Any, deadline: float) -> Any:
        """``result``, or after answering its input requests and retrying (rounds bounded,
        one ``deadline``), the complete result of the retried request."""
        if not is_input_required(result) or getattr(self._inside, "active", False):
            return result
        name = self.handlers.name
        for _ in range(MAX_ROUNDS):
            asked, state = _parse(result, method, name)
            responses = {key: self._answer(key, request, deadline)
                         for key, request in asked.items()}
            retry = {k: v for k, v in (params or {}).items()
                     if k not in ("inputResponses", "requestState")}
            if responses:
                retry["inputResponses"] = responses
            if state is not None:
                retry["requestState"] = state
            self._inside.active = True
            try:
                result = channel.request(method, retry, max(0.0, deadline - time.monotonic()))
            finally:
                self._inside.active = False
            if not is_input_required(result):
                return result
        raise ProtocolError(f"{name!r} asked for input more than {MAX_ROUNDS} times in one "
                            f"{method}", server=name)

    def _answer(self, key: str, request: Mapping[str, Any], deadline: float) -> Any:
        method = request.get("method")
        name = self.handlers.name
        try:
            return self.handlers.answer(str(method), request.get("params"), deadline)
        except HandlerFailure as failure:
            raise RPCError(f"could not answer the {str(method)[:80]} that {name!r} asked for "
                           f"({key[:80]!r}): {failure.message}", code=failure.code,
                           rpc_message=failure.message, server=name) from None


def _parse(result: Mapping[str, Any], method: str, server: str
           ) -> tuple[dict[str, Mapping[str, Any]], str | None]:
    """The input requests and the state of an ``input_required`` result; ProtocolError if it
    is malformed."""
    def bad(why: str) -> ProtocolError:
        return ProtocolError(f"{server!r} answered {method} with a malformed input_required "
                             f"result: {why}", server=server)

    requests = result.get("inputRequests")
    state = result.get("requestState")
    if requests is None:
        requests = {}
    if not isinstance(requests, Mapping) or len(requests) > MAX_INPUT_REQUESTS:
        raise bad(f"inputRequests must be an object of at most {MAX_INPUT_REQUESTS} requests")
    if state is not None and (not isinstance(state, str) or len(state) > MAX_STATE):
        raise bad("requestState must be a string")
    if not requests and state is None:
        raise bad("it has neither inputRequests nor requestState")
    for key, request in requests.items():
        if not isinstance(key, str) or not isinstance(request, Mapping) \
                or not isinstance(request.get("method"), str):
            raise bad("each input request must be an object with a method")
    return dict(requests), state
