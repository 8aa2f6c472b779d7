"""Values that cross the API: what the gateway describes and what a call returns.

Every model parses leniently and forward-compatibly, as the gateway contract asks: unknown
fields are ignored, missing optional fields take their defaults, and a value of the wrong type
for a required field raises ``ValueError`` naming the field, so that one malformed item can be
skipped while the rest of a page is kept. Models are frozen: safe to share between threads
and to cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._config import Timeouts
from ._exceptions import ConfigurationError, ToolExecutionError, ValidationError
from ._redact import redact
from ._validation import (
    integer,
    mapping,
    object_of,
    string,
    strings,
    timestamp,
    validate_header_value,
    validate_name,
)

__all__ = ["Event", "Health", "Principal", "ServerInfo", "ToolAnnotations", "ToolCall",
           "ToolInfo", "ToolResult"]


@dataclass(frozen=True)
class Health:
    """``GET /health``: ``status`` is ``"healthy"`` or what the gateway reports instead."""

    status: str
    version: str | None = None
    servers: int = 0

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"

    @classmethod
    def from_dict(cls, data: object) -> Health:
        obj = mapping(data, "health")
        return cls(status=string(obj, "status", required=True), version=string(obj, "version"),
                   servers=integer(obj, "servers"))


@dataclass(frozen=True)
class ServerInfo:
    """An MCP server registered with the gateway."""

    server_name: str
    server_id: str | None = None
    server_url: str | None = None
    transport: str = "http"
    sensitivity_level: str = "medium"
    authorized_teams: tuple[str, ...] = ()
    health_status: str = "unknown"
    tools_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.server_name

    @classmethod
    def from_dict(cls, data: object) -> ServerInfo:
        obj = mapping(data, "server")
        return cls(
            server_name=string(obj, "server_name", required=True),
            server_id=string(obj, "server_id"),
            server_url=string(obj, "server_url"), transport=string(obj, "transport", "http"),
            sensitivity_level=string(obj, "sensitivity_level", "medium"),
            authorized_teams=strings(obj, "authorized_teams"),
            health_status=string(obj, "health_status", "unknown"),
            tools_count=integer(obj, "tools_count"), created_at=timestamp(obj, "created_at"),
            updated_at=timestamp(obj, "updated_at"))


@dataclass(frozen=True)
class ToolAnnotations:
    """MCP ``ToolAnnotations``: hints, not guarantees (the retry layer trusts only the
    idempotency hints, and only because the gateway owner declared them)."""

    title: str | None = None
    read_only_hint: bool = False
    destructive_hint: bool = True
    idempotent_hint: bool = False
    open_world_hint: bool = True

    @property
    def retry_safe(self) -> bool:
        return self.read_only_hint or self.idempotent_hint

    def to_dict(self) -> dict[str, Any]:
        """The MCP JSON form, every hint present (defaults included); ``title`` if set."""
        hints: dict[str, Any] = {"title": self.title} if self.title is not None else {}
        hints.update(readOnlyHint=self.read_only_hint, destructiveHint=self.destructive_hint,
                     idempotentHint=self.idempotent_hint, openWorldHint=self.open_world_hint)
        return hints

    @classmethod
    def from_dict(cls, data: object) -> ToolAnnotations:
        if data is None:
            return cls()
        obj = mapping(data, "annotations")

        def flag(key: str, default: bool) -> bool:
            value = obj.get(key)
            if value is None:
                return default
            if not isinstance(value, bool):
                raise ValueError(f"annotation {key!r} must be a boolean")
            return value

        return cls(
            title=string(obj, "title"),
            read_only_hint=flag("readOnlyHint", False),
            destructive_hint=flag("destructiveHint", True),
            idempotent_hint=flag("idempotentHint", False),
            open_world_hint=flag("openWorldHint", True),
        )


@dataclass(frozen=True)
class ToolInfo:
    """A tool an MCP server offers, with its MCP ``inputSchema`` and annotations."""

    tool_name: str
    server_name: str
    description: str = ""
    sensitivity_level: str = "medium"
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    annotations: ToolAnnotations = field(default_factory=ToolAnnotations)
    sensitive_params: tuple[str, ...] = ()
    title: str | None = None
    output_schema: Mapping[str, Any] | None = None
    icons: tuple[Mapping[str, Any], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.tool_name

    def to_dict(self) -> dict[str, Any]:
        """The gateway JSON form :meth:`from_dict` reads back; the MCP-only fields (title,
        output_schema, icons, meta) only when set, so older readers see what they knew."""
        data: dict[str, Any] = {
            "tool_name": self.tool_name, "server_name": self.server_name,
            "description": self.description, "sensitivity_level": self.sensitivity_level,
            "input_schema": dict(self.input_schema), "annotations": self.annotations.to_dict(),
            "sensitive_params": list(self.sensitive_params)}
        optional = {"title": self.title, "output_schema": self.output_schema,
                    "icons": [dict(i) for i in self.icons] or None, "meta": self.meta or None}
        data.update((key, value) for key, value in optional.items() if value is not None)
        return data

    @classmethod
    def from_dict(cls, data: object) -> ToolInfo:
        """The gateway form (MCP's ``title``, ``outputSchema``, ``icons``, ``_meta`` as
        ``title``, ``output_schema``, ``icons``, ``meta``, each optional); a field of the wrong
        type raises ``ValueError``, so that the listing skips the tool as for any other."""
        obj = mapping(data, "tool")
        icons = obj.get("icons")
        if icons is not None and not (isinstance(icons, list) and all(
                isinstance(i, Mapping) and isinstance(i.get("src"), str) for i in icons)):
            raise ValueError("field 'icons' must be a list of objects with a string 'src'")
        return cls(
            tool_name=string(obj, "tool_name", required=True),
            server_name=string(obj, "server_name", required=True),
            description=string(obj, "description", ""), title=string(obj, "title"),
            sensitivity_level=string(obj, "sensitivity_level", "medium"),
            input_schema=object_of(obj, "input_schema") or {},
            annotations=ToolAnnotations.from_dict(obj.get("annotations")),
            sensitive_params=strings(obj, "sensitive_params"),
            output_schema=object_of(obj, "output_schema"),
            icons=tuple(dict(i) for i in icons or ()),
            meta=object_of(obj, "meta") or {},
        )


@dataclass(frozen=True, repr=False)
class Event:
    """One event of :meth:`GatewayClient.stream_events`.

    ``id`` is the event's id as sent (a string, as SSE ids are; the gateway's are increasing
    integers), or the id of the last event that had one, as the SSE spec says; ``type`` the
    ``event:`` field (``"message"`` when absent); ``data`` the decoded JSON of the ``data:``
    lines, or their text when it is not JSON; ``retry`` the reconnection time in ms this event
    set, if any. The type ``stream_reset`` means events were lost before this one: the
    gateway no longer had the ones after the id the stream resumed from.
    """

    id: str | None
    type: str
    data: Any
    retry: int | None = None

    def __repr__(self) -> str:
        return (f"Event(id={self.id!r}, type={self.type!r}, data={redact(self.data)!r}"
                + (f", retry={self.retry}" if self.retry is not None else "") + ")")


@dataclass(frozen=True)
class Principal:
    """Who a call is made for: the end user behind ``user_token``, as the client's authorizer
    sees them (``GatewayClient(authorizer=...)``); the gateway decides from the verified token."""

    id: str
    roles: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "roles": list(self.roles), "teams": list(self.teams)}


@dataclass(frozen=True, repr=False)
class ToolCall:
    """One call for :meth:`GatewayClient.invoke_many`, with the arguments of
    :meth:`GatewayClient.invoke_tool`. ``user_token`` and sensitive parameter values are hidden
    in the repr."""

    server: str
    tool: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    user_token: str | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    principal: Principal | None = None

    def __post_init__(self) -> None:
        # Checked where the call is built, not when invoke_many reaches it; never quoting a
        # header value (the token and the key may be secrets).
        validate_name(self.server, "server")
        validate_name(self.tool, "tool")
        if self.user_token is not None:
            validate_header_value(self.user_token, "user_token")
        if self.idempotency_key is not None:
            validate_header_value(self.idempotency_key, "idempotency_key")
        if self.parameters is not None and not isinstance(self.parameters, Mapping):
            raise ValidationError(
                f"parameters must be a mapping, not {type(self.parameters).__name__}")
        if self.timeout is not None:
            try:
                Timeouts.coerce(self.timeout)
            except ConfigurationError as exc:
                raise ValidationError(exc.message) from None
        if self.principal is not None and not isinstance(self.principal, Principal):
            raise ValidationError(
                f"principal must be a Principal, not {type(self.principal).__name__}")

    def __repr__(self) -> str:
        token = ", user_token=[secure]" if self.user_token else ""
        return (f"ToolCall(server={self.server!r}, tool={self.tool!r}, "
                f"parameters={redact(self.parameters)!r}{token})")


_new_object = object.__new__
_set_attribute = object.__setattr__


@dataclass(frozen=True, repr=False)
class ToolResult:
    """What a tool call returned. An MCP tool error (``is_error``) is a result, not an
    exception; :meth:`raise_for_error` turns it into :class:`ToolExecutionError`.

    ``content`` holds MCP content blocks (``{"type": "text", "text": ...}``, ...);
    ``structured`` the ``structuredContent`` object, if any; ``filtered`` the parameter keys
    a policy removed: first those the client's authorizer removed (paths like ``"password"``,
    ``"db.password"``, ``"items[0].token"``), then those the gateway reported; ``attempts``
    how many requests the call took.
    """

    content: tuple[Mapping[str, Any], ...]
    structured: Mapping[str, Any] | None = None
    is_error: bool = False
    request_id: str | None = None
    server: str = ""
    tool: str = ""
    latency_ms: float = 0.0
    attempts: int = 1
    filtered: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The text blocks of ``content`` joined by newlines."""
        return "\n".join(
            str(block.get("text", "")) for block in self.content if block.get("type") == "text"
        )

    def json(self) -> Any:
        """``structured`` if the tool sent it, else the text content parsed as JSON."""
        if self.structured is not None:
            return self.structured
        text = self.text
        try:
            return json.loads(text)
        except RecursionError:  # a ValueError like any other undecodable text
            raise json.JSONDecodeError("nested too deeply to decode", text, 0) from None

    def raise_for_error(self) -> ToolResult:
        """Raise :class:`ToolExecutionError` if the tool reported an error; else return self."""
        if self.is_error:
            first_line = self.text.strip().splitlines()[0][:200] if self.text.strip() else ""
            raise ToolExecutionError(
                f"tool {self.server}/{self.tool} reported an error: {first_line or 'no message'}",
                result=self, server=self.server, tool=self.tool, request_id=self.request_id,
            )
        return self

    def __repr__(self) -> str:
        return (f"<ToolResult {self.server}/{self.tool} is_error={self.is_error} "
                f"blocks={len(self.content)} request_id={self.request_id} "
                f"latency_ms={self.latency_ms:.1f} attempts={self.attempts}>")

    @classmethod
    def from_invoke_response(
        cls, data: object, *, server: str, tool: str, latency_ms: float, attempts: int
    ) -> ToolResult:
        """Build from a ``POST /api/v1/invoke`` body; raises ``ValueError`` if malformed."""
        obj = mapping(data, "invoke response")
        return cls.from_call_result(
            obj.get("result"), server=string(obj, "server", server), tool=string(obj, "tool", tool),
            latency_ms=latency_ms, attempts=attempts, request_id=string(obj, "request_id"),
            filtered=strings(obj, "filtered"),
        )

    @classmethod
    def from_call_result(
        cls, data: object, *, server: str, tool: str, latency_ms: float, attempts: int = 1,
        request_id: str | None = None, filtered: tuple[str, ...] = (),
    ) -> ToolResult:
        """Build from an MCP ``CallToolResult``; raises ``ValueError`` if malformed. Once per
        call on every path: without the frozen dataclass's ``__init__`` (nine
        ``object.__setattr__``), a ``dict`` checked before the ``Mapping`` ABC."""
        result = data if type(data) is dict else mapping(data, "field 'result'")
        content = result.get("content", [])
        if not isinstance(content, list):
            raise ValueError("field 'result.content' must be a list of objects")
        for block in content:
            if type(block) is not dict and not isinstance(block, Mapping):
                raise ValueError("field 'result.content' must be a list of objects")
        structured = result.get("structuredContent")
        if structured is not None and not isinstance(structured, Mapping):
            raise ValueError("field 'result.structuredContent' must be an object")
        is_error = result.get("isError", False)
        if not isinstance(is_error, bool):
            raise ValueError("field 'result.isError' must be a boolean")
        answer = _new_object(cls)
        _set_attribute(answer, "__dict__", {
            "content": tuple(content), "structured": structured, "is_error": is_error,
            "request_id": request_id, "server": server, "tool": tool,
            "latency_ms": latency_ms, "attempts": attempts, "filtered": filtered})
        return answer
