"""What the operation mixins of GatewayClient rely on, declared once.

:class:`GatewayClient` is assembled from mixins (discovery, tool calls, event streams), each
in its own module so that none grows past a readable size. They call the client's pipeline
(:meth:`_deadline`, :meth:`_send`, ...), which ``_client.py`` implements; this base only
tells the type checker what it looks like, and costs nothing at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from .._config import RetryPolicy, Timeouts
    from .._deadline import Deadline
    from .._models import ToolResult
    from ..governance._audit_recorder import Operation
    from ..transports._mcp_pool import LocalServerPool
    from ..transports.http import Response
    from ._governance_stage import Governance

__all__ = ["ClientPipeline"]

T = TypeVar("T")


class ClientPipeline:
    """The attributes and pipeline methods of :class:`GatewayClient` that its mixins use."""

    base_url: str
    retry: RetryPolicy
    idempotency_keys: bool
    _retry_safe_tools: dict[tuple[str, str], bool]
    _governance: Governance

    if TYPE_CHECKING:
        def _timeouts(self, timeout: float | Timeouts | None) -> Timeouts: ...
        def _deadline(self, timeout: float | Timeouts | None) -> Deadline: ...
        def _local(self, server: str | None) -> LocalServerPool | None: ...
        def _executor(self) -> ThreadPoolExecutor: ...
        def _guard(self, server: str) -> Callable[[Callable[[], ToolResult]], ToolResult]: ...
        def _send(
            self, method: str, path: str, *, server: str | None, deadline: Deadline,
            idempotent: bool = True, params: Mapping[str, Any] | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None,
            accept_statuses: frozenset[int] = frozenset(), tool: str | None = None,
            audit: Operation | None = None,
        ) -> Response: ...
        def _exchange(
            self, method: str, path: str, parse: Callable[[Response], T], *,
            server: str | None, deadline: Deadline, idempotent: bool = True,
            params: Mapping[str, Any] | None = None, body: bytes | None = None,
            headers: dict[str, str] | None = None,
            accept_statuses: frozenset[int] = frozenset(), tool: str | None = None,
            audit: Operation | None = None,
        ) -> T: ...
