"""How ``sark-sync`` reports an error: one line for people, one JSON document under ``--json``.

Design: :func:`sark_sync.cli.main` catches what a subcommand raised, takes its exit status
from :func:`~._common.exit_code_for` and hands both to :func:`report_error`, the one place
that prints an error. Without ``--json`` the error is the line
``sark-sync: error: <Type>: <message> (<context>)``; with it, the error is one JSON line,
``{"error": {"type": ..., "message": ..., "exit_code": ..., <context>}}``. Both go to standard
error, so standard output never holds anything but a result: a script can parse standard
output as the result whatever happened, and standard error as the error when the status is
not 0. The context is the error's own fields (status code, server, tool, request id,
Retry-After ...), never a credential: the library keeps API keys, tokens and parameter values
out of messages, and a URL is shown without its user, password, query and fragment.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, TextIO

from .._exceptions import GatewayError, TransportError
from ._common import UsageError

__all__ = ["error_document", "one_line", "report_error", "tool_error_document"]

#: Context of an error worth a person's attention, in this order (method and code are in the
#: message or implied; the URL only says which gateway, shown for transport errors).
_SHOWN_CONTEXT = ("status_code", "server", "tool", "request_id", "attempts", "retry_after",
                  "timeout", "slept", "last_error")
#: Context of the JSON form, in this order, when set: what a script branches or logs on.
_JSON_CONTEXT = ("status_code", "code", "reason", "server", "tool", "request_id",
                 "retry_after", "retryable", "attempts", "timeout", "slept", "last_error",
                 "returncode", "command")
#: Attributes of some error classes that context() does not hold (a policy's reason, a local
#: server's exit code and program; ``retryable`` where the error says whether to retry).
_OWN_FIELDS = ("reason", "retryable", "returncode", "command")
#: The type of the error document of a Ctrl-C.
INTERRUPTED = "Interrupted"


def one_line(error: BaseException) -> str:
    """``Type: message (context)`` on one line. A UsageError is its message alone; a
    ProcessExitedError's stderr tail (several lines, shown with --debug) is left out."""
    if not isinstance(error, GatewayError):
        text = _first_line(str(error))
        return text if isinstance(error, UsageError) else f"{type(error).__name__}: {text}"
    context = error.context()
    shown = {key: context[key] for key in _SHOWN_CONTEXT if key in context}
    if shown.get("attempts") == 1:
        del shown["attempts"]
    if isinstance(error, TransportError) and "url" in context:
        shown = {"url": _safe_url(context["url"]), **shown}
    details = ", ".join(f"{key}={_rounded(value)}" for key, value in shown.items())
    return f"{type(error).__name__}: {_first_line(error.message)}" + (
        f" ({details})" if details else "")


def error_document(error: BaseException, exit_code: int) -> dict[str, Any]:
    """``{"error": {...}}`` for ``error``: its type, message (the first line: a local
    server's stderr tail stays out), exit status and the context that is set."""
    if isinstance(error, KeyboardInterrupt):
        return {"error": {"type": INTERRUPTED, "message": "interrupted",
                          "exit_code": exit_code}}
    body: dict[str, Any] = {
        "type": type(error).__name__,
        "message": _first_line(error.message if isinstance(error, GatewayError)
                               else str(error)),
        "exit_code": exit_code,
    }
    if not isinstance(error, GatewayError):
        return {"error": body}
    # context(): the fields that are set, subclasses' own included (a deadline's timeout).
    context = {**{key: getattr(error, key, None) for key in _OWN_FIELDS}, **error.context()}
    for key in _JSON_CONTEXT:
        value = context.get(key)
        if value is not None and (key != "retryable" or isinstance(value, bool)):
            body[key] = _rounded(value) if isinstance(value, (str, int, float, bool)) \
                else str(value)
    if isinstance(error, TransportError) and error.url:
        body["url"] = _safe_url(error.url)
    return {"error": body}


def tool_error_document(server: str, tool: str, request_id: str | None, exit_code: int
                        ) -> dict[str, Any]:
    """The error document of a call whose tool reported an error (``isError``): the result
    itself is on standard output."""
    body: dict[str, Any] = {
        "type": "ToolExecutionError",
        "message": f"tool {server}/{tool} reported an error (the result is on standard output)",
        "exit_code": exit_code, "server": server, "tool": tool,
    }
    if request_id:
        body["request_id"] = request_id
    return {"error": body}


def report_error(error: BaseException, exit_code: int, as_json: bool, err: TextIO) -> None:
    """Print ``error`` on ``err``: its JSON document (one line) or its one line."""
    if as_json:
        err.write(json.dumps(error_document(error, exit_code), ensure_ascii=False,
                             default=str) + "\n")
    elif isinstance(error, KeyboardInterrupt):
        err.write("sark-sync: interrupted\n")
    else:
        err.write(f"sark-sync: error: {one_line(error)}\n")
    err.flush()


def _rounded(value: Any) -> Any:
    """Seconds to the millisecond: a timeout measured as the budget left (0.49998...) is
    shown as the 0.5 it was."""
    return round(value, 3) if isinstance(value, float) else value


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "no message"


def _safe_url(url: object) -> str:
    """``url`` without user info, query or fragment (where a credential could hide)."""
    try:
        parts = urllib.parse.urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port is not None else "")
    except ValueError:
        return "(unparsable URL)"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
