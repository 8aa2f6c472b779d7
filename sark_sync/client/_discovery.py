"""Discovery operations of GatewayClient: health, servers and tools (DESIGN §4).

A mixin, as requests' ``SessionRedirectMixin`` is: these methods only read from the gateway
(or list a local server's tools) through the client's pipeline (``_send``), so they live apart
from the construction, lifecycle and invocation code in ``_client.py``. Listings are lenient
(a malformed item is skipped with a warning) and iterators hold one page at a time.

Each public method is one audited operation (event type ``"discovery"``, ``"health"`` for
:meth:`~DiscoveryMixin.health`; see :mod:`._auditing`): an iterator's pages make one event
between them. Arguments refused before anything is sent are not audited, as for tool calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from typing import Any, Callable, TypeVar
from urllib.parse import quote

from .._config import Timeouts
from .._deadline import Deadline
from .._exceptions import ProtocolError, ServiceUnavailableError
from .._models import Health, ServerInfo, ToolInfo
from .._validation import validate_name, validate_page
from ..governance._audit_recorder import Operation, audited_items
from ..transports.http import Response
from ..wire._pagination import paginate, parse_page
from ._client_base import ClientPipeline

__all__ = ["DiscoveryMixin"]

T = TypeVar("T")

#: Tools whose annotations the client remembers for retry safety.
MAX_REMEMBERED_TOOLS = 10_000

#: The audit event types of these operations.
DISCOVERY, HEALTH = "discovery", "health"

_QUIET = nullcontext()  # what an operation runs in when nobody audits it


class DiscoveryMixin(ClientPipeline):
    """What the gateway offers. Mixed into :class:`GatewayClient`."""

    def health(self, *, timeout: float | Timeouts | None = None) -> Health:
        """``GET /health``. An unhealthy gateway (503 with a health body) is a result, not an
        error, and is not retried; a 503 without one raises :class:`ServiceUnavailableError`."""
        deadline = self._deadline(timeout)
        audit = self._audit("health", HEALTH)
        with audit or _QUIET:
            return self._health(deadline, audit)

    def _health(self, deadline: Deadline, audit: Operation | None) -> Health:
        # Parsed inside the breaker: a malformed answer counts as the gateway's failure.
        return self._exchange("GET", "/health", self._read_health, server=None,
                              deadline=deadline, accept_statuses=frozenset({503}), audit=audit)

    def _read_health(self, response: Response) -> Health:
        if response.status_code == 200:
            return _parse(Health.from_dict, response.data, "health", "/health")
        try:
            return Health.from_dict(response.data)
        except ValueError:
            raise ServiceUnavailableError(
                "gateway unavailable (503) without a health report", status_code=503,
                method="GET", url=self.base_url + "/health", attempts=response.attempts,
            ) from None

    def list_servers(
        self, *, page: int = 1, page_size: int = 100, timeout: float | Timeouts | None = None
    ) -> list[ServerInfo]:
        """One page of registered servers (``page`` 1..1,000,000, ``page_size`` 1..1000)."""
        page, page_size = validate_page(page, page_size)
        deadline = self._deadline(timeout)
        audit = self._audit("list_servers")
        with audit or _QUIET:
            items, _, _ = self._page("/api/v1/servers", "servers", ServerInfo.from_dict,
                                     (page - 1) * page_size, page_size, deadline, audit=audit)
        return items

    def iter_servers(
        self, *, page_size: int = 100, timeout: float | Timeouts | None = None
    ) -> Iterator[ServerInfo]:
        """Every registered server, fetched page by page (each page has its own deadline)."""
        _, page_size = validate_page(1, page_size)
        timeout = self._timeouts(timeout)  # checked now, not at the first page
        audit = self._audit("iter_servers", lazy=True)

        def fetch(offset: int) -> tuple[list[ServerInfo], int, int]:
            with audit or _QUIET:
                deadline = self._deadline(timeout)
                return self._page("/api/v1/servers", "servers", ServerInfo.from_dict, offset,
                                  page_size, deadline, audit=audit)

        return audited_items(paginate(fetch, key=lambda s: s.server_id or s.server_name,
                                      where="/api/v1/servers"), audit)

    def get_server(self, name: str, *, timeout: float | Timeouts | None = None) -> ServerInfo:
        """One server by name; :class:`NotFoundError` if the gateway does not know it."""

        name = validate_name(name, "server")
        deadline = self._deadline(timeout)
        audit = self._audit("get_server", server=name)
        with audit or _QUIET:
            return self._get_server(name, deadline, audit=audit)

    def _get_server(self, name: str, deadline: Deadline, *, audit: Operation | None = None
                    ) -> ServerInfo:
        def read(response: Response) -> ServerInfo:
            try:
                return ServerInfo.from_dict(response.data)
            except ValueError as exc:
                raise ProtocolError(f"malformed server response from {name}: {exc}",
                                    server=name) from None

        return self._exchange("GET", f"/api/v1/servers/{quote(name, safe='')}", read,
                              server=name, deadline=deadline, audit=audit)

    def list_tools(
        self, server: str | None = None, *, page: int = 1, page_size: int = 100,
        timeout: float | Timeouts | None = None,
    ) -> list[ToolInfo]:
        """One page of tools, of one server or of all gateway servers. For a local server the
        page is cut from its whole ``tools/list``."""
        if server is not None:
            server = validate_name(server, "server")
        page, page_size = validate_page(page, page_size)
        deadline = self._deadline(timeout)
        local = self._local(server)
        audit = self._audit("list_tools", server=server,
                            transport="http" if local is None else "stdio")
        with audit or _QUIET:
            if local is not None and server is not None:
                start = (page - 1) * page_size
                return local.list_tools(server, deadline)[start:start + page_size]
            items, _, _ = self._tool_page(server, (page - 1) * page_size, page_size, deadline,
                                          audit=audit)
        return items

    def iter_tools(
        self, server: str | None = None, *, page_size: int = 100,
        timeout: float | Timeouts | None = None,
    ) -> Iterator[ToolInfo]:
        """Every tool, of one server or of all gateway servers, fetched page by page."""
        if server is not None:
            server = validate_name(server, "server")
        _, page_size = validate_page(1, page_size)
        timeout = self._timeouts(timeout)  # checked now, not at the first page
        local = self._local(server)
        if local is not None and server is not None:
            with self._audit("iter_tools", server=server, transport="stdio") or _QUIET:
                return iter(local.list_tools(server, self._deadline(timeout)))
        audit = self._audit("iter_tools", server=server, lazy=True)

        def fetch(offset: int) -> tuple[list[ToolInfo], int, int]:
            with audit or _QUIET:
                deadline = self._deadline(timeout)
                return self._tool_page(server, offset, page_size, deadline, audit=audit)

        return audited_items(paginate(fetch, key=lambda t: (t.server_name, t.tool_name),
                                      where="/api/v1/tools"), audit)

    def _audit(self, name: str, event_type: str = DISCOVERY, *, server: str | None = None,
               transport: str = "http", lazy: bool = False) -> Operation | None:
        return self._governance.operation(name, event_type, transport, server=server,
                                          lazy=lazy)

    def _tool_page(
        self, server: str | None, offset: int, limit: int, deadline: Deadline, *,
        audit: Operation | None = None,
    ) -> tuple[list[ToolInfo], int, int]:
        extra = {"server": server} if server is not None else {}
        page = self._page("/api/v1/tools", "tools", ToolInfo.from_dict, offset, limit, deadline,
                          server=server, extra=extra, audit=audit)
        remembered = self._retry_safe_tools
        if len(remembered) > MAX_REMEMBERED_TOOLS:
            remembered.clear()
        for info in page[0]:
            remembered[(info.server_name, info.tool_name)] = info.annotations.retry_safe
        return page

    def _page(
        self, path: str, key: str, parse: Callable[[object], T], offset: int, limit: int,
        deadline: Deadline, *, server: str | None = None, extra: Mapping[str, str] | None = None,
        audit: Operation | None = None,
    ) -> tuple[list[T], int, int]:
        params: dict[str, Any] = {"offset": offset, "limit": limit, **(extra or {})}
        return self._exchange(
            "GET", path, lambda response: parse_page(response.data, key, parse, offset, path),
            server=server, deadline=deadline, params=params, audit=audit)


def _parse(parse: Callable[[object], T], data: object, what: str, where: str) -> T:
    try:
        return parse(data)
    except ValueError as exc:
        raise ProtocolError(f"malformed {what} response from {where}: {exc}") from None
