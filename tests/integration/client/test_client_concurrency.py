"""One client shared by many threads, and by forked children (docs/gateway/CLIENT_USAGE.md)."""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Callable

import pytest
from support import WAIT, reap

import sark_sync
from sark_sync.testing import LocalGateway

Make = Callable[..., sark_sync.GatewayClient]


@pytest.mark.stress
def test_32_threads_x_200_calls_share_one_client(
    make_client: Make, gateway: LocalGateway, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_workers=8)
    errors: list[BaseException] = []
    mismatches: list[tuple[int, int]] = []
    start = threading.Barrier(32)

    def work(worker: int) -> None:
        start.wait(10)
        for call in range(200):
            try:
                result = client.invoke_tool("demo", "echo", {"worker": worker, "call": call})
                if result.structured != {"worker": worker, "call": call}:
                    mismatches.append((worker, call))
            except BaseException as exc:
                errors.append(exc)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert errors == [] and mismatches == []
    assert gateway.tool_runs("demo", "echo") == 6400
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert gateway.max_open_connections <= 8
    assert gateway.connections_accepted <= 8


def test_invoke_many_returns_100_results_in_order(client: sark_sync.GatewayClient) -> None:
    calls = [sark_sync.ToolCall("demo", "echo", {"n": n}) for n in range(100)]
    results = client.invoke_many(calls)
    assert [r.structured for r in results] == [{"n": n} for n in range(100)]


def test_invoke_many_reports_failures_in_place_with_return_exceptions(
    client: sark_sync.GatewayClient,
) -> None:
    calls = [sark_sync.ToolCall("demo", "echo", {"n": 1}),
             sark_sync.ToolCall("demo", "missing"),
             sark_sync.ToolCall("other", "ping")]
    results = client.invoke_many(calls, return_exceptions=True)
    assert results[0].structured == {"n": 1}
    assert isinstance(results[1], sark_sync.NotFoundError)
    assert results[2].text == "pong"
    with pytest.raises(sark_sync.NotFoundError):
        client.invoke_many(calls)


def test_submit_returns_a_future(client: sark_sync.GatewayClient) -> None:
    future = client.submit("other", "ping")
    assert future.result(timeout=10).text == "pong"


def test_invoke_many_runs_at_most_max_workers_calls_at_once(
    make_client: Make, gateway: LocalGateway
) -> None:
    client = make_client(max_workers=3)
    running = 0
    most = 0
    lock = threading.Lock()
    # Each call holds its worker until three calls run at once: 12 calls pass in 4 rounds
    # only if 3 overlap; a 4th running at once would show in ``most``.
    three_at_once = threading.Barrier(3, timeout=WAIT)

    @gateway.tool("demo")
    def slow(parameters: dict[str, object]) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        three_at_once.wait()
        with lock:
            running -= 1
        return "done"

    results = client.invoke_many([sark_sync.ToolCall("demo", "slow") for _ in range(12)])
    assert [r.text for r in results] == ["done"] * 12
    assert most == 3


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_uses_the_inherited_client_on_its_own_connection(
    client: sark_sync.GatewayClient, gateway: LocalGateway
) -> None:
    assert client.invoke_tool("demo", "echo", {"who": "parent"}).structured == {"who": "parent"}
    assert gateway.connections_accepted == 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            os.close(read_end)
            result = client.invoke_tool("demo", "echo", {"who": "child"})
            os.write(write_end, json.dumps(result.structured).encode())
            client.close()
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            reported = pipe.read()
    finally:
        exit_status = reap(pid, timeout=15)
    assert exit_status == 0
    assert json.loads(reported) == {"who": "child"}
    # The child opened its own connection; the parent's is untouched and still reused.
    assert gateway.connections_accepted == 2
    assert client.invoke_tool("demo", "echo", {"who": "parent"}).structured == {"who": "parent"}
    assert gateway.connections_accepted == 2
