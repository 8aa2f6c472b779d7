"""The resilience steps of ``sark-sync demo``: retries, Retry-After, the deadline, the
circuit breaker and parallel calls, each against a fault the demo gateway injects.

Each step is a function ``(tour, client, gateway, users)`` in :data:`RESILIENCE_STEPS`, run
after the governance steps of :mod:`._demo`; a step that does not behave as it says raises
:class:`~._tour.DemoError`. Faults target server ``tickets`` (built-in tools, so a fault never
waits on a child process), and every step leaves no fault armed behind it.
"""

from __future__ import annotations

import time
from typing import Callable

from .._config import BreakerPolicy, RetryPolicy
from .._exceptions import CircuitOpenError, DeadlineExceeded, GatewayError
from .._models import ToolCall
from ..client import GatewayClient
from ..testing import Fault, LocalGateway
from ._demo_gateway import API_KEY, DemoUsers
from ._tour import DemoError, Tour

__all__ = ["RESILIENCE_STEPS"]

Step = Callable[[Tour, GatewayClient, LocalGateway, DemoUsers], None]

#: Consecutive failures that open the breaker step's circuit.
BREAKER_FAILURES = 5
#: Calls of the parallel step.
PARALLEL_CALLS = 40


def _retries(tour: Tour, client: GatewayClient, gateway: LocalGateway, users: DemoUsers
             ) -> None:
    tour.title("Retries: only when repeating a call cannot repeat its side effect")
    tour.say("The gateway answers 503 once. create_ticket has a side effect, but each call")
    tour.say("carries an Idempotency-Key, so retrying is safe: the gateway deduplicates it.")
    gateway.add_fault(Fault(status=503, server="tickets"))
    result = client.invoke_tool("tickets", "create_ticket", {"title": "printer on fire"},
                                user_token=users.alice)
    runs = gateway.tool_runs("tickets", "create_ticket")
    tour.result(result)
    if result.attempts != 2 or runs != 1:
        raise DemoError(f"expected 2 attempts and 1 run, got {result.attempts} and {runs}")
    tour.say(f"the tool ran {runs} time: one ticket, not two")
    gateway.add_fault(Fault(status=429, retry_after=1, server="tickets"))
    began = time.monotonic()
    result = client.invoke_tool("tickets", "create_ticket", {"title": "after the rate limit"},
                                user_token=users.alice)
    tour.say(f"429 with Retry-After: 1 -> the client waited {time.monotonic() - began:.1f} s, "
             "then:")
    tour.result(result)


def _deadline(tour: Tour, client: GatewayClient, gateway: LocalGateway, users: DemoUsers
              ) -> None:
    tour.title("A deadline bounds every call: attempts, backoff and Retry-After included")
    gateway.add_fault(Fault(delay=5.0, server="tickets"))
    began = time.monotonic()
    try:
        client.invoke_tool("tickets", "create_ticket", {"title": "stuck"},
                           user_token=users.alice, timeout=0.5)
    except DeadlineExceeded as exc:
        tour.say(f"create_ticket with timeout=0.5 against a 5 s stall -> DeadlineExceeded "
                 f"after {time.monotonic() - began:.2f} s")
        last = type(exc.last_error).__name__ if exc.last_error is not None else "none"
        tour.say(f"(a GatewayError and a TimeoutError; last error: {last})")
    else:
        raise DemoError("the stalled call did not time out")
    finally:
        gateway.clear_faults()


def _breaker(tour: Tour, client: GatewayClient, gateway: LocalGateway, users: DemoUsers
             ) -> None:
    tour.title("A circuit breaker per server stops hammering a sick one")
    gateway.add_fault(Fault(status=502, times=BREAKER_FAILURES, server="tickets"))
    with GatewayClient(gateway.url, api_key=API_KEY, retry=RetryPolicy(attempts=1), audit=[],
                       breaker=BreakerPolicy(failure_threshold=BREAKER_FAILURES)) as strict:
        for _ in range(BREAKER_FAILURES):
            try:
                strict.invoke_tool("tickets", "create_ticket", {"title": "x"},
                                   user_token=users.alice)
            except GatewayError:
                pass
        before = len(gateway.requests)
        try:
            strict.invoke_tool("tickets", "create_ticket", {"title": "x"},
                               user_token=users.alice)
        except CircuitOpenError as exc:
            if len(gateway.requests) != before:
                raise DemoError("the open breaker let a request through") from None
            tour.say(f"{BREAKER_FAILURES} failures (502) in a row -> the next call fails "
                     "fast, sending nothing:")
            tour.say(f"CircuitOpenError: {exc.failures} consecutive failures; it lets one "
                     "probe through after 30 s")
        else:
            raise DemoError("the breaker did not open")
        echo = strict.invoke_tool("demo", "echo", {"text": "other servers are unaffected"},
                                  user_token=users.alice)
        tour.say("meanwhile demo/echo:")
        tour.result(echo)
    gateway.clear_faults()


def _parallel(tour: Tour, client: GatewayClient, gateway: LocalGateway, users: DemoUsers
              ) -> None:
    tour.title("Parallel calls without asyncio: a thread pool owned by the client")
    calls = [ToolCall("demo", "add", {"a": n, "b": n}, user_token=users.alice)
             for n in range(PARALLEL_CALLS)]
    began = time.perf_counter()
    results = client.invoke_many(calls)
    elapsed = (time.perf_counter() - began) * 1000
    sums = [r.structured["sum"] for r in results if r.structured is not None]
    if sums != [2 * n for n in range(PARALLEL_CALLS)]:
        raise DemoError("invoke_many returned results out of order")
    tour.say(f"invoke_many({PARALLEL_CALLS} calls) on {client.max_workers} threads -> "
             f"{PARALLEL_CALLS} results in order, {elapsed:.0f} ms: {sums[:3]} ... {sums[-1:]}")
    tour.say("One client is shared by every thread; it also survives fork() (Celery, gunicorn).")


#: The steps, in the order the tour runs them.
RESILIENCE_STEPS: tuple[Step, ...] = (_retries, _deadline, _breaker, _parallel)
