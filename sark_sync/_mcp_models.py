"""What an MCP server offers besides tools: resources, prompts and completions, as values.

Each class mirrors one object of the MCP schema (``Resource``, ``ResourceTemplate``,
``TextResourceContents``/``BlobResourceContents``, ``Prompt``, ``PromptArgument``,
``PromptMessage``, ``GetPromptResult``, ``Completion``) with snake_case fields, and reads it
with ``from_dict(item, server)``. Everything in it was sent by a peer, so ``from_dict``
checks every field it keeps: a field of the wrong type, a missing required field or a blob
that is not base64 raises ``ValueError`` naming the field and the server. The caller decides
what that costs: a malformed item of a listing is skipped with a warning, a malformed answer
to ``resources/read``, ``prompts/get`` or ``completion/complete`` is a ``ProtocolError``.
Unknown fields are ignored (newer revisions add some).

The values are frozen, so they may be shared between threads and cached, and hashable (the
hash leaves out the JSON objects they carry: annotations, icons, ``_meta``, a message's
content). Their reprs leave out what may be large (contents, descriptions, ``_meta``): a repr
is for logs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_COMPLETION_VALUES", "Completion", "Prompt", "PromptArgument", "PromptMessage",
           "PromptResult", "Resource", "ResourceContents", "ResourceResult",
           "ResourceTemplate"]

#: Completion values kept from one answer (the spec's limit; more are cut, ``has_more`` set).
MAX_COMPLETION_VALUES = 100
#: The roles a prompt message may have.
ROLES = ("user", "assistant")


def _object(item: object, what: str, server: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ValueError(f"{what} of {server!r} must be an object, got {type(item).__name__}")
    return item


def _text(data: Mapping[str, Any], key: str, what: str, *, required: bool = False
          ) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _mapping(data: Mapping[str, Any], key: str, what: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: field {key!r} must be an object")
    return dict(value)


def _icons(data: Mapping[str, Any], what: str) -> tuple[dict[str, Any], ...]:
    icons = data.get("icons")
    if icons is None:
        return ()
    if not isinstance(icons, list) or not all(
            isinstance(i, Mapping) and isinstance(i.get("src"), str) for i in icons):
        raise ValueError(f"{what}: field 'icons' must be a list of objects with a string 'src'")
    return tuple(dict(i) for i in icons)


def _count(data: Mapping[str, Any], key: str, what: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: field {key!r} must be a non-negative integer")
    return value


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


@dataclass(frozen=True)
class Resource:
    """A resource the server lists (``resources/list``): read it with ``read_resource(uri)``.

    ``size`` is the raw size in bytes when the server knows it; ``annotations`` (audience,
    priority, lastModified), ``icons`` and ``meta`` (``_meta``) are as sent.
    """

    uri: str
    name: str
    title: str | None = None
    description: str | None = field(default=None, repr=False)
    mime_type: str | None = None
    size: int | None = None
    annotations: Mapping[str, Any] | None = field(default=None, repr=False, hash=False)
    icons: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, hash=False)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @classmethod
    def from_dict(cls, item: object, server: str) -> Resource:
        """The MCP ``Resource`` object ``item``; ``ValueError`` if it is malformed."""
        data = _object(item, "a resource", server)
        what = f"a resource of {server!r}"
        return cls(uri=_text(data, "uri", what, required=True) or "",
                   name=_text(data, "name", what, required=True) or "",
                   title=_text(data, "title", what),
                   description=_text(data, "description", what),
                   mime_type=_text(data, "mimeType", what), size=_count(data, "size", what),
                   annotations=_mapping(data, "annotations", what), icons=_icons(data, what),
                   meta=_mapping(data, "_meta", what) or {})


@dataclass(frozen=True)
class ResourceTemplate:
    """A family of resources the server lists (``resources/templates/list``): an RFC 6570
    ``uri_template`` such as ``file:///{path}``; fill it in and read the URI, or pass the
    template to ``complete()`` for values of its variables."""

    uri_template: str
    name: str
    title: str | None = None
    description: str | None = field(default=None, repr=False)
    mime_type: str | None = None
    annotations: Mapping[str, Any] | None = field(default=None, repr=False, hash=False)
    icons: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, hash=False)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @classmethod
    def from_dict(cls, item: object, server: str) -> ResourceTemplate:
        """The MCP ``ResourceTemplate`` object ``item``; ``ValueError`` if it is malformed."""
        data = _object(item, "a resource template", server)
        what = f"a resource template of {server!r}"
        return cls(uri_template=_text(data, "uriTemplate", what, required=True) or "",
                   name=_text(data, "name", what, required=True) or "",
                   title=_text(data, "title", what),
                   description=_text(data, "description", what),
                   mime_type=_text(data, "mimeType", what),
                   annotations=_mapping(data, "annotations", what), icons=_icons(data, what),
                   meta=_mapping(data, "_meta", what) or {})


@dataclass(frozen=True)
class ResourceContents:
    """One part of what ``resources/read`` returned: ``text`` (a text resource) or ``blob``
    (the bytes of a binary one, decoded from the base64 it travelled as), never both."""

    uri: str
    mime_type: str | None = None
    text: str | None = None
    blob: bytes | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __repr__(self) -> str:
        size = (f"text={len(self.text)} chars" if self.text is not None
                else f"blob={len(self.blob or b'')} bytes")
        return (f"ResourceContents(uri={_short(self.uri)!r}, mime_type={self.mime_type!r}, "
                f"{size})")

    @classmethod
    def from_dict(cls, item: object, server: str) -> ResourceContents:
        """A ``TextResourceContents`` or ``BlobResourceContents``; ``ValueError`` if it is
        malformed, has neither or both of ``text`` and ``blob``, or its blob is not base64."""
        data = _object(item, "resource contents", server)
        what = f"resource contents from {server!r}"
        text, blob = _text(data, "text", what), _text(data, "blob", what)
        if (text is None) == (blob is None):
            raise ValueError(f"{what} must have exactly one of 'text' and 'blob'")
        raw = None
        if blob is not None:
            try:
                raw = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{what}: field 'blob' is not valid base64") from None
        return cls(uri=_text(data, "uri", what, required=True) or "",
                   mime_type=_text(data, "mimeType", what), text=text, blob=raw,
                   meta=_mapping(data, "_meta", what) or {})


@dataclass(frozen=True)
class ResourceResult:
    """What ``read_resource(uri)`` returns: the resource's ``contents`` (one, or several for
    a resource with parts, e.g. a directory) and the result's ``meta``."""

    contents: tuple[ResourceContents, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @property
    def text(self) -> str:
        """The text of the text contents, joined by newlines ("" if there is none)."""
        return "\n".join(part.text for part in self.contents if part.text is not None)

    def __repr__(self) -> str:
        return f"ResourceResult(contents={list(self.contents)!r})" if len(self.contents) <= 3 \
            else f"ResourceResult(contents=<{len(self.contents)} parts>)"

    @classmethod
    def from_dict(cls, item: object, server: str) -> ResourceResult:
        """A ``ReadResourceResult``; ``ValueError`` if it or any of its contents is malformed
        (a resource read in part would be silently wrong)."""
        data = _object(item, "a resources/read result", server)
        contents = data.get("contents")
        if not isinstance(contents, list):
            raise ValueError(f"a resources/read result of {server!r} has no contents list")
        return cls(contents=tuple(ResourceContents.from_dict(part, server) for part in contents),
                   meta=_mapping(data, "_meta", f"a resources/read result of {server!r}") or {})


@dataclass(frozen=True)
class PromptArgument:
    """An argument a prompt takes (always a string); ``required`` says it must be given."""

    name: str
    description: str | None = None
    required: bool = False
    title: str | None = None

    @classmethod
    def from_dict(cls, item: object, server: str) -> PromptArgument:
        data = _object(item, "a prompt argument", server)
        what = f"a prompt argument of {server!r}"
        required = data.get("required")
        if required is not None and not isinstance(required, bool):
            raise ValueError(f"{what}: field 'required' must be a boolean")
        return cls(name=_text(data, "name", what, required=True) or "",
                   description=_text(data, "description", what), required=bool(required),
                   title=_text(data, "title", what))


@dataclass(frozen=True)
class Prompt:
    """A prompt (template) the server lists (``prompts/list``): get its messages with
    ``get_prompt(name, arguments)``."""

    name: str
    title: str | None = None
    description: str | None = field(default=None, repr=False)
    arguments: tuple[PromptArgument, ...] = ()
    icons: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, hash=False)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @classmethod
    def from_dict(cls, item: object, server: str) -> Prompt:
        """The MCP ``Prompt`` object ``item``; ``ValueError`` if it or one of its arguments
        is malformed."""
        data = _object(item, "a prompt", server)
        what = f"a prompt of {server!r}"
        arguments = data.get("arguments")
        if arguments is not None and not isinstance(arguments, list):
            raise ValueError(f"{what}: field 'arguments' must be a list")
        return cls(name=_text(data, "name", what, required=True) or "",
                   title=_text(data, "title", what),
                   description=_text(data, "description", what),
                   arguments=tuple(PromptArgument.from_dict(a, server) for a in arguments or ()),
                   icons=_icons(data, what), meta=_mapping(data, "_meta", what) or {})


@dataclass(frozen=True)
class PromptMessage:
    """One message of a prompt: ``role`` (``"user"`` or ``"assistant"``) and ``content``, the
    MCP content block as sent (``{"type": "text", "text": ...}``, an image, audio, a resource
    link or an embedded resource)."""

    role: str
    content: Mapping[str, Any] = field(hash=False)

    @property
    def text(self) -> str | None:
        """The text of a text message, else None."""
        text = self.content.get("text")
        return text if self.content.get("type") == "text" and isinstance(text, str) else None

    def __repr__(self) -> str:
        return f"PromptMessage(role={self.role!r}, type={self.content.get('type')!r})"

    @classmethod
    def from_dict(cls, item: object, server: str) -> PromptMessage:
        data = _object(item, "a prompt message", server)
        what = f"a prompt message from {server!r}"
        role = data.get("role")
        if role not in ROLES:
            raise ValueError(f"{what}: field 'role' must be 'user' or 'assistant'")
        content = data.get("content")
        if not isinstance(content, Mapping) or not isinstance(content.get("type"), str):
            raise ValueError(f"{what}: field 'content' must be an object with a string 'type'")
        return cls(role=str(role), content=dict(content))


@dataclass(frozen=True)
class PromptResult:
    """What ``get_prompt()`` returns: the prompt's ``messages`` in order, its
    ``description`` and the result's ``meta``."""

    description: str | None
    messages: tuple[PromptMessage, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __repr__(self) -> str:
        return f"PromptResult(messages={list(self.messages)!r})" if len(self.messages) <= 3 \
            else f"PromptResult(messages=<{len(self.messages)} messages>)"

    @classmethod
    def from_dict(cls, item: object, server: str) -> PromptResult:
        """A ``GetPromptResult``; ``ValueError`` if it or any of its messages is malformed."""
        data = _object(item, "a prompts/get result", server)
        what = f"a prompts/get result of {server!r}"
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise ValueError(f"{what} has no messages list")
        return cls(description=_text(data, "description", what),
                   messages=tuple(PromptMessage.from_dict(m, server) for m in messages),
                   meta=_mapping(data, "_meta", what) or {})


@dataclass(frozen=True)
class Completion:
    """What ``complete()`` returns: suggested ``values`` for the argument (at most 100),
    the ``total`` number of matches when the server knows it, and ``has_more`` when there
    are more than it sent."""

    values: tuple[str, ...]
    total: int | None = None
    has_more: bool = False

    def __repr__(self) -> str:
        shown = ", ".join(repr(_short(v, 30)) for v in self.values[:5])
        more = f", ... {len(self.values)} values" if len(self.values) > 5 else ""
        return (f"Completion(values=({shown}{more}), total={self.total!r}, "
                f"has_more={self.has_more!r})")

    @classmethod
    def from_dict(cls, item: object, server: str) -> Completion:
        """A ``CompleteResult`` (its ``completion`` object); ``ValueError`` if it is
        malformed. Values past :data:`MAX_COMPLETION_VALUES` are cut and ``has_more`` set."""
        data = _object(item, "a completion/complete result", server)
        what = f"a completion/complete result of {server!r}"
        completion = _object(data.get("completion"), "its completion", server)
        values = completion.get("values")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{what}: 'values' must be a list of strings")
        has_more = completion.get("hasMore")
        if has_more is not None and not isinstance(has_more, bool):
            raise ValueError(f"{what}: field 'hasMore' must be a boolean")
        return cls(values=tuple(values[:MAX_COMPLETION_VALUES]),
                   total=_count(completion, "total", what),
                   has_more=bool(has_more) or len(values) > MAX_COMPLETION_VALUES)
