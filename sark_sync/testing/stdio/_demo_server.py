"""A small, real MCP server over stdio, for ``sark-sync demo``, the LocalGateway and tests.

Contract (MCP's stdio transport, docs/gateway/STDIO_TRANSPORT.md): newline-delimited JSON-RPC
2.0 on stdin/stdout, UTF-8, logs on stderr only (``sys.stdout`` is pointed at stderr so a stray
``print`` cannot corrupt the protocol). Every line written is flushed at once, so the server
behaves the same with or without ``PYTHONUNBUFFERED``.

- ``initialize`` answers the client's ``protocolVersion`` when it is a supported one, else the
  latest (``--protocol-version V`` forces ``V``). Other requests before it get -32600 "server
  not initialized", except ``ping``, which is always ``{}``.
- ``tools/list`` pages by ``--page-size`` (default 50) with an opaque ``nextCursor``; a bad
  cursor is -32602. ``--tools N`` adds generated tools ``tool_000``... to test pagination.
- ``tools/call`` runs each call in its own thread, so a ``slow`` call never blocks an ``echo``.
  An unknown tool is -32602; a failing tool (bad arguments included) is a result with
  ``isError: true``. ``notifications/cancelled`` stops the call and no response is sent for it.
- ``ask_client`` and ``ping_client`` send ``roots/list`` and ``ping`` requests to the client
  (ids ``srv-1``, ``srv-2``...) and report what came back, to prove the client answers them.
- A line that is not JSON gets an error response with id null (-32700); JSON that is not a
  valid message gets -32600. Serving goes on. At EOF on stdin the server waits up to 1 s for
  calls in flight, then exits 0. SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Optional, Union

from ...__version__ import __version__
from ...wire import jsonrpc as rpc

__all__ = ["SUPPORTED_VERSIONS", "DemoServer", "main"]

logger = logging.getLogger("sark_sync.demo_server")

#: Protocol versions the server accepts from a client; the last is answered to any other.
SUPPORTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
#: Longest sleep of ``slow`` (and of a wait for the client) between checks for cancellation.
SLEEP_SLICE = 0.05
#: How long ``ask_client``/``ping_client`` wait for the client's answer.
CLIENT_REPLY_TIMEOUT = 5.0
#: How long calls in flight may run on after stdin reached EOF.
EOF_GRACE = 1.0
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

Result = Mapping[str, Any]
Reply = Optional[Union[rpc.Response, rpc.ErrorResponse]]


class ToolError(Exception):
    """Raised by a tool: reported as a result with ``isError: true``, not a protocol error."""


def _text(text: str, *, error: bool = False, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


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


def _arg(arguments: Mapping[str, Any], name: str, kind: Any, default: Any = None) -> Any:
    """``arguments[name]`` checked against ``kind``; required unless a default is given."""
    if name not in arguments and default is not None:
        return default
    value = arguments.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ToolError(f"argument {name!r} is missing or not a {kind}: {value!r}")
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
        self.tools = list(BUILTIN_TOOLS) + [
            _tool(f"tool_{i:0{width}d}", f"Generated tool {i}.", {}, readOnlyHint=True)
            for i in range(extra_tools)]
        self._names = {t["name"] for t in self.tools}
        self._write_lock, self._lock = threading.Lock(), threading.Lock()
        self._initialized, self._min_level, self._client_ids = False, 0, 0
        self._calls: dict[Any, tuple[threading.Thread, threading.Event]] = {}
        self._awaiting: dict[str, tuple[threading.Event, list[Reply]]] = {}

    def serve(self) -> int:
        """Read and answer lines until EOF; return the exit code (0)."""
        for line in iter(self._in.readline, b""):
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
        with self._write_lock:
            pass  # a straggler mid-write finishes before the interpreter shuts down
        return 0

    def _write(self, line: bytes) -> None:
        with self._write_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError):
                logger.debug("stdout is closed; dropped a message")

    def _reply(self, id: Any, result: Any) -> None:
        self._write(rpc.encode_response(id, result))

    def _error(self, id: Any, code: int, message: str) -> None:
        self._write(rpc.encode_error(id, code, message))

    def _notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        self._write(rpc.encode_notification(method, params))

    def _handle_line(self, line: bytes) -> None:
        try:
            message = rpc.parse_line(line)
        except rpc.FramingError as exc:
            try:
                json.loads(line)
                code = rpc.INVALID_REQUEST
            except ValueError:
                code = rpc.PARSE_ERROR
            logger.warning("bad line: %s", exc)
            return self._error(exc.id, code, str(exc))
        if isinstance(message, rpc.Request):
            self._handle_request(message.id, message.method, dict(message.params or {}))
        elif isinstance(message, rpc.Notification):
            self._handle_notification(message.method, dict(message.params or {}))
        else:
            with self._lock:
                waiter = self._awaiting.pop(str(message.id), None)
            if waiter is None:
                logger.warning("a reply to no request of ours: id %r", message.id)
            else:
                waiter[1].append(message)
                waiter[0].set()

    def _handle_request(self, id: Any, method: str, params: dict[str, Any]) -> None:
        if method == "ping":
            self._reply(id, {})
        elif method == "initialize":
            wanted = params.get("protocolVersion")
            version = self._forced_version or (
                wanted if wanted in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1])
            self._initialized = True
            self._reply(id, {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                "serverInfo": {"name": "sark-sync-demo", "version": __version__ or "0"}})
        elif not self._initialized:
            self._error(id, rpc.INVALID_REQUEST, "server not initialized")
        elif method == "tools/list":
            self._list_tools(id, params.get("cursor"))
        elif method == "tools/call":
            self._start_call(id, params)
        elif method == "logging/setLevel" and params.get("level") in LOG_LEVELS:
            self._min_level = LOG_LEVELS.index(params["level"])
            self._reply(id, {})
        else:
            self._error(id, rpc.METHOD_NOT_FOUND, f"method not found: {method}")

    def _handle_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/cancelled":
            with self._lock:
                call = self._calls.get(params.get("requestId"))
            if call is not None:
                logger.info("cancelling call %r: %s", params["requestId"], params.get("reason"))
                call[1].set()
        elif method != "notifications/initialized":
            logger.debug("ignored notification %s", method)

    def _list_tools(self, id: Any, cursor: Any) -> None:
        start = 0
        if cursor is not None:
            try:  # every decoding failure is a ValueError (binascii.Error, UnicodeError)
                start = int(base64.urlsafe_b64decode(str(cursor).encode("ascii"))[7:])
                valid = str(cursor) == self._cursor(start) and 0 < start < len(self.tools)
            except ValueError:
                valid = False
            if not valid:
                return self._error(id, rpc.INVALID_PARAMS, f"bad cursor: {cursor!r}")
        end = start + self._page_size
        page: dict[str, Any] = {"tools": self.tools[start:end]}
        if end < len(self.tools):
            page["nextCursor"] = self._cursor(end)
        self._reply(id, page)

    @staticmethod
    def _cursor(offset: int) -> str:
        return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode("ascii")

    def _start_call(self, id: Any, params: Mapping[str, Any]) -> None:
        name, arguments = params.get("name"), params.get("arguments", {})
        if name not in self._names or not isinstance(arguments, dict):
            problem = "arguments must be an object" if name in self._names else "unknown tool"
            return self._error(id, rpc.INVALID_PARAMS, f"{problem}: {name!r}")
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        cancelled = threading.Event()
        thread = threading.Thread(target=self._run_call, name=f"demo-call-{id}", daemon=True,
                                  args=(id, str(name), arguments, token, cancelled))
        with self._lock:
            duplicate = id in self._calls
            if not duplicate:
                self._calls[id] = (thread, cancelled)
        if duplicate:
            return self._error(id, rpc.INVALID_REQUEST, f"duplicate request id {id!r}")
        thread.start()

    def _run_call(self, id: Any, name: str, arguments: dict[str, Any], token: Any,
                  cancelled: threading.Event) -> None:
        tool = getattr(self, f"_tool_{name}", None)
        try:
            if tool is None:  # a generated tool_NNN
                result: Result = _text(name, structured={"tool": name, "arguments": arguments})
            else:
                result = tool(arguments, token, cancelled)
        except ToolError as exc:
            result = _text(str(exc), error=True)
        except Exception as exc:  # a bug in a tool must not kill the server
            logger.exception("tool %s failed", name)
            result = _text(f"internal error: {exc!r}", error=True)
        try:
            if not cancelled.is_set():  # MCP: a cancelled request gets no response
                self._reply(id, result)
        finally:
            # Registered until the reply is written: serve() waits for the calls it knows
            # of, and an interpreter exiting under a thread that holds stdout aborts.
            with self._lock:
                del self._calls[id]

    def _ask_client(self, method: str, cancelled: threading.Event) -> Reply:
        event, got = threading.Event(), list[Reply]()
        with self._lock:
            self._client_ids += 1
            request_id = f"srv-{self._client_ids}"
            self._awaiting[request_id] = (event, got)
        self._write(rpc.encode_request(request_id, method))
        deadline = time.monotonic() + CLIENT_REPLY_TIMEOUT
        while not event.wait(SLEEP_SLICE) and not cancelled.is_set():
            if time.monotonic() >= deadline:
                break
        with self._lock:
            self._awaiting.pop(request_id, None)
        return got[0] if got else None

    # -- the tools: (arguments, progress token, cancelled event) -> CallToolResult ------------

    def _tool_echo(self, args: dict[str, Any], *_: Any) -> Result:
        return _text(_arg(args, "text", str))

    def _tool_add(self, args: dict[str, Any], *_: Any) -> Result:
        total = _arg(args, "a", (int, float)) + _arg(args, "b", (int, float))
        return _text(str(total), structured={"sum": total})

    def _tool_slow(self, args: dict[str, Any], token: Any, cancelled: threading.Event) -> Result:
        seconds, steps = float(_arg(args, "seconds", (int, float))), _arg(args, "steps", int, 5)
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
                self._notify("notifications/progress",
                             {"progressToken": token, "progress": step, "total": steps})
        return _text("done")

    def _tool_fail(self, args: dict[str, Any], *_: Any) -> Result:
        raise ToolError(_arg(args, "message", str, "the tool failed on purpose"))

    def _tool_log(self, args: dict[str, Any], *_: Any) -> Result:
        level, message = _arg(args, "level", str), _arg(args, "message", str)
        if level not in LOG_LEVELS:
            raise ToolError(f"unknown level {level!r}")
        if LOG_LEVELS.index(level) >= self._min_level:
            self._notify("notifications/message",
                         {"level": level, "logger": "demo", "data": message})
        return _text("logged")

    def _tool_crash(self, args: dict[str, Any], *_: Any) -> Result:
        code = _arg(args, "code", int, 3)
        sys.stderr.write(f"demo server: crashing on purpose with exit code {code}\n")
        sys.stderr.flush()
        os._exit(code)

    def _tool_env(self, args: dict[str, Any], *_: Any) -> Result:
        value = os.environ.get(_arg(args, "name", str))
        return _text("null" if value is None else value, structured={"value": value})

    def _tool_big(self, args: dict[str, Any], *_: Any) -> Result:
        return _text("x" * _arg(args, "bytes", int))

    def _tool_notify_list_changed(self, *_: Any) -> Result:
        self._notify("notifications/tools/list_changed")
        return _text("ok")

    def _tool_ask_client(self, _args: Any, _token: Any, cancelled: threading.Event) -> Result:
        reply = self._ask_client("roots/list", cancelled)
        if isinstance(reply, rpc.ErrorResponse):
            return _text(f"error {reply.code}",
                         structured={"error": {"code": reply.code, "message": reply.message}})
        if reply is None:
            raise ToolError(f"no answer from the client within {CLIENT_REPLY_TIMEOUT:g} s")
        return _text(f"result {json.dumps(reply.result)}", structured={"result": reply.result})

    def _tool_ping_client(self, _args: Any, _token: Any, cancelled: threading.Event) -> Result:
        reply = self._ask_client("ping", cancelled)
        if isinstance(reply, rpc.Response) and reply.result == {}:
            return _text("pong received")
        if reply is None:
            raise ToolError(f"no answer from the client within {CLIENT_REPLY_TIMEOUT:g} s")
        raise ToolError(f"unexpected answer to ping: {reply!r}")

    def _tool_count(self, *_: Any) -> Result:
        return _text(str(len(self.tools)), structured={"tools": len(self.tools)})


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
    logger.info("ready: %d tools, page size %d", len(server.tools), options.page_size)
    return server.serve()
