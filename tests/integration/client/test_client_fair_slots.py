"""The connection slots are first-come-first-served (docs/gateway/CLIENT_USAGE.md, "Threads,
connections and max_workers"): with more callers than ``max_workers``, calls reach the
gateway in the order they asked for a slot, a caller whose deadline ends first leaves the
queue, and a forked child never waits for a slot its parent's threads hold.

Arrival order is made known, not hoped for: each caller starts only once the one before it is
visibly queued (its thread parked in :meth:`FairSlots.acquire`, seen in its frame).
"""

from __future__ import annotations

import inspect
import sys
import threading
from typing import Any, Callable

import pytest
from support import WAIT, in_child, wait_for

import sark_sync
from sark_sync.resilience import FairSlots
from sark_sync.testing import LocalGateway

Make = Callable[..., sark_sync.GatewayClient]

_lines, _first = inspect.getsourcelines(FairSlots.acquire)
#: The line where a queued caller waits for its permit.
PARKED = _first + next(n for n, line in enumerate(_lines) if "waiter.acquire(timeout=" in line)


def parked(thread: threading.Thread) -> bool:
    """Whether ``thread`` is queued for a slot, waiting for its permit."""
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and frame.f_code is FairSlots.acquire.__code__ \
        and frame.f_lineno == PARKED


class SlowTool:
    """``demo/slow``: the call with ``{"n": "first"}`` holds the gateway until released;
    every call records its ``n`` in the order the gateway ran them, and returns its
    parameters."""

    def __init__(self, gateway: LocalGateway) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.ran: list[Any] = []

        @gateway.tool("demo")
        def slow(parameters: dict[str, Any]) -> object:
            if parameters["n"] == "first":
                self.started.set()
                self.release.wait(WAIT)
            self.ran.append(parameters["n"])
            return parameters


class Caller:
    """A thread making one call; its result or error is kept."""

    def __init__(self, client: sark_sync.GatewayClient, n: object, **options: Any) -> None:
        self.outcome: object = None
        self.thread = threading.Thread(target=self._run, args=(client, n, options),
                                       name=f"caller-{n}")

    def _run(self, client: sark_sync.GatewayClient, n: object, options: Any) -> None:
        try:
            result = client.invoke_tool("demo", "slow", {"n": n}, **options)
            self.outcome = result.structured["n"] if result.structured else result
        except sark_sync.GatewayError as exc:
            self.outcome = exc

    def start(self, queued: bool = True) -> Caller:
        self.thread.start()
        if queued:
            wait_for(lambda: parked(self.thread), what=f"{self.thread.name} to queue")
        return self

    def join(self) -> object:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.outcome


def _hold_the_only_slot(client: sark_sync.GatewayClient, tool: SlowTool) -> Caller:
    first = Caller(client, "first").start(queued=False)
    assert tool.started.wait(WAIT)
    return first


def test_calls_queued_for_the_only_slot_run_in_the_order_they_came(
        make_client: Make, gateway: LocalGateway) -> None:
    tool = SlowTool(gateway)
    client = make_client(max_workers=1)
    first = _hold_the_only_slot(client, tool)
    callers = []
    try:
        for n in range(8):
            callers.append(Caller(client, n).start())
    finally:
        tool.release.set()
    assert [c.join() for c in callers] == list(range(8))
    assert first.join() == "first"
    assert tool.ran == ["first", *range(8)]
    assert gateway.max_open_connections == 1


def test_a_caller_whose_deadline_ends_in_the_queue_leaves_it_and_the_rest_keep_order(
        make_client: Make, gateway: LocalGateway) -> None:
    tool = SlowTool(gateway)
    client = make_client(max_workers=1)
    first = _hold_the_only_slot(client, tool)
    try:
        before = Caller(client, "before").start()
        quitter = Caller(client, "quitter", timeout=0.3).start()
        after = Caller(client, "after").start()
        error = quitter.join()
    finally:
        tool.release.set()
    assert isinstance(error, sark_sync.DeadlineExceeded)
    assert "waiting for a free connection slot" in str(error)
    assert error.attempts == 0  # never sent
    assert (first.join(), before.join(), after.join()) == ("first", "before", "after")
    assert tool.ran == ["first", "before", "after"]
    # The slot was not lost with the caller that left: the next call gets it at once.
    assert client.invoke_tool("demo", "echo", {"n": 1}, timeout=5).structured == {"n": 1}


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_calls_while_a_parent_thread_holds_the_only_slot(
        make_client: Make, gateway: LocalGateway) -> None:
    tool = SlowTool(gateway)
    client = make_client(max_workers=1)
    first = _hold_the_only_slot(client, tool)
    try:
        queued = Caller(client, "queued").start()  # a waiter, too, at fork time
        reported = in_child(
            lambda: client.invoke_tool("demo", "echo", {"who": "child"}, timeout=5).structured)
    finally:
        tool.release.set()
    assert reported == {"who": "child"}
    assert (first.join(), queued.join()) == ("first", "queued")


@pytest.mark.fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fair_slots_in_a_forked_child_have_every_permit_the_parents_threads_held() -> None:
    slots = FairSlots(2)
    assert slots.acquire(0)  # held by the forking thread itself
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        assert slots.acquire(WAIT)
        held.set()
        done.wait(WAIT)
        slots.release()

    holder = threading.Thread(target=hold)
    holder.start()
    waiter = threading.Thread(target=lambda: slots.acquire(WAIT) and slots.release())
    try:
        assert held.wait(WAIT)
        waiter.start()
        wait_for(lambda: parked(waiter), what="a parent thread to queue")

        def child() -> list[object]:
            got = [slots.acquire(1.0), slots.acquire(1.0), slots.acquire(0.05)]
            slots.release()
            slots.release()
            slots.release()  # the forking thread's permit from before fork(): absorbed
            return [got, slots.free, slots.waiting]

        assert in_child(child) == [[True, True, False], 2, 0]
    finally:
        done.set()
        slots.release()
        holder.join(WAIT)
        waiter.join(WAIT)
    assert (slots.free, slots.waiting) == (2, 0)
