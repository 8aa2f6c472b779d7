"""MCP 2026-07-28 over HTTP: the per-request envelope, its routing headers, and negotiation.

The 2026-07-28 revision drops ``initialize`` and the session: every request stands alone and
says who sends it and at which version, twice (facts: ``docs/dev/MCP_HTTP_FACTS.md`` §4):

- in the body, ``params._meta`` carries ``io.modelcontextprotocol/protocolVersion``,
  ``.../clientCapabilities`` and ``.../clientInfo`` (:func:`envelope`);
- in the headers, ``MCP-Protocol-Version`` (equal to the body's), ``Mcp-Method`` (the body's
  method) and, for ``tools/call``, ``prompts/get`` and ``resources/read``, ``Mcp-Name`` (the
  tool or prompt name, the resource URI) so that a load balancer can route without reading the
  body (:func:`routing_headers`). A value that is not plain printable ASCII, or that has edge
  whitespace, or that looks like the sentinel itself, travels as ``=?base64?<utf-8 b64>?=``
  (:func:`encode_header_value`): an HTTP header cannot carry it verbatim;
- a tool argument whose schema says ``x-mcp-header: X`` travels in ``Mcp-Param-X`` too (a
  2026 server refuses a call whose headers and arguments disagree): :class:`ParamHeaders`
  learns the annotations from ``tools/list`` (leaving out, with a warning, a tool whose
  annotation is invalid, as the spec asks), and a call refused -32020 for a tool never listed
  lists the tools and is sent once more (:func:`relearn`: the server refused it before
  running it);
- a result says ``resultType``: ``"complete"`` is the answer; ``"input_required"`` is answered
  by :mod:`._mcp_input` where allowed, else refused like any other (:func:`check_result`).

:func:`negotiate` picks the revision when a :class:`RemoteServer` connects: it probes
``server/discover`` at 2026-07-28 and falls back to ``initialize`` at 2025-11-25 when the
server's answer says it is older. Only an answer about the protocol decides: a JSON-RPC error,
or a 400/404/405 (what 2025 servers answer to a request without a session); a network error,
a timeout, a 401/403 or a 5xx is no answer about the version and propagates.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Protocol

from ..__version__ import __version__
from .._exceptions import APIError, ProtocolError, RPCError
from ..wire import jsonrpc
from ._mcp_client import MAX_TOOL_PAGES, SUPPORTED_PROTOCOL_VERSIONS, McpSession
from ._mcp_input import INPUT_METHODS, InputLoop

__all__ = ["MODERN_PROTOCOL_VERSIONS", "MODERN_VERSION", "ParamHeaders", "check_result",
           "complete", "decode_header_value", "encode_header_value", "envelope",
           "error_of_answer", "header_map", "negotiate", "prepare", "relearn", "routing_headers"]

log = logging.getLogger("sark_sync.mcp")

#: The newest revision, probed first; no ``initialize``, no session.
MODERN_VERSION = "2026-07-28"
#: Revisions that use the per-request envelope instead of ``initialize``, newest first.
MODERN_PROTOCOL_VERSIONS = (MODERN_VERSION,)
#: The ``_meta`` keys of the envelope.
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"
#: Method -> the params field that ``Mcp-Name`` mirrors.
NAME_FIELDS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
#: The JSON-RPC error of a server that supports none of the versions asked for; its
#: ``data.supported`` lists those it does.
UNSUPPORTED_PROTOCOL_VERSION = -32022
#: HTTP statuses of a refused probe that mean "an older server": 2025 servers answer a
#: request without a session 400 (Missing session ID), 404 or 405.
FALLBACK_STATUSES = (400, 404, 405)
#: What ``protocol_version=`` accepts besides a version: negotiate.
AUTO = "auto"
#: The JSON-RPC error of a request whose routing headers disagree with its body.
HEADER_MISMATCH = -32020
#: The schema annotation that makes a tool argument travel in an ``Mcp-Param-<token>`` header
#: too, and the JSON types it may annotate.
PARAM_HEADER_KEY = "x-mcp-header"
PARAM_TYPES = ("string", "integer", "boolean")
#: Nesting followed in a tool's schema when looking for annotations.
MAX_SCHEMA_DEPTH = 32

_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=", re.DOTALL)
_PLAIN = re.compile(r"[\x20-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110)


def encode_header_value(value: str) -> str:
    """``value`` as an HTTP header carries it: verbatim when it is printable ASCII (0x20-0x7E)
    with no leading or trailing whitespace, else ``=?base64?<base64 of its UTF-8>?=`` (standard
    alphabet, padded). A plain value that looks like the sentinel is encoded too, so decoding
    is never ambiguous.

    >>> encode_header_value("echo"), encode_header_value("héllo")
    ('echo', '=?base64?aMOpbGxv?=')
    """
    if _PLAIN.fullmatch(value) and value == value.strip() and not _SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def decode_header_value(value: str) -> str | None:
    """The inverse of :func:`encode_header_value`: a sentinel decoded, anything else as is;
    None for a malformed sentinel (bad or non-canonical base64, bad UTF-8)."""
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def envelope(params: Mapping[str, Any] | None, version: str,
             log_level: str | None = None,
             capabilities: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``params`` with the 2026 ``_meta`` envelope added (keys the caller set in ``_meta``,
    e.g. ``progressToken``, are kept), and ``log_level`` (the session's, if it set one) as
    ``io.modelcontextprotocol/logLevel``: at 2026 a server logs only to requests that ask;
    ``capabilities`` are the client's (those of the session's handlers)."""
    body = dict(params or {})
    given = body.get("_meta")
    meta = dict(given) if isinstance(given, Mapping) else {}
    if log_level is not None:
        meta.setdefault(LOG_LEVEL_KEY, log_level)
    meta[PROTOCOL_VERSION_KEY] = version
    meta[CLIENT_CAPABILITIES_KEY] = dict(capabilities or {})
    meta[CLIENT_INFO_KEY] = {"name": "sark-sync", "version": __version__}
    body["_meta"] = meta
    return body


def routing_headers(method: str, params: Mapping[str, Any] | None,
                    version: str) -> dict[str, str]:
    """The headers a 2026 request carries: the version, ``Mcp-Method`` and, for the methods
    that name something, ``Mcp-Name``."""
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": encode_header_value(method)}
    field = NAME_FIELDS.get(method)
    value = params.get(field) if field is not None and params is not None else None
    if isinstance(value, str):
        headers["Mcp-Name"] = encode_header_value(value)
    return headers


def prepare(method: str, params: Mapping[str, Any] | None, version: str | None,
            tools: ParamHeaders) -> tuple[Mapping[str, Any] | None, dict[str, str]]:
    """A message's params and extra headers: at a 2026 ``version`` the envelope, the routing
    headers and a ``tools/call``'s ``Mcp-Param-*``; at 2025 (``version`` None) the params as
    given and none."""
    if version is None:
        return params, {}
    headers = routing_headers(method, params, version)
    if method == "tools/call":
        headers.update(tools.headers(params))
    caps = tools.inputs.capabilities(version) if tools.inputs is not None else None
    return envelope(params, version, tools.log_level, caps), headers


def complete(result: Any, method: str, server: str, tools: ParamHeaders) -> Any:
    """A 2026 result after :func:`check_result` (an ``input_required`` one passes when the
    session answers input: ``tools.inputs``); a ``tools/list`` page is learned from
    (:class:`ParamHeaders`)."""
    check_result(result, method, server, tools.inputs is not None)
    return tools.learn(result, server) if method == "tools/list" else result


def check_result(result: Any, method: str, server: str, asking: bool = False) -> Any:
    """``result`` if complete (no ``resultType``: older servers), or ``input_required`` for
    a request that may ask when ``asking`` (the session answers); else a ProtocolError."""
    kind = result.get("resultType") if isinstance(result, Mapping) else None
    if kind is None or kind == "complete":
        return result
    if kind == "input_required" and asking and method in INPUT_METHODS:
        return result
    raise ProtocolError(f"{server!r} answered {method} with resultType {str(kind)[:40]!r}, "
                        "which sark_sync does not accept there", server=server)


# -- negotiation ---------------------------------------------------------------------------


class ModernChannel(Protocol):
    """What :func:`negotiate` needs of the channel: its requests, and its era switch
    (``modern_version`` None speaks the 2025 wire, a version the 2026 one)."""

    modern_version: str | None

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        ...


def negotiate(session: McpSession, channel: ModernChannel, wanted: str, *,
              timeout: float, server: str) -> None:
    """Connect ``session`` over ``channel`` at the revision ``wanted`` names, within
    ``timeout`` seconds.

    ``wanted`` is ``"auto"`` (probe 2026-07-28, fall back to 2025-11-25), a modern version
    (probe it, never fall back: a refusal raises) or a handshake version (``initialize``
    offering it, no probe).
    """
    deadline = time.monotonic() + timeout
    if wanted != AUTO and wanted not in MODERN_PROTOCOL_VERSIONS:
        channel.modern_version = None
        session.handshake(timeout, wanted)
        return
    version = MODERN_VERSION if wanted == AUTO else wanted
    for attempt in range(2):
        channel.modern_version = version
        try:
            result = channel.request("server/discover", None,
                                     max(0.0, deadline - time.monotonic()))
        except RPCError as exc:
            retry = _next_version(exc, version, attempt)
            if retry is not None:
                version = retry
                continue
            if wanted != AUTO or _modern_only(exc):
                raise
            log.debug("%s refused server/discover (%s): falling back to initialize",
                      server, exc.code)
        except APIError as exc:
            if wanted != AUTO or exc.status_code not in FALLBACK_STATUSES:
                raise
            log.debug("%s answered server/discover %s: falling back to initialize",
                      server, exc.status_code)
        else:
            offered = result.get("supportedVersions") if isinstance(result, Mapping) else None
            if isinstance(offered, list) and version in offered:
                assert isinstance(result, Mapping)
                session.adopt_discovery(result, version)
                return
            if wanted != AUTO:
                raise ProtocolError(f"{server!r} does not offer protocol version {version} "
                                    f"(it offers {str(offered)[:200]})", server=server)
            log.debug("%s offers no modern version: falling back to initialize", server)
        break
    channel.modern_version = None
    session.handshake(max(0.0, deadline - time.monotonic()))


def _supported(exc: RPCError) -> list[str] | None:
    data = exc.data
    supported = data.get("supported") if isinstance(data, Mapping) else None
    if isinstance(supported, list) and all(isinstance(v, str) for v in supported):
        return supported
    return None


def _next_version(exc: RPCError, tried: str, attempt: int) -> str | None:
    """The version to probe again after a -32022 that names a mutual modern one."""
    if exc.code != UNSUPPORTED_PROTOCOL_VERSION or attempt:
        return None
    mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in (_supported(exc) or ()) and v != tried]
    return mutual[0] if mutual else None


def _modern_only(exc: RPCError) -> bool:
    """A -32022 naming only versions that are neither ours nor handshake ones: a modern server
    with nothing in common, where ``initialize`` would be refused too."""
    supported = _supported(exc)
    return (exc.code == UNSUPPORTED_PROTOCOL_VERSION and supported is not None
            and not any(v in SUPPORTED_PROTOCOL_VERSIONS for v in supported))


def error_of_answer(raw: bytes, status: int, server: str) -> RPCError | None:
    """The :class:`RPCError` a 2026 server's non-2xx answer carries in its body (it answers
    -32022, -32601, -32602 ... with 400 or 404 and a JSON-RPC error), or None if the body is
    not one. ``status_code`` keeps the HTTP status."""
    try:
        message = jsonrpc.parse_line(raw)
    except (jsonrpc.FramingError, ValueError):
        return None
    if not isinstance(message, jsonrpc.ErrorResponse):
        return None
    return RPCError(f"{server!r} answered error {message.code}: {message.message[:200]}",
                    code=message.code, rpc_message=message.message, data=message.data,
                    server=server, status_code=status)


# -- Mcp-Param-* headers (x-mcp-header) -----------------------------------------------------


def header_map(schema: Any) -> dict[tuple[str, ...], str]:
    """``{property path: header token}`` of the ``x-mcp-header`` annotations of a tool's
    ``inputSchema``, found along ``properties`` chains from the root; ``ValueError`` if one is
    invalid (not an HTTP token, on a property that is not a string, integer or boolean, or a
    token used twice, case-insensitively)."""
    found: dict[tuple[str, ...], str] = {}
    tokens: set[str] = set()
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        properties = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(properties, Mapping) or len(path) >= MAX_SCHEMA_DEPTH:
            continue
        for key, sub in properties.items():
            here = (*path, str(key))
            if isinstance(sub, Mapping) and PARAM_HEADER_KEY in sub:
                token, where = sub[PARAM_HEADER_KEY], ".".join(here)
                if not isinstance(token, str) or not _TOKEN.fullmatch(token):
                    raise ValueError(f"property {where!r}: {str(token)[:40]!r} is not an "
                                     "HTTP header token")
                if sub.get("type") not in PARAM_TYPES:
                    raise ValueError(f"property {where!r}: only a string, integer or boolean "
                                     "may be a header")
                if token.lower() in tokens:
                    raise ValueError(f"property {where!r}: header {token!r} declared twice")
                tokens.add(token.lower())
                found[here] = token
            stack.append((here, sub))
    return found


class ParamHeaders:
    """The ``Mcp-Param-<token>`` headers of each tool, learned from ``tools/list`` results
    (a 2026 server checks them against the arguments: a tool whose schema names one cannot be
    called without it), and the log level of every request's envelope. Thread-safe."""

    def __init__(self) -> None:
        self._maps: dict[str, dict[tuple[str, ...], str]] = {}
        #: The log level every request asks for (``set_logging_level``), None: no logs.
        self.log_level: str | None = None
        #: Answers input_required and declares the client's capabilities (None: refused).
        self.inputs: InputLoop | None = None
        self._lock = threading.Lock()

    def learn(self, result: Any, server: str) -> Any:
        """``result`` (a ``tools/list`` page) after noting each tool's headers; a tool with an
        invalid declaration is left out with a warning, as the spec asks of clients."""
        tools = result.get("tools") if isinstance(result, Mapping) else None
        if not isinstance(tools, list):
            return result
        kept: list[Any] = []
        for tool in tools:
            name = tool.get("name") if isinstance(tool, Mapping) else None
            if isinstance(tool, Mapping) and isinstance(name, str):
                try:
                    found = header_map(tool.get("inputSchema"))
                except ValueError as exc:
                    log.warning("excluding tool %r of %s: invalid x-mcp-header declaration: %s",
                                name[:80], server, exc)
                    continue
                with self._lock:
                    self._maps[name] = found
            kept.append(tool)
        return result if len(kept) == len(tools) else dict(result, tools=kept)

    def known(self, name: str) -> bool:
        with self._lock:
            return name in self._maps

    def headers(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        """The ``Mcp-Param-*`` headers of a ``tools/call``'s params (an argument that is
        absent, null or not a scalar gets none)."""
        name = params.get("name") if params is not None else None
        arguments = params.get("arguments") if params is not None else None
        with self._lock:
            found = self._maps.get(name) if isinstance(name, str) else None
        if not found or not isinstance(arguments, Mapping):
            return {}
        headers: dict[str, str] = {}
        for path, token in found.items():
            value: Any = arguments
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                rendered = str(value)
            else:
                continue
            headers[f"Mcp-Param-{token}"] = encode_header_value(rendered)
        return headers


def relearn(request: Callable[[str, Mapping[str, Any] | None, float], Any],
            tools: ParamHeaders, error: RPCError, params: Mapping[str, Any] | None,
            sent: Mapping[str, str], deadline: float) -> bool:
    """After a ``tools/call`` refused for its headers (-32020, before the tool ran): list the
    tools if this one was never listed (every page through ``request``, which learns them)
    and say whether sending the call again would carry other ``Mcp-Param-*`` headers than
    ``sent`` (else the refusal stands)."""
    name = params.get("name") if params is not None else None
    if error.code != HEADER_MISMATCH or not isinstance(name, str):
        return False
    cursor: Any = None
    for _ in range(MAX_TOOL_PAGES if not tools.known(name) else 0):
        page = request("tools/list", {"cursor": cursor} if cursor else None,
                       max(0.0, deadline - time.monotonic()))
        cursor = page.get("nextCursor") if isinstance(page, Mapping) else None
        if tools.known(name) or not isinstance(cursor, str) or not cursor:
            break
    before = {k: v for k, v in sent.items() if k.startswith("Mcp-Param-")}
    return tools.known(name) and tools.headers(params) != before
