"""``GatewayClient.with_options``: a view of a client with other defaults.

As openai's ``client.with_options(...)``: the view is a :class:`GatewayClient` that shares
everything its client owns (the gateway's connection pool, the thread pool, the breakers, the
local and remote servers and their sessions, the authorizer, the audit sink, what was learnt
about tools) and differs only in its defaults: ``timeout``, ``retry`` and extra ``headers``
(on gateway requests and remote MCP ``tools/call``; not on local servers nor event streams).
Making one opens nothing (no socket, no thread), so a view per request or per task is cheap;
views are thread-safe as their client is, and a view of a view takes its defaults from it.

Lifetimes: ``view.close()`` (or leaving ``with view:``) closes the view only; its client
stays open. Closing the client closes every view of it (they raise
:class:`ClientClosedError`). A view keeps its client alive, so
``GatewayClient(...).with_options(...)`` is safe to keep without a name for the client.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from .._config import RetryPolicy, Timeouts
from .._exceptions import ConfigurationError, ValidationError
from ._headers import check_headers, merge_headers

if TYPE_CHECKING:
    from ._client import GatewayClient

__all__ = ["view_of"]

C = TypeVar("C", bound="GatewayClient")


def view_of(client: C, *, timeout: float | Timeouts | None, retry: RetryPolicy | None,
            headers: Mapping[str, str] | None) -> C:
    """A view of ``client`` (see the module): None keeps the client's value; ``headers`` are
    added to the client's (names compared without case). :class:`ConfigurationError` for an
    invalid value, :class:`ClientClosedError` if ``client`` is closed."""
    parent = client._pipeline
    parent.check_open()
    timeouts = parent.timeouts if timeout is None else Timeouts.coerce(timeout)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    try:
        extra = check_headers(headers)
    except ValidationError as exc:
        raise ConfigurationError(exc.message) from None
    view = copy.copy(client)  # the same attributes: resources, governance, auditor, options
    view._pipeline = parent.derive(timeouts, parent.retry if retry is None else retry,
                                   merge_headers(parent.headers, extra))
    view.timeouts, view.retry = view._pipeline.timeouts, view._pipeline.retry
    view._parent = client
    return view
