"""Celery integration: one client per worker process, and tasks that never call a tool twice.

::

    from celery import Celery
    from sark_sync.contrib.celery import GatewayTask, setup

    app = Celery("proj", broker="redis://127.0.0.1:6379/0")
    app.conf.sark_sync = {"BASE_URL": "https://sark.example.com", "TIMEOUT": 10}
    setup(app)

    @app.task(bind=True, base=GatewayTask, autoretry_for=(OSError,), max_retries=3)
    def open_ticket(self, title):
        return self.invoke_tool("tickets", "open", {"title": title}).structured

- :func:`setup` gives each worker process its own client, built on its first task and
  closed by the worker's shutdown signals, in the prefork, threads and solo pools;
  :func:`get_client` reaches it inside any task;
- :class:`GatewayTask` sends idempotency keys derived from the task id, so a retried task
  gets the gateway's first answer instead of running the tool again, and retries a
  retryable :class:`~sark_sync.GatewayError` after its ``retry_after`` or a backoff;
- :func:`idempotency_key` and :func:`retry_or_raise` do the same for tasks of any base;
  :func:`later` is the rule that decides which errors retry a task.

Every sark_sync exception travels through Celery's JSON result backend with its type and
attributes. See ``docs/integrations/celery.md``.
"""

from __future__ import annotations

from ._task import GatewayTask, idempotency_key, later, retry_countdown, retry_or_raise
from ._worker import SETTING_NAME, close_clients, get_client, setup

__all__ = ["SETTING_NAME", "GatewayTask", "close_clients", "get_client", "idempotency_key",
           "later", "retry_countdown", "retry_or_raise", "setup"]
