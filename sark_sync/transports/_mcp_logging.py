"""The log messages an MCP server sends (``notifications/message``), made safe to log.

A server logs to its client with ``notifications/message`` ``{level, logger?, data}``, where
``level`` is one of the RFC 5424 severities the spec lists (:data:`LOG_LEVELS`) and ``data``
any JSON value. The client asks for a minimum level with ``logging/setLevel`` (revisions
2024-11-05 to 2025-11-25) or, at 2026-07-28, with the ``io.modelcontextprotocol/logLevel`` key
of each request's ``_meta`` (no request sets it: see :mod:`._mcp_subscriptions`).

Each message becomes a :class:`LogMessage` and goes to the session's ``on_log`` callback (on
the session's callbacks thread, :mod:`._mcp_callbacks`) or, without one, to Python logging
under the logger ``sark_sync.mcp.<server name>`` (:func:`logger_name`) at the level
:data:`PYTHON_LEVELS` maps it to. The peer is not trusted:

- ``data`` is rendered (:func:`render`) with a budget of :data:`MAX_RENDER_CHARS` characters
  and :data:`MAX_RENDER_DEPTH` levels of nesting, whatever its size or depth, and the values
  of keys that look like secrets (``password``, ``token``, ...) are shown as ``[secure]``;
- control characters (a newline that would forge a log line, an escape sequence for a
  terminal) are escaped, in ``data`` and in the ``logger`` name alike;
- a level that is not a string or a message that is not an object is skipped with a warning;
  an unknown level string is kept (shortened) and logged at WARNING.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from .._exceptions import ValidationError
from .._redact import REDACTED, is_sensitive_key
from ._mcp_callbacks import CallbackRunner

__all__ = ["LOG_LEVELS", "LogHandler", "LogMessage", "LogRouter", "MAX_RENDER_CHARS",
           "PYTHON_LEVELS", "check_level", "logger_name", "render"]

log = logging.getLogger("sark_sync.mcp")

#: The severities of ``notifications/message`` and ``logging/setLevel``, lowest first.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
#: The Python logging level of each severity (Python has no notice, alert or emergency).
PYTHON_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
    "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
    "alert": logging.CRITICAL, "emergency": logging.CRITICAL,
}
#: Characters of a rendered ``data`` at most; longer renderings end in ``…``.
MAX_RENDER_CHARS = 4096
#: Nesting rendered at most; deeper values are shown as ``…``.
MAX_RENDER_DEPTH = 16
#: Characters kept of a peer's ``logger`` name and of an unknown level.
MAX_NAME_CHARS = 128
#: Characters of a server name kept in its Python logger's name.
MAX_LOGGER_SUFFIX = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_LOGGER_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True)
class LogMessage:
    """One log message of an MCP server (``notifications/message``).

    ``level`` is one of :data:`LOG_LEVELS` (or, from a server that breaks the spec, another
    string, shortened); ``logger`` the name the server gave its logger, if any; ``data`` the
    JSON value it logged, as received (use :attr:`text` to show it); ``server`` the name of
    the session that received it.
    """

    level: str
    logger: str | None
    data: Any = field(repr=False)
    server: str

    @property
    def text(self) -> str:
        """``data`` rendered for a log line: bounded, escaped, secrets hidden
        (:func:`render`)."""
        return render(self.data)

    @property
    def python_level(self) -> int:
        """The Python logging level of :attr:`level` (WARNING for an unknown one)."""
        return PYTHON_LEVELS.get(self.level, logging.WARNING)


LogHandler = Callable[[LogMessage], None]


def check_level(level: object) -> str:
    """``level`` if it is one of :data:`LOG_LEVELS`, else :class:`ValidationError`."""
    if not isinstance(level, str) or level not in LOG_LEVELS:
        shown = repr(level[:40]) if isinstance(level, str) else type(level).__name__
        raise ValidationError(f"level must be one of {', '.join(LOG_LEVELS)}, not {shown}")
    return level


def logger_name(server: str) -> str:
    """The Python logger of a server's messages: ``sark_sync.mcp.<server>``, the name with
    every character but letters, digits, ``_`` and ``-`` replaced by ``_`` (a dot would make
    a parent logger of part of it) and shortened to :data:`MAX_LOGGER_SUFFIX` characters.

    >>> logger_name("files.v2 (prod)")
    'sark_sync.mcp.files_v2__prod_'
    """
    suffix = _UNSAFE_LOGGER_CHARS.sub("_", server[:MAX_LOGGER_SUFFIX]) or "server"
    return f"sark_sync.mcp.{suffix}"


def escape(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b`` ...): a log line stays
    one line and a terminal never receives an escape sequence from a peer."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def render(data: Any, limit: int = MAX_RENDER_CHARS) -> str:
    """``data`` (any JSON value) as at most ``limit`` characters of JSON-like text: a string
    as itself, nesting deeper than :data:`MAX_RENDER_DEPTH` as ``…``, the values of sensitive
    keys as ``[secure]``, control characters escaped. Its cost is bounded by ``limit``, not by
    the size of ``data``."""
    out: list[str] = []
    budget = [limit + 1]  # one more: the caller sees that it was cut

    def put(text: str) -> bool:
        if budget[0] <= 0:
            return False
        text = escape(text[:budget[0]])[:budget[0]]
        out.append(text)
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(value: Any, depth: int) -> bool:
        if isinstance(value, str):
            return put(value if depth == 0 else _quote(value[:budget[0]]))
        if value is None or isinstance(value, bool):
            return put({None: "null", True: "true", False: "false"}[value])
        if isinstance(value, float):
            return put(repr(value) if math.isfinite(value) else "null")
        if isinstance(value, int):
            return put(repr(value) if value.bit_length() <= 256 else "<a large integer>")
        if not isinstance(value, (Mapping, list, tuple)):
            return put(f"<{type(value).__name__}>")
        if depth >= MAX_RENDER_DEPTH:
            return put("…")
        is_map = isinstance(value, Mapping)
        if not put("{" if is_map else "["):
            return False
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for index, (key, item) in enumerate(items):
            if index and not put(", "):
                return False
            if is_map:
                if not put(_quote(str(key)[:budget[0]]) + ": "):
                    return False
                if is_sensitive_key(key):
                    if not put(REDACTED):
                        return False
                    continue
            if not walk(item, depth + 1):
                return False
        return put("}" if is_map else "]")

    walk(data, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:max(0, limit - 1)] + "…"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse(params: Mapping[str, Any], server: str) -> LogMessage | None:
    """The :class:`LogMessage` of a ``notifications/message``'s params, or None (with a
    warning) when they are malformed."""
    level = params.get("level")
    if not isinstance(level, str):
        log.warning("%s sent a log message without a level string: skipped", server)
        return None
    if level not in LOG_LEVELS:
        level = escape(level[:MAX_NAME_CHARS])
    name = params.get("logger")
    return LogMessage(level=level,
                      logger=escape(name[:MAX_NAME_CHARS]) if isinstance(name, str) else None,
                      data=params.get("data"), server=server)


class LogRouter:
    """Where a session's log messages go: its ``on_log`` callback (on ``runner``'s thread)
    or, without one, the Python logger :func:`logger_name` names."""

    def __init__(self, server: str, on_log: LogHandler | None, runner: CallbackRunner) -> None:
        self.server = server
        self.on_log = on_log
        self._runner = runner
        self.logger = logging.getLogger(logger_name(server))

    def handle(self, params: Mapping[str, Any]) -> None:
        """Route one ``notifications/message``; never raises."""
        message = parse(params, self.server)
        if message is None:
            return
        if self.on_log is not None:
            self._runner.submit(self.on_log, message)
            return
        level = message.python_level
        if self.logger.isEnabledFor(level):
            prefix = f"[{message.logger}] " if message.logger else ""
            self.logger.log(level, "%s%s", prefix, message.text,
                            extra={"mcp_server": self.server, "mcp_level": message.level,
                                   "mcp_logger": message.logger})
