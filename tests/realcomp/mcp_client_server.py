"""A real MCP server on the official SDK (``mcp`` 2.x ``MCPServer``) that uses the whole client
side of the protocol: it asks the client (elicitation, sampling, roots), logs, reports progress,
serves resources, templates, subscriptions, prompts and completions, and changes its tool list.

Run it with the tools venv's interpreter (it is never imported by the tests)::

    .tools-venv/bin/python tests/realcomp/mcp_client_server.py                 # stdio
    .tools-venv/bin/python tests/realcomp/mcp_client_server.py --transport streamable-http
    .tools-venv/bin/python tests/realcomp/mcp_client_server.py --tools-only    # tools only

Over stdio it speaks on stdin/stdout at once. Over Streamable HTTP it binds 127.0.0.1 port 0
and, once uvicorn serves, prints exactly one line on stdout, ``READY http://127.0.0.1:<port>/mcp``
(flushed); SIGTERM or SIGINT stops it within 2 s and it exits 0. Options ``--stateless`` and
``--json-response`` as in mcp_http_server.py. It logs to stderr only.

Capabilities at the handshake versions: ``tools``, ``resources`` and ``prompts`` with
``listChanged: true``, ``resources.subscribe: true``, ``logging``, ``completions``. With
``--tools-only``: ``tools`` (``listChanged: true``) and nothing else; the server then has no
resources, prompts, completion or logging handlers at all (a request for one: -32601).

Tools (state that tests query is kept per connection or per ``tag``, so one server can serve a
whole test session):

- ``ask_name()``: elicits a form ``{"name": string}`` ("What is your name?"); returns
  ``"Hello, <name>"`` on accept, ``"declined"`` or ``"cancelled"``.
- ``summarize(text)``: samples the client (``sampling/createMessage``, one user message
  ``"Summarize: <text>"``, ``maxTokens`` 100); returns ``"<sampled text> (model <model>)"``.
- ``show_roots()``: lists the client's roots; returns their URIs, one per line (``""`` if none).
- ``roots_changed()``: how many ``notifications/roots/list_changed`` this connection got.
- ``log_levels()``: sends one ``notifications/message`` per level, debug to emergency (data
  ``"<level> message"``, logger ``"levels"``), skipping levels below the one the client set
  with ``logging/setLevel`` (none set: all eight; at 2026-07-28 the levels the request's
  ``_meta`` ``io.modelcontextprotocol/logLevel`` asks for, none without it); returns how many
  it sent.
- ``slow(tag)``: runs 60 s, reporting progress every 0.1 s (when the call has a progress
  token); if cancelled, records ``tag``. ``cancelled(tag)``: ``"yes"`` or ``"no"``.
- ``steps(count, interval=0)``: ``count`` progress notifications (``1``..``count`` of
  ``count``, message ``"step <n>"``), ``interval`` s apart, then ``"steps <count>"``.
- ``good_output(value)``: ``structuredContent`` ``{"value": value, "unit": "m"}``, which its
  outputSchema (``value`` integer, ``unit`` string, both required) accepts.
- ``bad_output()``: ``structuredContent`` ``{"value": "not a number"}``; its outputSchema is the
  same as ``good_output``'s, so the result violates it (the SDK does not check it here).
- ``add_tool(name, channel="request")``: registers a tool ``name`` (returns ``"<name> ran"``;
  title ``"Added <name>"``, annotations readOnlyHint and idempotentHint true, destructiveHint
  false), then sends ``notifications/tools/list_changed`` (and publishes it to the
  ``subscriptions/listen`` streams that asked for ``toolsListChanged``); returns ``"added <name>"``.
- ``touch(uri, channel="request")``: sends ``notifications/resources/updated`` for ``uri`` if
  this connection subscribed to it; returns ``"notified"`` or ``"not subscribed"``. At
  2026-07-28 (no ``resources/subscribe``) it publishes the update to the ``subscriptions/listen``
  streams whose ``resourceSubscriptions`` name ``uri`` and returns ``"published"``.
- ``echo(text)``: the text back.

``channel="request"`` sends the notification on the call's own response stream (related to the
call: it always arrives before the result); ``"standalone"`` on the session's channel (over
HTTP the listening GET stream: the SDK drops it when none is open).

Resources: ``demo://text`` (text/plain ``"hello from the demo server"``), ``demo://binary``
(application/octet-stream, the bytes 0..255 as a blob), ``demo://counter`` (text/plain, how many
times ``touch`` notified it, subscribable); template ``note://{name}`` ("Note <name>", text
``"note <name>"``). Completion: argument ``name`` of ``note://{name}`` completes from ``alpha``,
``alpine``, ``beta`` (prefix match); argument ``style`` of prompt ``greet`` from ``formal``,
``casual``, ``pirate``, plus ``"<name>-style"`` when the request's ``context.arguments`` carries
``name`` (so a test sees whether the context was sent).
Prompts: ``greet(name, style="casual")`` (one user message ``"Greet <name> in a <style>
way."``), ``plain()`` (no arguments: ``"Say hello."``).

The resources, prompts, completions, subscriptions and log level live in
mcp_client_resources.py. Facts about this SDK (mcp 2.3.0) with this server are in
docs/dev/MCP_HTTP_FACTS.md (§11, "The official server asking the client").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import warnings
from typing import Annotated, Any

from loopback_http import serve_on_loopback
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp.types import (
    CallToolResult,
    CreateMessageResult,
    ListRootsResult,
    ResourceUpdatedNotification,
    ResourceUpdatedNotificationParams,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
    ToolListChangedNotification,
)
from mcp_client_resources import (
    add_resources_and_prompts,
    add_roots_listener,
    count_touch,
    state_of,
)
from pydantic import BaseModel

SERVER_NAME = "sark-test-client-features"
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
SLOW_SECONDS = 60.0
SLOW_TICK = 0.1
STREAMABLE_PATH = "/mcp"
MODERN = "2026-07-28"
ADDED = ToolAnnotations(readOnlyHint=True, idempotentHint=True, destructiveHint=False)
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"value": {"type": "integer"}, "unit": {"type": "string"}},
    "required": ["value", "unit"],
}

# The SDK deprecates logging, sampling and roots at 2026-07-28; this server uses them on purpose.
warnings.filterwarnings("ignore", message="The .* capability is deprecated")
log = logging.getLogger("mcp_client_server")
_cancelled: set[str] = set()  # the tags of the slow() calls that were cancelled
logging.basicConfig(
    stream=sys.stderr,
    level=os.environ.get("SARK_TEST_MCP_LOG_LEVEL", "INFO").upper(),
    format="mcp_client_server %(levelname)s %(name)s: %(message)s",
    force=True,
)


class NameForm(BaseModel):
    """The form ``ask_name`` elicits."""

    name: str


class Reading(BaseModel):
    """The structured result of ``good_output``."""

    value: int
    unit: str


def ask_for_name() -> Elicit[NameForm]:
    return Elicit("What is your name?", NameForm)


def sample_summary(text: str) -> Sample:
    asked = TextContent(type="text", text=f"Summarize: {text}")
    message = SamplingMessage(role="user", content=asked)
    return Sample([message], max_tokens=100)


def fetch_roots() -> ListRoots:
    return ListRoots()


def build(tools_only: bool) -> MCPServer:
    """The server: every feature, or (``tools_only``) its tools alone."""
    server: MCPServer = MCPServer(SERVER_NAME, version="1.0.0")
    add_tools(server)
    low = server._lowlevel_server
    create = low.create_initialization_options

    def create_options(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        # MCPServer declares listChanged false; this server does send the notifications.
        changed = NotificationOptions(prompts_changed=not tools_only,
                                      resources_changed=not tools_only, tools_changed=True)
        return create(notification_options or changed, *args, **kwargs)

    low.create_initialization_options = create_options  # type: ignore[method-assign]
    if tools_only:
        for method in [m for m in low._request_handlers if m.split("/")[0] in
                       ("resources", "prompts", "completion", "logging")]:
            del low._request_handlers[method]
    else:
        add_resources_and_prompts(server)
    return server


def add_tools(server: MCPServer) -> None:
    plain = {"structured_output": False}

    @server.tool(description="Return the text unchanged.", **plain)
    def echo(text: str) -> str:
        return text

    @server.tool(description="Ask the user for their name, then greet them.", **plain)
    def ask_name(answer: Annotated[ElicitationResult[NameForm], Resolve(ask_for_name)]) -> str:
        if isinstance(answer, AcceptedElicitation):
            return f"Hello, {answer.data.name}"
        return "declined" if answer.action == "decline" else "cancelled"

    @server.tool(description="Summarize the text with the client's model.", **plain)
    def summarize(text: str,
                  sampled: Annotated[CreateMessageResult, Resolve(sample_summary)]) -> str:
        content = sampled.content
        said = content.text if isinstance(content, TextContent) else repr(content)
        return f"{said} (model {sampled.model})"

    @server.tool(description="The URIs of the client's roots, one per line.", **plain)
    def show_roots(roots: Annotated[ListRootsResult, Resolve(fetch_roots)]) -> str:
        return "\n".join(str(root.uri) for root in roots.roots)

    @server.tool(description="How many roots list changes this connection sent.", **plain)
    def roots_changed(ctx: Context) -> str:
        return str(state_of(ctx.session).roots_changed)

    @server.tool(description="Log one message at each level the client wants.", **plain)
    async def log_levels(ctx: Context) -> str:
        floor = state_of(ctx.session).level
        wanted = LEVELS[LEVELS.index(floor):] if floor in LEVELS else LEVELS
        # At 2026-07-28 the request's _meta logLevel decides; the SDK drops the other levels.
        allowed = ctx.session._allowed_log_levels
        wanted = tuple(level for level in wanted if level in allowed)
        for level in wanted:
            await ctx.session.send_log_message(level=level, data=f"{level} message",
                                               logger="levels", related_request_id=ctx.request_id)
        return str(len(wanted))

    @server.tool(description="Run for a minute with progress; remember a cancel.", **plain)
    async def slow(tag: str, ctx: Context) -> str:
        ticks = int(SLOW_SECONDS / SLOW_TICK)
        try:
            for tick in range(ticks):
                await ctx.report_progress(tick, ticks)
                await asyncio.sleep(SLOW_TICK)
        except BaseException:
            _cancelled.add(tag)
            log.info("slow(%r) cancelled", tag)
            raise
        return f"slow {tag} done"

    @server.tool(description="Whether slow(tag) was cancelled: yes or no.", **plain)
    def cancelled(tag: str) -> str:
        return "yes" if tag in _cancelled else "no"

    @server.tool(description="Report progress count times, then return.", **plain)
    async def steps(count: int, ctx: Context, interval: float = 0.0) -> str:
        for step in range(1, count + 1):
            if step > 1 and interval > 0:
                await asyncio.sleep(interval)
            await ctx.report_progress(step, count, f"step {step}")
        return f"steps {count}"

    @server.tool(description="A reading that matches the output schema.")
    def good_output(value: int) -> Reading:
        return Reading(value=value, unit="m")

    @server.tool(description="A reading that violates the output schema.")
    def bad_output() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text='{"value": "not a number"}')],
                              structured_content={"value": "not a number"})

    # Published as is and never checked by the SDK (a tool returning CallToolResult has no model).
    server._tool_manager.get_tool("bad_output").fn_metadata.output_schema = OUTPUT_SCHEMA

    @server.tool(description="Register a new tool and say the list changed.", **plain)
    async def add_tool(name: str, ctx: Context, channel: str = "request") -> str:
        def added() -> str:
            return f"{name} ran"

        server.add_tool(added, name=name, title=f"Added {name}",
                        description=f"A tool added at run time ({name}).",
                        annotations=ADDED, structured_output=False)
        related = ctx.request_id if channel == "request" else None
        await ctx.session.send_notification(ToolListChangedNotification(),
                                            related_request_id=related)
        await ctx.notify_tools_changed()  # and to the subscriptions/listen streams (2026-07-28)
        return f"added {name}"

    @server.tool(description="Tell a subscriber the resource changed.", **plain)
    async def touch(uri: str, ctx: Context, channel: str = "request") -> str:
        if ctx.protocol_version == MODERN:
            # 2026-07-28 has no resources/subscribe: subscriptions/listen streams get it.
            count_touch()
            await ctx.notify_resource_updated(uri)
            return "published"
        if uri not in state_of(ctx.session).subscribed:
            return "not subscribed"
        count_touch()
        related = ctx.request_id if channel == "request" else None
        notice = ResourceUpdatedNotification(params=ResourceUpdatedNotificationParams(uri=uri))
        await ctx.session.send_notification(notice, related_request_id=related)
        return "notified"


def serve_http(server: MCPServer, args: argparse.Namespace) -> None:
    app = server.streamable_http_app(streamable_http_path=STREAMABLE_PATH,
                                     json_response=args.json_response,
                                     stateless_http=args.stateless, host="127.0.0.1")
    serve_on_loopback(app, STREAMABLE_PATH, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    parser.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id")
    parser.add_argument("--json-response", action="store_true",
                        help="answer POSTs with application/json, not SSE")
    parser.add_argument("--tools-only", action="store_true",
                        help="declare tools and nothing else")
    args = parser.parse_args(argv)
    server = build(args.tools_only)
    add_roots_listener(server)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        serve_http(server, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
