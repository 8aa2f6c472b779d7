"""A small, real MCP server over stdio, for ``sark-sync demo``, the LocalGateway and tests.

Contract (DESIGN §4, stdio): newline-delimited JSON-RPC 2.0 on stdin/stdout, UTF-8, logs on
stderr only (``sys.stdout`` is pointed at stderr so a stray ``print`` cannot corrupt the
protocol). Every line written is flushed at once, so the server behaves the same with or without
``PYTHONUNBUFFERED``.

- ``initialize`` answers the client's ``protocolVersion`` when it is a supported one, else the
  latest (``--protocol-version V`` forces ``V``). Other requests before it get -32600 "server
  not initialized", except ``ping``, which is always ``{}``.
- ``tools/list`` pages by ``--page-size`` (default 50) with an opaque ``nextCursor``; a bad
  cursor is -32602. ``--tools N`` adds generated tools ``tool_000``... to test pagination.
- ``tools/call`` runs each call in its own thread, so a ``slow`` call never blocks an ``echo``.
  An unknown tool is -32602; a failing tool is a result with ``isError: true``.
  ``notifications/cancelled`` stops the call, and no response is sent for its id.
- ``ask_client`` and ``ping_client`` send ``roots/list`` and ``ping`` requests to the client
  (ids ``srv-1``, ``srv-2``...) and report what came back, to prove the client answers them.
- A malformed line gets an error response with id null (-32700), and serving goes on. At EOF on
  stdin the server waits up to 1 s for calls in flight, then exits 0. SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Callable

from .. import __version__
from .._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ErrorResponse,
    FramingError,
    Notification,
    Request,
    Response,
    encode_error,
    encode_notification,
    encode_request,
    encode_response,
    parse_line,
)

__all__ = ["SUPPORTED_VERSIONS", "DemoServer", "main"]

logger = logging.getLogger("sark_sync.demo_server")

#: Protocol versions the server accepts from a client; the last is answered to any other.
SUPPORTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
#: Longest sleep of ``slow`` between checks for cancellation.
SLEEP_SLICE = 0.05
#: How long ``ask_client``/``ping_client`` wait for the client's answer.
CLIENT_REPLY_TIMEOUT = 5.0
#: How long calls in flight may run on after stdin reached EOF.
EOF_GRACE = 1.0
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

Result = Mapping[str, Any]


def _text(text: str, *, error: bool = False, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


class ToolError(Exception):
    """Raised by a tool: reported as a result with ``isError: true``, not a protocol error."""


def _tool(name: str, description: str, properties: dict[str, Any], required: Sequence[str] = (),
          **annotations: bool) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"name": name, "description": description, "inputSchema": schema,
            "annotations": {"readOnlyHint": False, "openWorldHint": False, **annotations}}


_STR, _NUM, _INT = {"type": "string"}, {"type": "number"}, {"type": "integer", "minimum": 0}
BUILTIN_TOOLS = (
    _tool("echo", "Return the text.", {"text": _STR}, ["text"], readOnlyHint=True),
    dict(_tool("add", "Add two numbers.", {"a": _NUM, "b": _NUM}, ["a", "b"], readOnlyHint=True),
         outputSchema={"type": "object", "properties": {"sum": _NUM}, "required": ["sum"]}),
    _tool("slow", "Sleep, reporting progress; honours cancellation.",
          {"seconds": {"type": "number", "minimum": 0}, "steps": {"type": "integer", "minimum": 1}},
          ["seconds"], readOnlyHint=True),
    _tool("fail", "Always fail, as a tool error.", {"message": _STR}),
    _tool("log", "Send a notifications/message.",
          {"level": {"type": "string", "enum": list(LOG_LEVELS)}, "message": _STR},
          ["level", "message"]),
    _tool("crash", "Exit the server at once, without answering.", {"code": _INT},
          destructiveHint=True),
    _tool("env", "The value of an environment variable, or null.", {"name": _STR}, ["name"],
          readOnlyHint=True),
    _tool("big", "A text block of that many 'x'.", {"bytes": _INT}, ["bytes"], readOnlyHint=True),
    _tool("notify_list_changed", "Send notifications/tools/list_changed.", {}),
    _tool("ask_client", "Send roots/list to the client and report its answer.", {}),
    _tool("ping_client", "Send ping to the client and wait for its answer.", {}),
    _tool("count", "The number of tools tools/list returns.", {}, readOnlyHint=True),
)


def _arg(arguments: Mapping[str, Any], name: str, kind: type | tuple[type, ...],
         default: Any = None, required: bool = False) -> Any:
    if name not in arguments:
        if required:
            raise ToolError(f"missing argument {name!r}")
        return default
    value = arguments[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ToolError(f"argument {name!r} has the wrong type: {value!r}")
    return value


class DemoServer:
    """Serve MCP on a pair of binary streams until EOF; see the module docstring."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], *, page_size: int = 50,
                 extra_tools: int = 0, protocol_version: str | None = None) -> None:
        if page_size < 1 or extra_tools < 0:
            raise ValueError("page_size must be >= 1 and extra_tools >= 0")
        self._in, self._out = stdin, stdout
        self._page_size, self._forced_version = page_size, protocol_version
        width = max(3, len(str(extra_tools - 1)))
        self._tools = list(BUILTIN_TOOLS) + [
            _tool(f"tool_{i:0{width}d}", f"Generated tool {i}.", {}, readOnlyHint=True)
            for i in range(extra_tools)]
        self._names = {t["name"] for t in self._tools}
        self._write_lock, self._lock = threading.Lock(), threading.Lock()
        self._initialized = False
        self._min_level = 0
        self._calls: dict[Any, tuple[threading.Thread, threading.Event]] = {}
        self._client_ids = 0
        self._awaiting: dict[str, tuple[threading.Event, list[Any]]] = {}

    # -- I/O ---------------------------------------------------------------------------------

    def _write(self, line: bytes) -> None:
        with self._write_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError):
                logger.debug("stdout is closed; dropped a message")

    def serve(self) -> int:
        """Read and answer lines until EOF; return the exit code (0)."""
        while True:
            line = self._in.readline()
            if not line:
                break
            if line.strip():
                self._handle_line(line)
        deadline = time.monotonic() + EOF_GRACE
        with self._lock:
            calls = list(self._calls.values())
        for thread, _ in calls:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread, cancelled in calls:
            cancelled.set()
            thread.join(0.5)
        return 0

    def _handle_line(self, line: bytes) -> None:
        try:
            message = parse_line(line)
        except FramingError as exc:
            try:
                json.loads(line)
                code = INVALID_REQUEST
            except ValueError:
                code = PARSE_ERROR
            logger.warning("bad line: %s", exc)
            self._write(encode_error(exc.id, code, str(exc)))
            return
        if isinstance(message, Request):
            self._handle_request(message)
        elif isinstance(message, Notification):
            self._handle_notification(message)
        else:
            self._handle_reply(message)

    # -- messages ----------------------------------------------------------------------------

    def _handle_request(self, request: Request) -> None:
        params = dict(request.params or {})
        if request.method == "ping":
            return self._write(encode_response(request.id, {}))
        if request.method == "initialize":
            return self._write(encode_response(request.id, self._initialize(params)))
        if not self._initialized:
            return self._write(encode_error(request.id, INVALID_REQUEST,
                                            "server not initialized"))
        if request.method == "tools/list":
            return self._list_tools(request.id, params.get("cursor"))
        if request.method == "tools/call":
            return self._start_call(request.id, params)
        if request.method == "logging/setLevel" and params.get("level") in LOG_LEVELS:
            self._min_level = LOG_LEVELS.index(params["level"])
            return self._write(encode_response(request.id, {}))
        self._write(encode_error(request.id, METHOD_NOT_FOUND,
                                 f"method not found: {request.method}"))

    def _initialize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        wanted = params.get("protocolVersion")
        version = self._forced_version or (
            wanted if wanted in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1])
        self._initialized = True
        return {"protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                "serverInfo": {"name": "sark-sync-demo", "version": __version__ or "0"}}

    def _handle_notification(self, note: Notification) -> None:
        if note.method == "notifications/cancelled":
            with self._lock:
                call = self._calls.get((note.params or {}).get("requestId"))
            if call is not None:
                call[1].set()
        elif note.method != "notifications/initialized":
            logger.debug("ignored notification %s", note.method)

    def _handle_reply(self, reply: Response | ErrorResponse) -> None:
        with self._lock:
            waiter = self._awaiting.pop(str(reply.id), None)
        if waiter is None:
            logger.warning("reply to no request of ours: id %r", reply.id)
            return
        waiter[1].append(reply)
        waiter[0].set()

    def _list_tools(self, id: Any, cursor: Any) -> None:
        start = 0
        if cursor is not None:
            try:
                start = int(base64.urlsafe_b64decode(str(cursor).encode("ascii")).decode()[7:])
                valid = str(cursor) == self._cursor(start) and 0 < start < len(self._tools)
            except (ValueError, UnicodeError, binascii.Error):
                valid = False
            if not valid:
                return self._write(encode_error(id, INVALID_PARAMS, f"bad cursor: {cursor!r}"))
        end = start + self._page_size
        result: dict[str, Any] = {"tools": self._tools[start:end]}
        if end < len(self._tools):
            result["nextCursor"] = self._cursor(end)
        self._write(encode_response(id, result))

    @staticmethod
    def _cursor(offset: int) -> str:
        return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode("ascii")

    # -- tools/call --------------------------------------------------------------------------

    def _start_call(self, id: Any, params: Mapping[str, Any]) -> None:
        name, arguments = params.get("name"), params.get("arguments", {})
        if name not in self._names or not isinstance(arguments, dict):
            problem = "arguments must be an object" if name in self._names else "unknown tool"
            return self._write(encode_error(id, INVALID_PARAMS, f"{problem}: {name!r}"))
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        cancelled = threading.Event()
        thread = threading.Thread(target=self._run_call, name=f"demo-call-{id}", daemon=True,
                                  args=(id, str(name), arguments, token, cancelled))
        with self._lock:
            if id in self._calls:
                return self._write(encode_error(id, INVALID_REQUEST, f"duplicate id {id!r}"))
            self._calls[id] = (thread, cancelled)
        thread.start()

    def _run_call(self, id: Any, name: str, arguments: dict[str, Any], token: Any,
                  cancelled: threading.Event) -> None:
        try:
            tool = getattr(self, f"_tool_{name}", None)
            if tool is None:
                result: Result = _text(name, structured={"tool": name, "arguments": arguments})
            else:
                result = tool(arguments, token, cancelled)
        except ToolError as exc:
            result = _text(str(exc), error=True)
        except Exception as exc:  # a bug in a tool must not kill the server
            logger.exception("tool %s failed", name)
            result = _text(f"internal error: {exc!r}", error=True)
        with self._lock:
            del self._calls[id]
            if cancelled.is_set():
                logger.info("call %r cancelled: no response", id)
                return
        self._write(encode_response(id, result))

    def _ask(self, method: str, cancelled: threading.Event) -> Response | ErrorResponse | None:
        got: list[Any] = []
        event = threading.Event()
        with self._lock:
            self._client_ids += 1
            request_id = f"srv-{self._client_ids}"
            self._awaiting[request_id] = (event, got)
        self._write(encode_request(request_id, method))
        deadline = time.monotonic() + CLIENT_REPLY_TIMEOUT
        while not event.wait(SLEEP_SLICE) and not cancelled.is_set():
            if time.monotonic() >= deadline:
                break
        with self._lock:
            self._awaiting.pop(request_id, None)
        return got[0] if got else None

    def _tool_echo(self, args: dict[str, Any], *_: Any) -> Result:
        return _text(_arg(args, "text", str, required=True))

    def _tool_add(self, args: dict[str, Any], *_: Any) -> Result:
        total = _arg(args, "a", (int, float), required=True) + _arg(
            args, "b", (int, float), required=True)
        return _text(str(total), structured={"sum": total})

    def _tool_slow(self, args: dict[str, Any], token: Any, cancelled: threading.Event) -> Result:
        seconds = float(_arg(args, "seconds", (int, float), required=True))
        steps = _arg(args, "steps", int, default=5)
        if seconds < 0 or steps < 1:
            raise ToolError("seconds must be >= 0 and steps >= 1")
        start = time.monotonic()
        for step in range(1, steps + 1):
            until = start + seconds * step / steps
            while not cancelled.is_set() and time.monotonic() < until:
                cancelled.wait(min(SLEEP_SLICE, until - time.monotonic()))
            if cancelled.is_set():
                return _text("cancelled", error=True)
            if token is not None:
                self._write(encode_notification("notifications/progress", {
                    "progressToken": token, "progress": step, "total": steps}))
        return _text("done")

    def _tool_fail(self, args: dict[str, Any], *_: Any) -> Result:
        raise ToolError(_arg(args, "message", str, default="the tool failed on purpose"))

    def _tool_log(self, args: dict[str, Any], *_: Any) -> Result:
        level = _arg(args, "level", str, required=True)
        if level not in LOG_LEVELS:
            raise ToolError(f"unknown level {level!r}")
        if LOG_LEVELS.index(level) >= self._min_level:
            self._write(encode_notification("notifications/message", {
                "level": level, "logger": "demo",
                "data": _arg(args, "message", str, required=True)}))
        return _text("logged")

    def _tool_crash(self, args: dict[str, Any], *_: Any) -> Result:
        code = _arg(args, "code", int, default=3)
        sys.stderr.write(f"demo server: crashing on purpose with exit code {code}\n")
        sys.stderr.flush()
        os._exit(code)

    def _tool_env(self, args: dict[str, Any], *_: Any) -> Result:
        value = os.environ.get(_arg(args, "name", str, required=True))
        return _text("null" if value is None else value, structured={"value": value})

    def _tool_big(self, args: dict[str, Any], *_: Any) -> Result:
        return _text("x" * _arg(args, "bytes", int, required=True))

    def _tool_notify_list_changed(self, *_: Any) -> Result:
        self._write(encode_notification("notifications/tools/list_changed"))
        return _text("ok")

    def _tool_ask_client(self, _args: Any, _token: Any, cancelled: threading.Event) -> Result:
        reply = self._ask("roots/list", cancelled)
        if isinstance(reply, ErrorResponse):
            return _text(f"error {reply.code}", structured={
                "error": {"code": reply.code, "message": reply.message}})
        if isinstance(reply, Response):
            return _text(f"result {json.dumps(reply.result)}", structured={"result": reply.result})
        raise ToolError(f"no answer from the client within {CLIENT_REPLY_TIMEOUT:g} s")

    def _tool_ping_client(self, _args: Any, _token: Any, cancelled: threading.Event) -> Result:
        reply = self._ask("ping", cancelled)
        if isinstance(reply, Response) and reply.result == {}:
            return _text("pong received")
        if reply is None:
            raise ToolError(f"no answer from the client within {CLIENT_REPLY_TIMEOUT:g} s")
        raise ToolError(f"unexpected answer to ping: {reply!r}")

    def _tool_count(self, *_: Any) -> Result:
        return _text(str(len(self._tools)), structured={"tools": len(self._tools)})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sark_sync.testing.demo_server [--page-size N] [--tools N]
    [--protocol-version V]``: serve on stdin/stdout until EOF, then return 0."""
    parser = argparse.ArgumentParser(prog="python -m sark_sync.testing.demo_server",
                                     description="A small MCP server over stdio, for tests.")
    parser.add_argument("--page-size", type=int, default=50, help="tools per tools/list page")
    parser.add_argument("--tools", type=int, default=0, help="extra generated tools tool_000...")
    parser.add_argument("--protocol-version", help="answer this version to any initialize")
    options = parser.parse_args(argv)
    if options.page_size < 1 or options.tools < 0:
        parser.error("--page-size must be >= 1 and --tools >= 0")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # even if the parent ignored it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("demo server: %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # only protocol lines may reach the real stdout
    server = DemoServer(stdin, stdout, page_size=options.page_size, extra_tools=options.tools,
                        protocol_version=options.protocol_version)
    logger.info("ready (%d tools, page size %d)", len(server._tools), options.page_size)
    return server.serve()


_: Callable[..., int] = main
