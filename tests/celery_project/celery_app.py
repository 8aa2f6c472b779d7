"""The Celery app of the tests: what a user writes with ``sark_sync.contrib.celery``.

Run in process by the eager tests (``task.apply()``) and by real workers (``celery -A
celery_app worker``, started by tests/integration/contrib/test_celery_worker.py with this
folder and tests/ on PYTHONPATH). Its broker and result backend come from
``SARK_TEST_CELERY_BROKER`` / ``SARK_TEST_CELERY_BACKEND`` (a real Redis in the worker tests;
in memory otherwise) and the client's settings from the ``SARK_*`` environment, as in
production (the in-process tests call ``setup(app, settings=...)`` instead).

The gateway (a LocalGateway) serves ``demo``, whose ``echo`` returns its parameters and whose
``open_ticket`` counts its runs (``gateway.tool_runs``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from sark_sync import GatewayError
from sark_sync.contrib.celery import GatewayTask, get_client, idempotency_key, retry_or_raise, setup

app = Celery(
    "sark_celery_tests",
    broker=os.environ.get("SARK_TEST_CELERY_BROKER", "memory://"),
    backend=os.environ.get("SARK_TEST_CELERY_BACKEND", "cache+memory://"),
)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    result_accept_content=["json"], broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=4, result_expires=600,
)
setup(app)


class Flaky(Exception):
    """A step after the tool call that fails once: what autoretry_for retries."""


@app.task(bind=True, base=GatewayTask)
def echo(self: GatewayTask, number: int) -> dict[str, Any]:
    result = self.invoke_tool("demo", "echo", {"n": number})
    return {"pid": os.getpid(), "client": id(self.client), "echo": result.structured}


@app.task(bind=True, base=GatewayTask, autoretry_for=(Flaky,), max_retries=3,
          retry_backoff=False, default_retry_delay=0)
def open_then_fail_once(self: GatewayTask, title: str) -> dict[str, Any]:
    """Opens a ticket, then fails on the first run: Celery retries the whole task."""
    first = self.invoke_tool("demo", "open_ticket", {"title": title})
    second = self.invoke_tool("demo", "open_ticket", {"title": title + " (follow-up)"})
    if self.request.retries == 0:
        raise Flaky("the step after the tool call failed")
    return {"retries": self.request.retries, "first": first.structured,
            "second": second.structured}


@app.task(bind=True, max_retries=2, default_retry_delay=0)
def plain_task_with_helpers(self: Any, title: str) -> Any:
    """A task of any base: the helpers do what GatewayTask does."""
    try:
        return get_client().invoke_tool("demo", "open_ticket", {"title": title},
                                        idempotency_key=idempotency_key("open")).structured
    except GatewayError as error:
        retry_or_raise(self, error)


@app.task
def raise_public_error(name: str) -> None:
    """Raises the catalogue's instance of the public exception ``name``."""
    from error_catalogue import PUBLIC, build

    raise build(next(cls for cls in PUBLIC if cls.__name__ == name))
