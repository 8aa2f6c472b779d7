"""sark_sync.contrib.celery in real Celery workers (``celery worker`` child processes) with a
real Redis as broker and result backend, calling tools on a real LocalGateway: 500 tasks on a
prefork pool (concurrency 4, children re-forked by ``--max-tasks-per-child``) and on a threads
pool with 0 errors, one client per process, each closed by the worker at shutdown; a task
retried by ``autoretry_for`` after its tool ran runs the tool once; every public exception
comes back through the JSON result backend with its type and attributes; a bad setting stops
the worker at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_project.gateway import API_KEY, demo_gateway
from celery_project.worker_process import READY_TIMEOUT, CeleryWorker
from error_catalogue import PUBLIC
from realcomp.redis_server import RedisServer, pid_alive

from sark_sync.testing import LocalGateway

pytestmark = [pytest.mark.realcomp, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[2]
RESULT_TIMEOUT = 60.0
APP_NAME = "sark_celery_tests"


@pytest.fixture
def gateway() -> Iterator[LocalGateway]:
    with demo_gateway() as gateway:
        yield gateway


class Worker(CeleryWorker):
    """The test project's worker (celery_project.celery_app) on a queue of its own (the
    module's Redis outlives each worker), configured by the environment as in production."""

    def __init__(self, redis: RedisServer, gateway: LocalGateway, log_path: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.queue = f"q-{uuid.uuid4().hex[:12]}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SARK_")}
        environ.update(PYTHONPATH=os.pathsep.join([str(TESTS), environ.get("PYTHONPATH", "")]),
                       SARK_TEST_CELERY_BROKER=redis.url(0),
                       SARK_TEST_CELERY_BACKEND=redis.url(1),
                       SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY, **(env or {}))
        super().__init__("celery_project.celery_app", [
            "-Q", self.queue, "-n", f"{self.queue}@127.0.0.1", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", *args],
            cwd=TESTS, environ=environ, log_path=log_path)


@pytest.fixture
def start_worker(redis_server: RedisServer, gateway: LocalGateway, tmp_path: Path
                 ) -> Iterator[Any]:
    workers: list[Worker] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Worker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = Worker(redis_server, gateway, log_path, *args, env=env)
        workers.append(worker)
        return worker.wait_ready() if ready else worker

    yield start
    for worker in workers:
        worker.stop()


def produce(worker: Worker, task: str, calls: list[Any], *, errors: bool = False) -> Any:
    """Run the producing side (celery_project/produce.py) in its own process, as a web
    process would: send ``task`` once per argument list, wait, return what it printed."""
    argv = [sys.executable, "-m", "celery_project.produce", *(["--errors"] if errors else []),
            task, worker.queue, json.dumps(calls)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=TESTS, env=worker.environ,
                          timeout=RESULT_TIMEOUT + 30)
    assert done.returncode == 0, f"{done.stderr}\nthe worker's log:\n{worker.log()}"
    return json.loads(done.stdout)


def run_many(worker: Worker, count: int) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = produce(worker, "echo", [[n] for n in range(count)])
    return values


def check_many(values: list[dict[str, Any]], gateway: LocalGateway, count: int) -> None:
    assert [value["echo"] for value in values] == [{"n": n} for n in range(count)]
    assert gateway.tool_runs("demo", "echo") == count
    clients: dict[int, set[int]] = {}
    for value in values:
        clients.setdefault(value["pid"], set()).add(value["client"])
    assert all(len(ids) == 1 for ids in clients.values()), clients  # one client per process


def test_500_tasks_on_a_prefork_pool_one_client_per_child(
        start_worker: Any, gateway: LocalGateway) -> None:
    worker = start_worker("-P", "prefork", "-c", "4", "--max-tasks-per-child", "100")
    values = run_many(worker, 500)
    check_many(values, gateway, 500)
    pids = {value["pid"] for value in values}
    assert worker.proc.pid not in pids and len(pids) >= 5  # children, re-forked
    assert worker.stop() == 0
    # Every child closed its client: those retired by --max-tasks-per-child and those
    # stopped with the worker; the main process never built one.
    assert set(worker.closed_in(APP_NAME)) == pids, worker.log()
    assert not [pid for pid in pids if pid_alive(pid)]


def test_500_tasks_on_a_threads_pool_share_one_client(
        start_worker: Any, gateway: LocalGateway) -> None:
    worker = start_worker("-P", "threads", "-c", "8")
    values = run_many(worker, 500)
    check_many(values, gateway, 500)
    assert {value["pid"] for value in values} == {worker.proc.pid}
    assert worker.stop() == 0
    # worker_process_shutdown never fires on a threads pool: worker_shutdown closed it.
    assert worker.closed_in(APP_NAME) == [worker.proc.pid], worker.log()


def test_a_solo_pool_closes_its_client_at_shutdown(
        start_worker: Any, gateway: LocalGateway) -> None:
    worker = start_worker("-P", "solo")
    check_many(run_many(worker, 20), gateway, 20)
    assert worker.stop() == 0
    assert worker.closed_in(APP_NAME) == [worker.proc.pid], worker.log()


def test_autoretry_after_the_tool_ran_runs_it_once(
        start_worker: Any, gateway: LocalGateway) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    values = produce(worker, "open_then_fail_once", [[f"t{n}"] for n in range(10)])
    assert all(value["retries"] == 1 for value in values)
    # Two tool calls per task, each run once although every task ran twice.
    assert gateway.tool_runs("demo", "open_ticket") == 20
    tickets = sorted(v[k]["ticket"] for v in values for k in ("first", "second"))
    assert tickets == list(range(1, 21))


def test_every_public_exception_comes_back_from_the_redis_json_backend(
        start_worker: Any) -> None:
    worker = start_worker("-P", "solo")
    names = sorted(cls.__name__ for cls in PUBLIC)
    # Each compared with its original in the producing process (error_catalogue.assert_same).
    assert produce(worker, "raise_public_error", [[name] for name in names], errors=True) \
        == names


def test_a_bad_setting_stops_the_worker_at_start(start_worker: Any) -> None:
    worker = start_worker("-P", "prefork", "-c", "2", env={"SARK_TIMEOUT": "soon"},
                          ready=False)
    try:
        returncode = worker.proc.wait(READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker started with a bad setting:\n{worker.log()}")
    log = worker.log()
    assert returncode != 0 and "SARK_TIMEOUT" in log and " ready." not in log, log
