"""Tasks that call tools: keys that make a retried task harmless, retries the error decides.

Celery retries a task by running it again, from the top, under the same task id. A task that
called a tool and then failed (a later step raised, the worker was lost, ``autoretry_for``
caught something) calls the tool again on the retry: with the client's random idempotency
key each run is a new call, and the ticket is opened twice. A key derived from the task id
and the call's place in the task is the same in every run, so the gateway answers the retry
with the first result instead of running the tool again. (Only the gateway deduplicates: a
local or remote MCP server has no idempotency keys, and a retried task calls it again.)

Which errors to retry is the error's own ``retryable`` (sark_sync's one retry rule), and how
long to wait is its ``retry_after`` when the gateway said, else Celery's exponential backoff
with jitter; a user's tuple of exception types can only approximate that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from celery import Task, current_task
from celery.utils.time import get_exponential_backoff_interval

from ..._config import MAX_SECONDS
from ..._exceptions import (
    AuthorizationUnavailable,
    ConfigurationError,
    DeadlineExceeded,
    GatewayError,
)
from ..._models import ToolResult
from ...client import GatewayClient
from ._worker import get_client

__all__ = ["KEY_PREFIX", "GatewayTask", "idempotency_key", "later", "retry_countdown",
           "retry_or_raise"]

#: How derived keys start, so that the gateway's logs tell them from the client's own.
KEY_PREFIX = "celery-"

if TYPE_CHECKING:
    _TaskBase = Task[Any, Any]
else:
    _TaskBase = Task


def idempotency_key(*parts: object, task: Any = None) -> str:
    """A key for a tool call made by the running task (or ``task``): the same in every retry
    of that task, different for every other task and for other ``parts``.

    ``parts`` name the call within the task (``"open_ticket"``, an item's id ...): two calls
    of one task that must both happen need different parts. :class:`GatewayTask` derives them
    itself. Raises :class:`~sark_sync.ConfigurationError` outside a task (no id to derive from).
    """
    task = task if task is not None else current_task
    task_id = getattr(getattr(task, "request", None), "id", None) if task else None
    if not isinstance(task_id, str) or not task_id:
        raise ConfigurationError("idempotency_key() is derived from the running task's id: "
                                 "call it inside a task (or pass task=)")
    text = "\x00".join([task_id, *(str(part) for part in parts)])
    return KEY_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def retry_countdown(error: GatewayError, retries: int, *, factor: int = 2, maximum: int = 300,
                    jitter: bool = True) -> float:
    """Seconds before retry number ``retries + 1`` of a task that failed with ``error``: the
    gateway's ``retry_after`` when it sent one (at most 24 h), else Celery's exponential
    backoff (``factor * 2**retries``, at most ``maximum``; full jitter unless ``jitter=False``).
    """
    if error.retry_after is not None:
        return float(min(max(error.retry_after, 0.0), MAX_SECONDS))
    return float(get_exponential_backoff_interval(factor, retries, maximum, jitter))


def later(error: BaseException) -> bool:
    """Whether a task that failed with ``error`` may succeed if run again later:

    - a ``retryable`` :class:`~sark_sync.GatewayError` (what the client itself retries);
    - one with a ``retry_after``: a 429 or 503 that asked for a wait the worker does not
      sleep through, an open circuit (its next probe);
    - a :class:`~sark_sync.DeadlineExceeded` (the call ran out of time, the next may not) or an
      :class:`~sark_sync.AuthorizationUnavailable` (the client's policy engine was down;
      nothing was sent).

    Denials, validation errors, 404s, a 500 are not: trying again would fail the same way.
    """
    if not isinstance(error, GatewayError):
        return False
    return error.retryable or error.retry_after is not None or isinstance(
        error, (DeadlineExceeded, AuthorizationUnavailable))


def retry_or_raise(task: Any, error: BaseException, **options: Any) -> NoReturn:
    """Raise what a bound task should raise for ``error``: ``task.retry(...)`` when
    :func:`later` says it may succeed later (after :func:`retry_countdown`), ``error`` itself
    otherwise, and once ``max_retries`` is used up (Celery raises it then)::

        @app.task(bind=True, max_retries=5)
        def sync_user(self, user_id):
            try:
                return get_client().invoke_tool("crm", "sync", {"id": user_id},
                                                idempotency_key=idempotency_key())
            except GatewayError as error:
                retry_or_raise(self, error)

    ``options`` go to ``task.retry`` (``countdown`` overrides the computed one).
    """
    if not isinstance(error, GatewayError) or not later(error):
        raise error
    if "countdown" not in options and "eta" not in options:
        options["countdown"] = retry_countdown(
            error, int(task.request.retries or 0),
            factor=_int(getattr(task, "retry_backoff", 2), 2),
            maximum=_int(getattr(task, "retry_backoff_max", 300), 300),
            jitter=bool(getattr(task, "retry_jitter", True)))
    raise task.retry(exc=error, **options)


def _int(value: object, default: int) -> int:
    # Celery's retry_backoff may be True (meaning 1) or a number; False falls back to default.
    if value is True:
        return 1
    return int(value) if isinstance(value, (int, float)) and value > 0 else default


class GatewayTask(_TaskBase):
    """A task base class for tool calls: ``@app.task(bind=True, base=GatewayTask)``.

    - :meth:`invoke_tool` sends a key derived from the task id, the server, the tool and how
      many calls of that tool came before in this run: a retried task (``autoretry_for``,
      ``self.retry()``, a lost worker with ``acks_late``) never runs a gateway tool twice;
    - a :class:`~sark_sync.GatewayError` that may pass later (:func:`later`: retryable, a
      ``retry_after``, an open circuit, a deadline) escaping the task retries it (set
      ``retry_gateway_errors = False`` to fail instead), after the gateway's ``retry_after``
      or the backoff of ``retry_backoff`` / ``retry_backoff_max`` / ``retry_jitter``, at
      most ``max_retries`` times; then, and for any other error, the task fails with it.
    """

    retry_gateway_errors: bool = True
    max_retries = 5
    retry_backoff: Any = 2
    retry_backoff_max = 300
    retry_jitter = True

    @property
    def client(self) -> GatewayClient:
        """This worker process's client (:func:`~sark_sync.contrib.celery.get_client`)."""
        return get_client(self.app)

    def invoke_tool(self, server: str, tool: str, parameters: Mapping[str, Any] | None = None,
                    **options: Any) -> ToolResult:
        """:meth:`GatewayClient.invoke_tool <sark_sync.GatewayClient.invoke_tool>` with an
        ``idempotency_key`` derived from the task (unless one is given). Outside a worker (the
        task called as a function) there is no task id and the client's own key is sent."""
        if options.get("idempotency_key") is None:
            key = self._next_key(server, tool)
            if key is not None:
                options["idempotency_key"] = key
        return self.client.invoke_tool(server, tool, parameters, **options)

    def _next_key(self, server: str, tool: str) -> str | None:
        request = self.request
        if not isinstance(getattr(request, "id", None), str):
            return None
        # The count lives on this run's request context, which Celery makes anew per run.
        calls: dict[tuple[str, str], int] = request.__dict__.setdefault("_sark_sync_calls", {})
        number = calls[(server, tool)] = calls.get((server, tool), 0) + 1
        return idempotency_key(server, tool, number, task=self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except GatewayError as error:
            if not self.retry_gateway_errors:
                raise
            retry_or_raise(self, error)
