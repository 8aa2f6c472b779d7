"""``sark-sync demo``: a guided tour of the client against an embedded LocalGateway.

Everything runs in this process on 127.0.0.1 and needs no configuration: the tour starts a
:class:`~sark_sync.testing.LocalGateway` with a ``demo`` server, then shows discovery, calls,
tool errors, retries made safe by idempotency keys, Retry-After, the deadline, the circuit
breaker and parallel calls, explaining each step. It finishes in a few seconds and returns 0,
or 1 with a one-line reason if a step did not behave as shown.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TextIO

from ._client import GatewayClient
from ._config import BreakerPolicy, RetryPolicy
from ._exceptions import CircuitOpenError, DeadlineExceeded, GatewayError
from ._models import ToolCall, ToolResult

__all__ = ["run_demo"]

API_KEY = "demo-api-key"


class _Tour:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        self.out.write(f"\n{self.step}. {text}\n")

    def say(self, text: str = "") -> None:
        self.out.write(f"   {text}\n" if text else "\n")

    def result(self, call: str, result: ToolResult) -> None:
        shown = result.structured if result.structured is not None else result.text
        flag = "tool error: " if result.is_error else ""
        self.say(f"{call:<34} -> {flag}{shown!r}")
        self.say(f"{'':34}    request_id {result.request_id}, {result.latency_ms:.1f} ms, "
                 f"{result.attempts} attempt(s)")


def _build_gateway() -> Any:
    from .testing import LocalGateway, ToolFailure

    gateway = LocalGateway(api_keys=(API_KEY,), jwt_secret="demo-jwt-secret")
    gateway.add_server("demo", sensitivity_level="low", authorized_teams=("platform",))
    gateway.add_server("analytics", sensitivity_level="high", authorized_teams=("data",))
    gateway.add_tool(
        "demo", "echo", lambda p: str(p.get("text", "")), description="Return the text.",
        annotations={"readOnlyHint": True},
    )

    def add(parameters: dict[str, Any]) -> Any:
        a, b = parameters.get("a"), parameters.get("b")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            raise ToolFailure("parameters 'a' and 'b' must be numbers")
        return {"sum": a + b}  # type: ignore[operator]

    gateway.add_tool("demo", "add", add, description="Add two numbers.",
                     annotations={"readOnlyHint": True, "idempotentHint": True})
    gateway.add_tool("demo", "create_ticket", lambda p: {"ticket": "T-1001"},
                     description="Open a ticket (not idempotent: a side effect).")
    gateway.add_tool("analytics", "row_count", lambda p: {"rows": 1_284_113},
                     description="Count the rows of a table.")
    return gateway


def run_demo(out: TextIO) -> int:
    """Run the tour, writing to ``out``; return the exit status."""
    from .testing import Fault

    tour = _Tour(out)
    out.write("sark_sync demo: blocking, never-hanging MCP tool calls through a SARK gateway\n")
    started = time.monotonic()
    with _build_gateway() as gateway:
        tour.title("An embedded SARK gateway (LocalGateway) is listening on loopback")
        tour.say(f"{gateway.url}   (servers: demo, analytics; API key required)")
        client = GatewayClient(
            gateway.url, api_key=API_KEY, timeout=10,
            retry=RetryPolicy(backoff_base=0.05),
            breaker=BreakerPolicy(failure_threshold=5, recovery_timeout=30),
        )
        with client:
            steps: list[Callable[[], None]] = [
                lambda: _discovery(tour, client),
                lambda: _calls(tour, client, gateway),
                lambda: _retries(tour, client, gateway, Fault),
                lambda: _deadline_and_breaker(tour, client, gateway, Fault),
                lambda: _parallel(tour, client),
            ]
            try:
                for step in steps:
                    step()
            except (GatewayError, AssertionError) as exc:
                out.write(f"\ndemo failed: {type(exc).__name__}: {exc}\n")
                return 1
    out.write(f"\nDone in {time.monotonic() - started:.1f} s. Next: docs/quickstart.md shows the "
              "same calls in code, docs/gateway/ERROR_HANDLING.md what each error means.\n")
    return 0


def _discovery(tour: _Tour, client: GatewayClient) -> None:
    tour.title("Discovery: what can this application call?")
    health = client.health()
    tour.say(f"client.health()  -> {health.status}, gateway {health.version}, "
             f"{health.servers} servers")
    tour.say()
    tour.say(f"{'SERVER':<12}{'SENSITIVITY':<13}{'TEAMS':<12}TOOLS")
    for server in client.iter_servers():
        tour.say(f"{server.name:<12}{server.sensitivity_level:<13}"
                 f"{','.join(server.authorized_teams):<12}{server.tools_count}")
    tour.say()
    tour.say(f"{'TOOL (demo)':<16}{'RETRY-SAFE':<12}DESCRIPTION")
    for tool in client.iter_tools(server="demo"):
        safe = "yes" if tool.annotations.retry_safe else "no"
        tour.say(f"{tool.name:<16}{safe:<12}{tool.description}")


def _calls(tour: _Tour, client: GatewayClient, gateway: Any) -> None:
    tour.title("Calls: invoke_tool blocks until the result, and returns a ToolResult")
    token = gateway.issue_token(subject="alice", roles=("developer",), teams=("platform",))
    tour.say("The end user's JWT travels as 'Authorization: Bearer'; the API key as X-API-Key.")
    tour.result("echo {'text': 'hello'}",
                client.invoke_tool("demo", "echo", {"text": "hello"}, user_token=token))
    tour.result("add {'a': 2, 'b': 3}", client.invoke_tool("demo", "add", {"a": 2, "b": 3}))
    tour.say()
    tour.say("A tool that fails is a result (is_error), not an exception;")
    tour.say("result.raise_for_error() turns it into ToolExecutionError when you want one.")
    failed = client.invoke_tool("demo", "add", {"a": "two", "b": 3})
    assert failed.is_error
    tour.result("add {'a': 'two', 'b': 3}", failed)


def _retries(tour: _Tour, client: GatewayClient, gateway: Any, fault: Any) -> None:
    tour.title("Retries: only when repeating the call cannot repeat its side effect")
    gateway.add_fault(fault(status=503, server="demo"))
    result = client.invoke_tool("demo", "create_ticket", {"title": "printer on fire"})
    runs = gateway.tool_runs("demo", "create_ticket")
    tour.say("The gateway answers 503 once. create_ticket has a side effect, but every call")
    tour.say("carries an Idempotency-Key, so the retry is safe: the gateway deduplicates it.")
    tour.result("create_ticket", result)
    tour.say(f"{'':34}    the tool ran {runs} time(s)")
    assert result.attempts == 2 and runs == 1
    tour.say()
    gateway.add_fault(fault(status=429, retry_after=1, server="demo"))
    began = time.monotonic()
    result = client.invoke_tool("demo", "echo", {"text": "after the rate limit"})
    tour.say(f"429 with Retry-After: 1 -> waited {time.monotonic() - began:.1f} s, then:")
    tour.result("echo", result)


def _deadline_and_breaker(tour: _Tour, client: GatewayClient, gateway: Any, fault: Any) -> None:
    tour.title("A deadline bounds every call: attempts, backoff and Retry-After included")
    gateway.add_fault(fault(delay=5.0, server="analytics"))
    began = time.monotonic()
    try:
        client.invoke_tool("analytics", "row_count", {"table": "events"}, timeout=0.5)
    except DeadlineExceeded as exc:
        tour.say(f"row_count with timeout=0.5 against a 5 s stall -> DeadlineExceeded after "
                 f"{time.monotonic() - began:.2f} s")
        tour.say(f"({type(exc).__mro__[1].__name__} and TimeoutError; last error: "
                 f"{type(exc.last_error).__name__})")
    else:
        raise AssertionError("the stalled call did not time out")
    gateway.clear_faults()
    tour.title("A circuit breaker per server stops hammering a sick one")
    gateway.add_fault(fault(status=502, times=5, server="analytics"))
    one_attempt = RetryPolicy(attempts=1)
    with GatewayClient(gateway.url, api_key=API_KEY, retry=one_attempt) as strict:
        for _ in range(5):
            try:
                strict.invoke_tool("analytics", "row_count")
            except GatewayError:
                pass
        before = len(gateway.requests)
        try:
            strict.invoke_tool("analytics", "row_count")
        except CircuitOpenError as exc:
            tour.say("5 failures (502) in a row -> the next call fails fast, without a request:")
            tour.say(f"CircuitOpenError: {exc.message}")
            assert len(gateway.requests) == before
        else:
            raise AssertionError("the breaker did not open")
        echo = strict.invoke_tool("demo", "echo", {"text": "other servers are unaffected"})
        tour.result("demo/echo meanwhile", echo)


def _parallel(tour: _Tour, client: GatewayClient) -> None:
    tour.title("Parallel calls without asyncio: a thread pool owned by the client")
    calls = [ToolCall("demo", "add", {"a": n, "b": n}) for n in range(40)]
    began = time.perf_counter()
    results = client.invoke_many(calls)
    elapsed = (time.perf_counter() - began) * 1000
    sums = [r.structured["sum"] for r in results if r.structured is not None]
    assert sums == [2 * n for n in range(40)]
    tour.say(f"invoke_many(40 calls, max_workers={client.max_workers}) -> 40 results in order "
             f"in {elapsed:.0f} ms: {sums[:5]} ... {sums[-2:]}")
