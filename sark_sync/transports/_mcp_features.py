"""Resources, prompts and completion: what an MCP server offers besides tools.

:class:`McpFeatures` is the part of :class:`~._mcp_client.McpSession` that reads them; every
session (local over stdio, remote over Streamable HTTP or HTTP+SSE, at every protocol
version) has these methods. The rules they share:

- **Declared or not sent.** A server offers resources, prompts and completions only if it
  declared the ``resources``, ``prompts`` or ``completions`` capability; a method it did not
  declare raises :class:`CapabilityNotSupported` before anything is sent (it might answer
  -32601, or hang, or do something else: a request it never promised to handle is not sent).
  At 2024-11-05, before the ``completions`` capability existed, ``completion/complete`` is
  sent to a server that declared prompts or resources. A session not connected yet checks
  nothing and lets the channel say why it cannot send.
- **One deadline.** ``timeout`` (None: the session default) bounds the whole operation, every
  page of a listing included; for a lazy ``iter_*`` it runs from the call and includes the
  time the caller spends between pages.
- **Listings page by page.** ``*/list`` follows ``nextCursor`` for at most
  :data:`MAX_LIST_PAGES` pages; a cursor the server already sent (a loop) is a
  :class:`ProtocolError`. A malformed item of a listing is skipped with a warning; a malformed
  answer to ``resources/read``, ``prompts/get`` or ``completion/complete`` is a
  :class:`ProtocolError` (the values: :mod:`sark_sync._mcp_models`).
- **Versions.** The ``context`` of ``complete()`` is sent from 2025-06-18 on (older servers
  do not know it). At 2026-07-28 the channel adds the ``_meta`` envelope and the routing
  headers, ``Mcp-Name`` being the prompt's name for ``prompts/get`` and the URI for
  ``resources/read`` (:func:`._mcp_modern.routing_headers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable, TypeVar, Union

from .._exceptions import CapabilityNotSupported, ProtocolError, ValidationError
from .._mcp_models import (
    Completion,
    Prompt,
    PromptResult,
    Resource,
    ResourceResult,
    ResourceTemplate,
)
from ._base import MessageChannel

__all__ = ["CONTEXT_SINCE", "MAX_LIST_PAGES", "CompletionRef", "McpFeatures"]

log = logging.getLogger("sark_sync.mcp")

#: Pages of a ``*/list`` followed at most (as for ``tools/list``).
MAX_LIST_PAGES = 1000
#: The first protocol version whose ``completion/complete`` takes a ``context``.
CONTEXT_SINCE = "2025-06-18"
#: The version before the ``completions`` capability existed.
FIRST_VERSION = "2024-11-05"

T = TypeVar("T")
#: What ``complete()`` completes for: a prompt, a resource template, or the MCP reference.
CompletionRef = Union[Prompt, ResourceTemplate, Mapping[str, Any]]


class McpFeatures:
    """Resources, prompts and completion over the session's channel (a mixin of
    ``McpSession``, which provides the attributes below)."""

    name: str
    kind: str
    protocol_version: str | None
    capabilities: Mapping[str, Any]
    _channel: MessageChannel
    #: The seconds a request may take (``McpSession._timeout``: the session's default for None).
    _timeout: Callable[[float | None], float]

    # -- resources -------------------------------------------------------------------------

    def list_resources(self, *, timeout: float | None = None) -> list[Resource]:
        """Every resource the server lists (``resources/list``, all pages).

        :raises CapabilityNotSupported: the server did not declare ``resources``.
        """
        return list(self.iter_resources(timeout=timeout))

    def iter_resources(self, *, timeout: float | None = None) -> Iterator[Resource]:
        """The server's resources, one page requested at a time as the iteration reaches it
        (for a server with very many). ``timeout`` bounds the whole iteration from this call.

        :raises CapabilityNotSupported: at once, if the server did not declare ``resources``.
        """
        seconds = self._checked_timeout("resources", "resources/list", timeout)
        return self._list_items("resources/list", "resources", Resource.from_dict, seconds)

    def list_resource_templates(self, *, timeout: float | None = None
                                ) -> list[ResourceTemplate]:
        """Every resource template of the server (``resources/templates/list``, all pages).

        :raises CapabilityNotSupported: the server did not declare ``resources``.
        """
        seconds = self._checked_timeout("resources", "resources/templates/list", timeout)
        return list(self._list_items("resources/templates/list", "resourceTemplates",
                                  ResourceTemplate.from_dict, seconds))

    def read_resource(self, uri: str, *, timeout: float | None = None) -> ResourceResult:
        """Read the resource at ``uri`` (a listed one, or a template filled in).

        :raises ValidationError: ``uri`` is not a non-empty string.
        :raises CapabilityNotSupported: the server did not declare ``resources``.
        :raises RPCError: the server refused (e.g. -32002, resource not found).
        :raises ProtocolError: the answer is malformed (a blob that is not base64 ...).
        """
        if not isinstance(uri, str) or not uri:
            raise ValidationError("uri must be a non-empty str")
        seconds = self._checked_timeout("resources", "resources/read", timeout)
        result = self._channel.request("resources/read", {"uri": uri}, seconds)
        return self._parse_result(ResourceResult.from_dict, result, "resources/read")

    # -- prompts ---------------------------------------------------------------------------

    def list_prompts(self, *, timeout: float | None = None) -> list[Prompt]:
        """Every prompt the server lists (``prompts/list``, all pages).

        :raises CapabilityNotSupported: the server did not declare ``prompts``.
        """
        return list(self.iter_prompts(timeout=timeout))

    def iter_prompts(self, *, timeout: float | None = None) -> Iterator[Prompt]:
        """The server's prompts, one page requested at a time (see :meth:`iter_resources`).

        :raises CapabilityNotSupported: at once, if the server did not declare ``prompts``.
        """
        seconds = self._checked_timeout("prompts", "prompts/list", timeout)
        return self._list_items("prompts/list", "prompts", Prompt.from_dict, seconds)

    def get_prompt(self, name: str, arguments: Mapping[str, str] | None = None, *,
                   timeout: float | None = None) -> PromptResult:
        """The messages of prompt ``name`` filled in with ``arguments`` (names to string
        values, as MCP prompt arguments are; None: none).

        :raises ValidationError: ``name`` is not a non-empty string, or ``arguments`` is not
            a mapping of strings to strings.
        :raises CapabilityNotSupported: the server did not declare ``prompts``.
        :raises RPCError: the server refused (unknown prompt, a required argument missing).
        """
        if not isinstance(name, str) or not name:
            raise ValidationError("prompt name must be a non-empty str")
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = _string_map(arguments, "arguments")
        seconds = self._checked_timeout("prompts", "prompts/get", timeout)
        result = self._channel.request("prompts/get", params, seconds)
        return self._parse_result(PromptResult.from_dict, result, "prompts/get")

    # -- completion ------------------------------------------------------------------------

    def complete(self, ref: CompletionRef, argument: str, value: str,
                 context: Mapping[str, str] | None = None, *,
                 timeout: float | None = None) -> Completion:
        """Values the server suggests for ``argument`` of a prompt or resource template,
        given what the user typed so far (``value``).

        ``ref`` is a :class:`Prompt`, a :class:`ResourceTemplate`, or the MCP reference
        (``{"type": "ref/prompt", "name": ...}`` or ``{"type": "ref/resource", "uri": ...}``).
        ``context`` maps the arguments already filled in to their values; it is sent from
        protocol 2025-06-18 on and left out for older servers, which do not know it.

        :raises ValidationError: a bad ``ref``, ``argument``, ``value`` or ``context``.
        :raises CapabilityNotSupported: the server did not declare ``completions`` (at
            2024-11-05: neither prompts nor resources).
        """
        params: dict[str, Any] = {"ref": _reference(ref)}
        if not isinstance(argument, str) or not argument:
            raise ValidationError("argument must be a non-empty str")
        if not isinstance(value, str):
            raise ValidationError("value must be a str")
        params["argument"] = {"name": argument, "value": value}
        if context is not None:
            resolved = _string_map(context, "context")
            if self.protocol_version is None or self.protocol_version >= CONTEXT_SINCE:
                params["context"] = {"arguments": resolved}
        capability = "completions"
        if self.protocol_version == FIRST_VERSION and not self._declares(capability):
            capability = next((c for c in ("prompts", "resources") if self._declares(c)),
                              capability)
        seconds = self._checked_timeout(capability, "completion/complete", timeout)
        result = self._channel.request("completion/complete", params, seconds)
        return self._parse_result(Completion.from_dict, result, "completion/complete")

    # -- shared ----------------------------------------------------------------------------

    def _declares(self, capability: str) -> bool:
        value = self.capabilities.get(capability)
        return value is not None and value is not False

    def _checked_timeout(self, capability: str, method: str, timeout: float | None) -> float:
        """The seconds an operation may take, after checking that the server declared
        ``capability`` (a session not connected yet is not checked: its channel refuses)."""
        seconds = self._timeout(timeout)
        if self.protocol_version is not None and not self._declares(capability):
            raise CapabilityNotSupported(
                f"{self.kind} {self.name!r} does not declare the {capability!r} capability: "
                f"{method} was not sent", capability=capability, method=method,
                server=self.name)
        return seconds

    def _list_items(self, method: str, key: str, parse: Callable[[object, str], T],
                 seconds: float) -> Iterator[T]:
        """The parsed items of every page, within ``seconds`` from now (this call, not the
        first ``next()``: the iterator is a generator started here)."""
        return self._parse_items(method, parse, self._list_pages(method, key,
                                                        time.monotonic() + seconds))

    def _parse_items(self, method: str, parse: Callable[[object, str], T],
                items: Iterator[Any]) -> Iterator[T]:
        for item in items:
            try:
                yield parse(item, self.name)
            except ValueError as exc:
                log.warning("skipping malformed item of %s from %s: %s", method, self.name, exc)

    def _list_pages(self, method: str, key: str, deadline: float) -> Iterator[Any]:
        """The items of every page of ``method``, following ``nextCursor``."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            page = self._channel.request(method, {"cursor": cursor} if cursor else None,
                                         _left(deadline))
            items = page.get(key) if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                raise ProtocolError(f"{self.name!r} answered {method} without a {key} list",
                                    server=self.name)
            assert isinstance(page, Mapping)
            yield from items
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return
            if cursor in seen:
                raise ProtocolError(f"{self.name!r} sent a {method} cursor it had sent before "
                                    "(the pages loop)", server=self.name)
            seen.add(cursor)
        raise ProtocolError(f"{self.name!r} returned more than {MAX_LIST_PAGES} {method} pages",
                            server=self.name)

    def _parse_result(self, parse: Callable[[object, str], T], result: Any, method: str) -> T:
        try:
            return parse(result, self.name)
        except ValueError as exc:
            raise ProtocolError(f"malformed {method} result from {self.name!r}: {exc}",
                                server=self.name) from None


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _string_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationError(f"{what} must be a mapping of str to str")
    return dict(value)


def _reference(ref: object) -> dict[str, str]:
    """The MCP reference ``complete()`` sends for ``ref``."""
    if isinstance(ref, Prompt):
        return {"type": "ref/prompt", "name": ref.name}
    if isinstance(ref, ResourceTemplate):
        return {"type": "ref/resource", "uri": ref.uri_template}
    if isinstance(ref, Mapping):
        kind = ref.get("type")
        key = {"ref/prompt": "name", "ref/resource": "uri"}.get(kind) \
            if isinstance(kind, str) else None
        target = ref.get(key) if key is not None else None
        if key is not None and isinstance(target, str) and target:
            return {"type": str(kind), key: target}
    raise ValidationError('ref must be a Prompt, a ResourceTemplate, {"type": "ref/prompt", '
                          '"name": ...} or {"type": "ref/resource", "uri": ...}')
