"""What an MCP server may ask of its client, and what the client answers: typed values.

A server may ask the client to sample its LLM (``sampling/createMessage``), to ask the user
for input (``elicitation/create``) and for the directories it may work in (``roots/list``).
Until 2025-11-25 it sends these as JSON-RPC requests of its own; at 2026-07-28 it answers a
``tools/call`` (``prompts/get``, ``resources/read``) with ``resultType: "input_required"``
and the client retries with the answers. Either way the user's handler sees the same request
object here and returns the same result: a typed one or a plain dict in the spec's shape.

The requests come from the peer: ``from_params`` checks every field it keeps (types, sizes)
and raises ``ValueError`` for what is malformed (the session answers -32602, invalid params).
The results come from user code: their constructors raise :class:`ValidationError`.
Every value is frozen; ``raw`` keeps the params as the server sent them, for what is not
modelled (``_meta``, tools of sampling ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from ._exceptions import ValidationError

__all__ = [
    "ElicitationRequest", "ElicitationResult", "Root", "RootsRequest", "SamplingMessage",
    "SamplingRequest", "SamplingResult",
]

#: Messages of one sampling request kept at most (a server asking for more is refused).
MAX_MESSAGES = 1000
#: Characters of any one string field kept at most (a prompt, a schema's message ...).
MAX_TEXT = 1_000_000
#: The roles of a sampling message.
ROLES = ("user", "assistant")
#: The answers to an elicitation.
ACTIONS = ("accept", "decline", "cancel")
#: The modes of an elicitation: a form the client renders, or a URL the user visits.
MODES = ("form", "url")
#: The values of ``includeContext``.
CONTEXTS = ("none", "thisServer", "allServers")

Content = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]


def _text(value: object, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _object(value: object, what: str, *, optional: bool = False) -> Mapping[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    return value


def _content(value: object, what: str) -> Content:
    """A content block (an object with a string ``type``) or a list of them."""
    blocks: list[Mapping[str, Any]] = []
    for block in value if isinstance(value, (list, tuple)) else [value]:
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise ValueError(f"{what} must be a content block (an object with a type) or a "
                             "list of them")
        blocks.append(block)
    return tuple(blocks) if isinstance(value, (list, tuple)) else blocks[0]


@dataclass(frozen=True)
class SamplingMessage:
    """One message of a conversation to sample: ``role`` is ``"user"`` or ``"assistant"``,
    ``content`` a content block (``{"type": "text", "text": ...}``, an image ...) or a tuple
    of them."""

    role: str
    content: Content

    @classmethod
    def from_dict(cls, data: object) -> SamplingMessage:
        message = _object(data, "a sampling message")
        assert message is not None
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"a sampling message's role must be one of {', '.join(ROLES)}")
        return cls(role=str(role), content=_content(message.get("content"), "its content"))

    @property
    def text(self) -> str | None:
        """The text of a text content block (the first one of a list); None if it has none."""
        blocks = self.content if isinstance(self.content, tuple) else (self.content,)
        for block in blocks:
            if isinstance(block, Mapping) and block.get("type") == "text" \
                    and isinstance(block.get("text"), str):
                return str(block["text"])
        return None

    def to_dict(self) -> dict[str, Any]:
        content = self.content
        return {"role": self.role,
                "content": [dict(b) for b in content] if isinstance(content, tuple)
                else dict(content)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class SamplingRequest:
    """The server asks the client's LLM to continue ``messages`` (``sampling/createMessage``).
    ``server`` names the server that asks; ``raw`` is its params as sent."""

    messages: tuple[SamplingMessage, ...]
    max_tokens: int
    system_prompt: str | None = None
    temperature: float | None = None
    stop_sequences: tuple[str, ...] = ()
    model_preferences: Mapping[str, Any] | None = None
    include_context: str | None = None
    metadata: Mapping[str, Any] | None = None
    server: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_params(cls, params: object, server: str) -> SamplingRequest:
        """The request in ``params``; ``ValueError`` if they are malformed."""
        data = _object(params, "sampling/createMessage params")
        assert data is not None
        messages = data.get("messages")
        if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
            raise ValueError(f"messages must be a list of at most {MAX_MESSAGES} messages")
        max_tokens = data.get("maxTokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError("maxTokens must be an integer >= 1")
        temperature = data.get("temperature")
        if temperature is not None and (
                isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                or not math.isfinite(temperature)):
            raise ValueError("temperature must be a finite number")
        stops = data.get("stopSequences")
        if stops is not None and not (isinstance(stops, list) and len(stops) <= MAX_MESSAGES
                                      and all(isinstance(s, str) for s in stops)):
            raise ValueError("stopSequences must be a list of strings")
        context = data.get("includeContext")
        if context is not None and context not in CONTEXTS:
            raise ValueError(f"includeContext must be one of {', '.join(CONTEXTS)}")
        return cls(
            messages=tuple(SamplingMessage.from_dict(m) for m in messages),
            max_tokens=max_tokens,
            system_prompt=_text(data.get("systemPrompt"), "systemPrompt", optional=True),
            temperature=None if temperature is None else float(temperature),
            stop_sequences=tuple(stops or ()),
            model_preferences=_object(data.get("modelPreferences"), "modelPreferences",
                                      optional=True),
            include_context=context,
            metadata=_object(data.get("metadata"), "metadata", optional=True),
            server=server, raw=data)


@dataclass(frozen=True)
class SamplingResult:
    """What the LLM answered: ``content`` (a str is a text block), the ``model`` that
    answered, and why it stopped (``"endTurn"``, ``"stopSequence"``, ``"maxTokens"`` ...)."""

    content: str | Content
    model: str
    role: str = "assistant"
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise ValidationError("SamplingResult.model must be a str")
        if self.role not in ROLES:
            raise ValidationError(f"SamplingResult.role must be one of {', '.join(ROLES)}")
        if self.stop_reason is not None and not isinstance(self.stop_reason, str):
            raise ValidationError("SamplingResult.stop_reason must be a str or None")
        if not isinstance(self.content, str):
            try:
                object.__setattr__(self, "content", _content(self.content, "content"))
            except ValueError as exc:
                raise ValidationError(f"SamplingResult.content: {exc}") from None

    @classmethod
    def from_dict(cls, data: object) -> SamplingResult:
        """A ``CreateMessageResult`` dict as a handler may return it; ValidationError if it
        is not one."""
        if not isinstance(data, Mapping):
            raise ValidationError("a sampling result must be a SamplingResult or a dict")
        return cls(content=data.get("content"), model=data.get("model"),  # type: ignore[arg-type]
                   role=data.get("role", "assistant"), stop_reason=data.get("stopReason"))

    def to_dict(self) -> dict[str, Any]:
        content = self.content
        wire: Any = ({"type": "text", "text": content} if isinstance(content, str)
                     else [dict(b) for b in content] if isinstance(content, tuple)
                     else dict(content))  # type: ignore[arg-type]
        result = {"role": self.role, "content": wire, "model": self.model}
        if self.stop_reason is not None:
            result["stopReason"] = self.stop_reason
        return result


@dataclass(frozen=True)
class ElicitationRequest:
    """The server asks the user for input (``elicitation/create``): in ``"form"`` mode the
    fields of ``requested_schema`` (a flat JSON Schema object of strings, numbers, booleans
    and enums); in ``"url"`` mode to visit ``url`` (``elicitation_id`` names the
    exchange)."""

    message: str
    requested_schema: Mapping[str, Any]
    mode: str = "form"
    url: str | None = None
    elicitation_id: str | None = None
    server: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_params(cls, params: object, server: str) -> ElicitationRequest:
        data = _object(params, "elicitation/create params")
        assert data is not None
        mode = data.get("mode", "form")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        message = _text(data.get("message"), "message")
        assert message is not None
        if mode == "url":
            return cls(message=message, requested_schema={}, mode="url",
                       url=_text(data.get("url"), "url"),
                       elicitation_id=_text(data.get("elicitationId"), "elicitationId"),
                       server=server, raw=data)
        schema = _object(data.get("requestedSchema"), "requestedSchema")
        assert schema is not None
        if schema.get("type") != "object" or not isinstance(schema.get("properties", {}),
                                                            Mapping):
            raise ValueError("requestedSchema must be an object schema with properties")
        return cls(message=message, requested_schema=schema, server=server, raw=data)


ContentValue = Union[str, int, float, bool, Sequence[str], None]


@dataclass(frozen=True)
class ElicitationResult:
    """The user's answer: ``accept`` with ``content`` (the form's values), ``decline`` or
    ``cancel``. Build one with :meth:`accept`, :meth:`decline` or :meth:`cancel`."""

    action: str
    content: Mapping[str, ContentValue] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValidationError(f"ElicitationResult.action must be one of {', '.join(ACTIONS)}")
        if self.content is None:
            return
        if self.action != "accept":
            raise ValidationError("only an accepted elicitation has content")
        if not isinstance(self.content, Mapping):
            raise ValidationError("ElicitationResult.content must be a dict")
        for key, value in self.content.items():
            if not isinstance(key, str) or not (
                    value is None or isinstance(value, (str, int, float, bool))
                    or (isinstance(value, (list, tuple))
                        and all(isinstance(v, str) for v in value))):
                raise ValidationError("ElicitationResult.content maps str to a str, number, "
                                      "boolean or list of str")

    @classmethod
    def accept(cls, content: Mapping[str, ContentValue] | None = None) -> ElicitationResult:
        return cls("accept", dict(content) if content is not None else None)

    @classmethod
    def decline(cls) -> ElicitationResult:
        return cls("decline")

    @classmethod
    def cancel(cls) -> ElicitationResult:
        return cls("cancel")

    @classmethod
    def from_dict(cls, data: object) -> ElicitationResult:
        if not isinstance(data, Mapping):
            raise ValidationError("an elicitation result must be an ElicitationResult or a dict")
        return cls(data.get("action"), data.get("content"))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"action": self.action}
        if self.content is not None:
            result["content"] = {k: list(v) if isinstance(v, (list, tuple)) else v
                                 for k, v in self.content.items()}
        return result


@dataclass(frozen=True)
class Root:
    """A directory the client lets the server work in: a ``file://`` URI and an optional
    display name. ValidationError for any other URI."""

    uri: str
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.startswith("file://"):
            raise ValidationError("a root's uri must be a str starting with file://")
        if self.name is not None and not isinstance(self.name, str):
            raise ValidationError("a root's name must be a str or None")

    @classmethod
    def coerce(cls, value: object) -> Root:
        """A :class:`Root`, a URI string or a ``{"uri": ..., "name": ...}`` dict as a Root."""
        if isinstance(value, Root):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(value.get("uri"), value.get("name"))  # type: ignore[arg-type]
        raise ValidationError(f"a root must be a Root, a str or a dict, not "
                              f"{type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri} if self.name is None else {"uri": self.uri, "name": self.name}


@dataclass(frozen=True)
class RootsRequest:
    """The server asks for the client's roots (``roots/list``)."""

    server: str = ""

    @classmethod
    def from_params(cls, params: object, server: str) -> RootsRequest:
        if params is not None and not isinstance(params, Mapping):
            raise ValueError("roots/list params must be an object")
        return cls(server=server)
