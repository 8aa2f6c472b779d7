"""sark_sync.contrib.celery in process, against a real LocalGateway: tasks run by Celery's own
tracer (``task.apply()``: the worker's code path, retries included, without a broker), the
per-process client, idempotency keys derived from the task, and retries the error decides.
The real workers (prefork, threads, solo) with a real Redis are in test_celery_worker.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Retry
from celery_project import celery_app
from celery_project.gateway import API_KEY, demo_gateway
from support import FAST_RETRY, in_child

import sark_sync
from sark_sync import ConfigurationError, GatewayError, NotFoundError, ServiceUnavailableError
from sark_sync.contrib import celery as sark_celery
from sark_sync.testing import Fault, LocalGateway

FAST = {"attempts": FAST_RETRY.attempts, "backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    with demo_gateway() as gateway:
        yield gateway


@pytest.fixture
def app(gateway: LocalGateway) -> Iterator[Celery]:
    """The test project's app, its client pointed at this test's gateway."""
    sark_celery.setup(celery_app.app, settings={"BASE_URL": gateway.url, "API_KEY": API_KEY})
    yield celery_app.app
    sark_celery.close_clients()


@contextmanager
def retry_countdowns(task: Any) -> Iterator[list[float]]:
    """The ``countdown`` of every ``task.retry()`` call made inside the block, in order."""
    countdowns: list[float] = []
    original = task.retry

    def spy(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return original(*args, **kwargs)

    task.retry = spy
    try:
        yield countdowns
    finally:
        del task.retry


def invoke_keys(gateway: LocalGateway, tool: str) -> list[str | None]:
    return [r.headers.get("Idempotency-Key") for r in gateway.requests
            if r.path == "/api/v1/invoke" and r.body and tool.encode() in r.body]


def test_a_task_calls_a_tool_with_the_process_client(app: Celery, gateway: LocalGateway
                                                     ) -> None:
    first = celery_app.echo.apply((1,)).get()
    second = celery_app.echo.apply((2,)).get()
    assert first["echo"] == {"n": 1} and second["echo"] == {"n": 2}
    assert first["client"] == second["client"] == id(sark_celery.get_client(app))
    assert first["pid"] == os.getpid()


def test_autoretry_after_the_tool_ran_runs_the_tool_once(app: Celery, gateway: LocalGateway
                                                         ) -> None:
    result = celery_app.open_then_fail_once.apply(("disk full",))
    assert result.successful(), result.traceback
    value = result.get()
    assert value["retries"] == 1
    # The retry got the first run's answers: the same tickets, each opened once.
    assert value["first"] == {"ticket": 1, "title": "disk full"}
    assert value["second"] == {"ticket": 2, "title": "disk full (follow-up)"}
    assert gateway.tool_runs("demo", "open_ticket") == 2
    keys = invoke_keys(gateway, "open_ticket")
    assert len(keys) == 4 and keys[0] == keys[2] and keys[1] == keys[3] and keys[0] != keys[1]
    assert all(key and key.startswith("celery-") for key in keys)


def test_another_task_gets_other_keys(app: Celery, gateway: LocalGateway) -> None:
    celery_app.open_then_fail_once.apply(("a",)).get()
    celery_app.open_then_fail_once.apply(("a",)).get()
    assert gateway.tool_runs("demo", "open_ticket") == 4
    assert len(set(invoke_keys(gateway, "open_ticket"))) == 4


def test_the_key_is_derived_from_the_task_id(app: Celery, gateway: LocalGateway) -> None:
    celery_app.open_then_fail_once.apply(("a",), task_id="task-1").get()
    first = invoke_keys(gateway, "open_ticket")[:2]
    # The same task id later (a redelivered message, acks_late): nothing runs again.
    celery_app.open_then_fail_once.apply(("a",), task_id="task-1").get()
    assert invoke_keys(gateway, "open_ticket")[-2:] == first
    assert gateway.tool_runs("demo", "open_ticket") == 2


def test_idempotency_key_is_stable_and_needs_a_task() -> None:
    class FakeTask:
        class request:  # noqa: N801 - the shape of a Celery task's request
            id = "abc"

    key = sark_celery.idempotency_key("open", 1, task=FakeTask())
    assert key == sark_celery.idempotency_key("open", 1, task=FakeTask())
    assert key != sark_celery.idempotency_key("open", 2, task=FakeTask())
    assert key.startswith("celery-") and len(key) == len("celery-") + 40
    with pytest.raises(ConfigurationError, match="inside a task"):
        sark_celery.idempotency_key("open")


def test_a_task_called_as_a_function_sends_the_clients_own_key(app: Celery,
                                                                gateway: LocalGateway) -> None:
    assert celery_app.echo(5)["echo"] == {"n": 5}
    (key,) = invoke_keys(gateway, "echo")
    assert key and not key.startswith("celery-")


def test_the_helpers_on_a_plain_task(app: Celery, gateway: LocalGateway) -> None:
    task_id = "plain-1"
    first = celery_app.plain_task_with_helpers.apply(("x",), task_id=task_id).get()
    again = celery_app.plain_task_with_helpers.apply(("x",), task_id=task_id).get()
    assert first == again == {"ticket": 1, "title": "x"}
    assert gateway.tool_runs("demo", "open_ticket") == 1


def test_a_retryable_error_retries_the_task_after_retry_after(app: Celery,
                                                              gateway: LocalGateway) -> None:
    # The worker's default retry policy never sleeps on Retry-After: the 503 is raised with
    # retry_after, and GatewayTask asks Celery to retry after that long.
    gateway.add_fault(Fault(status=503, retry_after=7))
    with retry_countdowns(celery_app.echo) as countdowns:
        result = celery_app.echo.apply((3,))
    assert result.get()["echo"] == {"n": 3}
    assert countdowns == [7.0]
    assert gateway.tool_runs("demo", "echo") == 1


def test_a_non_retryable_error_fails_the_task_at_once(app: Celery, gateway: LocalGateway
                                                      ) -> None:
    gateway.add_fault(Fault(status=404))
    result = celery_app.echo.apply((3,))
    assert result.failed()
    assert isinstance(result.result, NotFoundError)
    assert [r.path for r in gateway.requests].count("/api/v1/invoke") == 1


def test_retries_stop_at_max_retries_with_the_error(app: Celery, gateway: LocalGateway
                                                    ) -> None:
    gateway.add_fault(Fault(status=503, retry_after=1, times=None))  # every call
    celery_app.echo.max_retries = 2  # three runs: fewer failures than open the breaker
    try:
        result = celery_app.echo.apply((3,))
    finally:
        del celery_app.echo.max_retries
    assert result.failed()
    assert isinstance(result.result, ServiceUnavailableError)
    assert result.result.retry_after == 1
    # One request per run: a Retry-After is not waited out inside a worker.
    assert [r.path for r in gateway.requests].count("/api/v1/invoke") == 3


def test_an_open_circuit_retries_the_task_when_it_probes_again(app: Celery,
                                                                gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=503, retry_after=1, times=5))  # opens the breaker
    with retry_countdowns(celery_app.echo) as countdowns:
        result = celery_app.echo.apply((3,))
    assert isinstance(result.result, sark_sync.CircuitOpenError)
    assert countdowns[:5] == [1.0] * 5
    assert len(countdowns) == 6, countdowns
    assert 25 < countdowns[5] <= 30  # the breaker's next probe, not a blind backoff


def test_retry_gateway_errors_false_fails_instead(app: Celery, gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=503, retry_after=1))
    celery_app.echo.retry_gateway_errors = False
    try:
        result = celery_app.echo.apply((3,))
    finally:
        del celery_app.echo.retry_gateway_errors
    assert isinstance(result.result, ServiceUnavailableError)


def test_retry_or_raise_raises_what_is_not_retryable() -> None:
    task = celery_app.plain_task_with_helpers
    with pytest.raises(ValueError):
        sark_celery.retry_or_raise(task, ValueError("x"))
    error = NotFoundError("not_found", status_code=404)
    with pytest.raises(NotFoundError) as caught:
        sark_celery.retry_or_raise(task, error)
    assert caught.value is error


def test_retry_or_raise_retries_a_retryable_error(app: Celery, gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(status=503, retry_after=4))
    result = celery_app.plain_task_with_helpers.apply(("y",))
    assert result.get() == {"ticket": 1, "title": "y"}
    assert [r.path for r in gateway.requests].count("/api/v1/invoke") == 2


def test_retry_or_raise_asks_celery_for_the_countdown() -> None:
    task = celery_app.plain_task_with_helpers
    # A worker's request (not eager, not called directly): retry() raises Retry at once.
    task.push_request(id="t-1", retries=0, called_directly=False, is_eager=False)
    sent: list[dict[str, Any]] = []
    task.apply_async = lambda *args, **options: sent.append(options)  # type: ignore[method-assign]
    try:
        with pytest.raises(Retry) as caught:
            sark_celery.retry_or_raise(task, ServiceUnavailableError(
                "unavailable", status_code=503, retry_after=4.0))
    finally:
        del task.apply_async
        task.pop_request()
    assert caught.value.when == 4.0 and sent[0]["countdown"] == 4.0


@pytest.mark.parametrize(("retry_after", "retries", "low", "high"), [
    (2.5, 0, 2.5, 2.5), (1e12, 0, 86_400, 86_400), (-3, 0, 0, 0),
    (None, 0, 0, 2), (None, 3, 0, 16), (None, 30, 0, 300)])
def test_retry_countdown(retry_after: float | None, retries: int, low: float, high: float
                         ) -> None:
    error = ServiceUnavailableError("unavailable", retry_after=retry_after)
    for _ in range(20):
        assert low <= sark_celery.retry_countdown(error, retries) <= high
    if retry_after is None:
        assert sark_celery.retry_countdown(error, 3, jitter=False) == 16


def test_get_client_needs_setup() -> None:
    other = Celery("not_set_up", set_as_current=False)
    with pytest.raises(ConfigurationError, match=r"setup\(app\) was not called.*not_set_up"):
        sark_celery.get_client(other)
    other.close()


def test_setup_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="Celery app"):
        sark_celery.setup(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="mapping or a function"):
        sark_celery.setup(Celery("x", set_as_current=False), settings="redis://")  # type: ignore[arg-type]


def test_settings_come_from_the_app_conf_then_the_environment(
        gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("conf_app", set_as_current=False)
    app.conf.sark_sync = {"BASE_URL": gateway.url, "TIMEOUT": 4}
    monkeypatch.setenv("SARK_API_KEY", API_KEY)
    sark_celery.setup(app)
    try:
        client = sark_celery.get_client(app)
        assert client.base_url.rstrip("/") == gateway.url.rstrip("/")
        assert client.timeouts.deadline == 4
        assert client.retry.retry_after_max == 0  # the worker's default
        assert client.invoke_tool("demo", "echo", {"a": 1}).structured == {"a": 1}
        assert sark_celery.get_client(app) is client
    finally:
        sark_celery.close_clients()
        app.close()
    assert client.closed


def test_a_bad_setting_is_named_and_its_value_never_shown() -> None:
    app = Celery("bad_app", set_as_current=False)
    sark_celery.setup(app, settings=lambda: {"BASE_URL": "http://127.0.0.1:1", "API_KE": "s3cr3t"})
    with pytest.raises(ConfigurationError) as caught:
        sark_celery.get_client(app)
    assert "API_KE" in str(caught.value) and "s3cr3t" not in str(caught.value)
    # The worker checks them at start: worker_init raises before any task runs.
    from celery.signals import worker_init

    class Worker:
        pass

    worker = Worker()
    worker.app = app  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match="API_KE"):
        worker_init.send(sender=worker)
    app.close()


def test_setup_again_replaces_the_settings_and_closes_the_old_client(
        app: Celery, gateway: LocalGateway) -> None:
    old = sark_celery.get_client(app)
    with demo_gateway() as other:
        sark_celery.setup(app, settings={"BASE_URL": other.url, "API_KEY": API_KEY})
        assert old.closed
        assert celery_app.echo.apply((9,)).get()["echo"] == {"n": 9}
        assert other.tool_runs("demo", "echo") == 1 and gateway.tool_runs("demo", "echo") == 0
        sark_celery.close_clients()


def test_a_forked_child_builds_its_own_client(app: Celery) -> None:
    parent = sark_celery.get_client(app)

    def child() -> Any:
        mine = sark_celery.get_client(app)
        return (mine is not parent, mine.invoke_tool("demo", "echo", {"x": 1}).structured)

    assert in_child(child) == [True, {"x": 1}]
    assert not parent.closed


def test_shutdown_signals_close_the_client(app: Celery) -> None:
    from celery.signals import worker_process_shutdown, worker_shutdown

    for signal in (worker_process_shutdown, worker_shutdown):
        client = sark_celery.get_client(app)
        signal.send(sender=None)
        assert client.closed
        assert sark_celery.get_client(app) is not client


def test_errors_are_gateway_errors() -> None:
    assert issubclass(ConfigurationError, GatewayError)
    assert "sark_sync.contrib.celery" not in dir(sark_sync)


@pytest.mark.parametrize(("error", "expected"), [
    (ServiceUnavailableError("unavailable", status_code=503), True),
    (sark_sync.RateLimitError("rate_limited", status_code=429, retry_after=60.0), True),
    (sark_sync.ConnectionFailed("down"), True),
    (sark_sync.CircuitOpenError("open", retry_after=12.0), True),
    (sark_sync.DeadlineExceeded("deadline", timeout=5.0), True),
    (sark_sync.AuthorizationUnavailable("policy engine down"), True),
    (sark_sync.ServerError("boom", status_code=500), False),
    (NotFoundError("not_found", status_code=404), False),
    (sark_sync.AuthorizationDenied("denied", status_code=403), False),
    (sark_sync.ValidationError("bad"), False),
    (ValueError("not ours"), False),
])
def test_later_decides_which_errors_retry_a_task(error: BaseException, expected: bool) -> None:
    assert sark_celery.later(error) is expected


def test_a_deadline_retries_the_task(app: Celery, gateway: LocalGateway) -> None:
    gateway.add_fault(Fault(delay=1.0))
    # shared=False: a shared task's function is kept by Celery for every future app.
    @celery_app.app.task(bind=True, base=sark_celery.GatewayTask, name="deadline_task",
                         retry_backoff=1, retry_jitter=False, shared=False)
    def deadline_task(self: sark_celery.GatewayTask) -> Any:
        view = self.client.with_options(timeout=0.2)  # the first try runs out of time
        return view.invoke_tool("demo", "echo", {"x": 1},
                                idempotency_key=sark_celery.idempotency_key("echo")).structured

    with retry_countdowns(deadline_task) as countdowns:
        assert deadline_task.apply().get() == {"x": 1}
    assert countdowns == [1.0]  # backoff: factor 1 * 2**0
    del celery_app.app.tasks["deadline_task"]


def test_a_derived_key_is_a_short_ascii_header_whatever_the_task_id_and_parts() -> None:
    class FakeTask:
        class request:  # noqa: N801 - the shape of a Celery task's request
            id = "задача-✓-\udcff"  # a custom task id: not latin-1, a lone surrogate

    key = sark_celery.idempotency_key("x" * 1_000_000, {"nested": [[[]]]}, task=FakeTask())
    assert key.isascii() and len(key) == len("celery-") + 40
    assert key != sark_celery.idempotency_key("x" * 999_999, task=FakeTask())
