"""Discovery requests of the client: health, servers, tools, and a server's metadata.

Functions over the :class:`~._pipeline.Pipeline`, called by :class:`GatewayClient`'s public
methods and by the governance stage (which needs a server's metadata for the authorizer's
input). Each request runs the pipeline's breaker -> retry -> transport; the answer is parsed
inside the breaker, so a malformed one counts as the server's failure. Listings are lenient (a
malformed item is skipped with a warning) and iterators hold one page at a time.
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
from ..governance import Operation, audited_items
from ..transports import LocalServerPool, RemoteServerPool, Response
from ..wire import paginate, parse_page
from ._governance_stage import Metadata
from ._pipeline import MAX_REMEMBERED_TOOLS, Pipeline

__all__ = ["get_server", "health", "iter_pages", "iter_tools", "list_tools", "page",
           "server_metadata", "tool_page"]

T = TypeVar("T")

#: Tools asked per page when fetching a server's metadata.
TOOLS_PAGE = 1_000
SERVERS, TOOLS = "/api/v1/servers", "/api/v1/tools"


def health(pipeline: Pipeline, deadline: Deadline, audit: Operation | None) -> Health:
    """``GET /health``: a 503 with a health body is a result (not retried, not an error)."""

    def read(response: Response) -> Health:
        if response.status_code == 200:
            return _parse(Health.from_dict, response.data, "health", "/health")
        try:
            return Health.from_dict(response.data)
        except ValueError:
            raise ServiceUnavailableError(
                "gateway unavailable (503) without a health report", status_code=503,
                method="GET", url=pipeline.base_url + "/health", attempts=response.attempts,
            ) from None

    return pipeline.request("GET", "/health", read, server=None, deadline=deadline,
                            accept_statuses=frozenset({503}), audit=audit)


def get_server(pipeline: Pipeline, name: str, deadline: Deadline, *,
               audit: Operation | None = None) -> ServerInfo:
    def read(response: Response) -> ServerInfo:
        try:
            return ServerInfo.from_dict(response.data)
        except ValueError as exc:
            raise ProtocolError(f"malformed server response from {name}: {exc}",
                                server=name) from None

    return pipeline.request("GET", f"{SERVERS}/{quote(name, safe='')}", read, server=name,
                            deadline=deadline, audit=audit)


def page(
    pipeline: Pipeline, path: str, key: str, parse: Callable[[object], T], offset: int,
    limit: int, deadline: Deadline, *, server: str | None = None,
    extra: Mapping[str, str] | None = None, audit: Operation | None = None,
) -> tuple[list[T], int, int]:
    """One page of a listing: its items, the total and the next offset."""
    params: dict[str, Any] = {"offset": offset, "limit": limit, **(extra or {})}
    return pipeline.request(
        "GET", path, lambda response: parse_page(response.data, key, parse, offset, path),
        server=server, deadline=deadline, params=params, audit=audit)


def tool_page(pipeline: Pipeline, server: str | None, offset: int, limit: int,
              deadline: Deadline, *, audit: Operation | None = None
              ) -> tuple[list[ToolInfo], int, int]:
    """One page of tools; their annotations are remembered (a read-only or idempotent tool is
    safe to retry without an idempotency key)."""
    extra = {"server": server} if server is not None else {}
    found = page(pipeline, TOOLS, "tools", ToolInfo.from_dict, offset, limit, deadline,
                 server=server, extra=extra, audit=audit)
    remembered = pipeline.retry_safe
    if len(remembered) > MAX_REMEMBERED_TOOLS:
        remembered.clear()
    for info in found[0]:
        remembered[(info.server_name, info.tool_name)] = info.annotations.retry_safe
    return found


def iter_pages(pipeline: Pipeline, server: str | None, page_size: int, timeout: Timeouts,
               audit: Operation | None, *, tools: bool) -> Iterator[Any]:
    """Every server (``tools=False``) or tool, page by page, each page with its own deadline;
    one audit event for the whole walk."""

    def fetch(offset: int) -> tuple[list[Any], int, int]:
        with audit or nullcontext():
            deadline = pipeline.deadline(timeout)
            if tools:
                return tool_page(pipeline, server, offset, page_size, deadline, audit=audit)
            return page(pipeline, SERVERS, "servers", ServerInfo.from_dict, offset, page_size,
                        deadline, audit=audit)

    if tools:
        key: Callable[[Any], object] = lambda t: (t.server_name, t.tool_name)  # noqa: E731
    else:
        key = lambda s: s.server_id or s.server_name  # noqa: E731
    return audited_items(paginate(fetch, key=key, where=TOOLS if tools else SERVERS), audit)


def list_tools(pipeline: Pipeline, server: str | None, page: int, page_size: int,
               deadline: Deadline) -> list[ToolInfo]:
    """One audited page of tools: a gateway page, or a slice of a local server's list."""
    local = pipeline.local(server)
    audit = pipeline.operation("list_tools", server=server, transport=transport_of(local))
    with audit or nullcontext():
        start = (page - 1) * page_size
        if local is not None and server is not None:
            return local.list_tools(server, deadline)[start:start + page_size]
        found, _, _ = tool_page(pipeline, server, start, page_size, deadline, audit=audit)
    return found


def iter_tools(pipeline: Pipeline, server: str | None, page_size: int, timeout: Timeouts
               ) -> Iterator[ToolInfo]:
    """Every tool: the gateway's page by page, or a local server's whole list at once."""
    local = pipeline.local(server)
    if local is not None and server is not None:
        with pipeline.operation("iter_tools", server=server, transport=transport_of(local)) \
                or nullcontext():
            return iter(local.list_tools(server, pipeline.deadline(timeout)))
    audit = pipeline.operation("iter_tools", server=server, lazy=True)
    return iter_pages(pipeline, server, page_size, timeout, audit, tools=True)


def server_metadata(pipeline: Pipeline, server: str, local: bool, deadline: Deadline
                    ) -> Metadata:
    """A server's metadata for the authorizer: the gateway's catalogue (the server and all
    its tools), or a local server's tool list (sensitivity ``"medium"``, no teams)."""
    pool = pipeline.local(server) if local else None
    if pool is not None:
        listed = pool.list_tools(server, deadline)
        return ServerInfo(server_name=server, transport="stdio"), {t.name: t for t in listed}
    info = get_server(pipeline, server, deadline)
    listing = paginate(
        lambda offset: tool_page(pipeline, server, offset, TOOLS_PAGE, deadline),
        key=lambda t: t.tool_name)
    return info, {t.tool_name: t for t in listing if t.server_name == server}


def transport_of(pool: LocalServerPool | RemoteServerPool | None) -> str:
    """What the audit calls the way to a server: its pool's transport, or the gateway's."""
    if pool is None:
        return "http"
    return "mcp-http" if isinstance(pool, RemoteServerPool) else "stdio"


def _parse(parse: Callable[[object], T], data: object, what: str, where: str) -> T:
    try:
        return parse(data)
    except ValueError as exc:
        raise ProtocolError(f"malformed {what} response from {where}: {exc}") from None
