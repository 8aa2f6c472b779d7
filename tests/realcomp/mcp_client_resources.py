"""What mcp_client_server.py offers besides tools (resources, a template, prompts, completions,
subscriptions, the log level) and what each client connection set; imported by it, run with
the tools venv's interpreter. The behaviour is described in mcp_client_server.py's docstring.
"""

from __future__ import annotations

import weakref
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import (
    Completion,
    EmptyResult,
    NotificationParams,
    PromptReference,
    ResourceTemplateReference,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

NOTES = ("alpha", "alpine", "beta")
STYLES = ("formal", "casual", "pirate")


class ConnectionState:
    """What one client connection set or sent: its log level, subscriptions, roots changes."""

    def __init__(self) -> None:
        self.level: str | None = None
        self.subscribed: set[str] = set()
        self.roots_changed = 0


_states: weakref.WeakKeyDictionary[Any, ConnectionState] = weakref.WeakKeyDictionary()
_touches = 0


def state_of(session: Any) -> ConnectionState:
    """The state of the connection a request came on (the SDK's ``Connection`` object)."""
    connection = session._connection  # the one object that lives as long as the connection
    if connection not in _states:
        _states[connection] = ConnectionState()
    return _states[connection]


def count_touch() -> None:
    """``touch`` changed ``demo://counter``."""
    global _touches
    _touches += 1


def add_resources_and_prompts(server: MCPServer) -> None:
    low = server._lowlevel_server

    @server.resource("demo://text", name="text", title="Demo text", mime_type="text/plain",
                     description="A short text.")
    def text() -> str:
        return "hello from the demo server"

    @server.resource("demo://binary", name="binary", mime_type="application/octet-stream",
                     description="The bytes 0 to 255.")
    def binary() -> bytes:
        return bytes(range(256))

    @server.resource("demo://counter", name="counter", mime_type="text/plain",
                     description="How many times touch() notified it (subscribable).")
    def counter() -> str:
        return str(_touches)

    @server.resource("note://{name}", name="note", title="Note", mime_type="text/plain",
                     description="A note by name.")
    def note(name: str) -> str:
        return f"note {name}"

    @server.prompt(description="Greet someone in a style.")
    def greet(name: str, style: str = "casual") -> str:
        return f"Greet {name} in a {style} way."

    @server.prompt(description="Say hello.")
    def plain() -> str:
        return "Say hello."

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, ResourceTemplateReference) and argument.name == "name":
            values = [n for n in NOTES if n.startswith(argument.value)]
        elif isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "style":
            values = [s for s in STYLES if s.startswith(argument.value)]
            earlier = (context.arguments or {}) if context is not None else {}
            if "name" in earlier:
                values.append(f"{earlier['name']}-style")
        else:
            return None
        return Completion(values=values, total=len(values), has_more=False)

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        state_of(ctx.session).subscribed.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        state_of(ctx.session).subscribed.discard(str(params.uri))
        return EmptyResult()

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        state_of(ctx.session).level = params.level
        return EmptyResult()

    low.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    low.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


def add_roots_listener(server: MCPServer) -> None:
    async def roots_changed(ctx: Any, params: Any) -> None:
        state_of(ctx.session).roots_changed += 1

    server._lowlevel_server.add_notification_handler(
        "notifications/roots/list_changed", NotificationParams, roots_changed)
