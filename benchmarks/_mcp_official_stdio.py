"""The official MCP client over stdio, for bench_stdio.py and bench_memory.py; run with the
tools venv's python.

``mcp`` (the official SDK, async only) is installed in the tools venv, not in the venv that
runs sark_sync, so the benchmarks run this script as a child process, which prints one JSON
object on stdout. Each server is started by the SDK's own ``stdio_client`` (one
``StdioServerParameters``: the command given after ``--``), with one ``ClientSession`` on it,
all on one event loop.

- ``latency``: one session; ``--warmup`` calls, then ``--calls`` sequential
  ``call_tool("echo", {"text": "hello"})`` calls, each timed with ``perf_counter``:
  ``{"samples": [seconds, ...], "protocol_version": ...}``;
- ``memory``: the process's RSS (``VmRSS`` of ``/proc/self/status``) once ``mcp`` is
  imported (the baseline), then ``--servers`` sessions opened at once, each initialized and
  called once (its first call), and the RSS again, with the RSS of every child process of
  this one (the servers): ``{"baseline_kb", "with_servers_kb", "children_kb": [...]}``.

    .tools-venv/bin/python benchmarks/_mcp_official_stdio.py latency [--calls N] [--warmup N]
        -- COMMAND [ARG...]
    .tools-venv/bin/python benchmarks/_mcp_official_stdio.py memory [--servers 8]
        -- COMMAND [ARG...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from _rss import rss_kb, with_servers
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOL = "echo"
ARGS = {"text": "hello"}
#: The servers' environment, merged by the SDK over its default one (PATH, HOME, ...).
SERVER_ENV = {"SARK_TEST_MCP_LOG_LEVEL": "WARNING"}


async def session(stack: AsyncExitStack, command: list[str]) -> ClientSession:
    parameters = StdioServerParameters(command=command[0], args=command[1:], env=SERVER_ENV)
    read, write = await stack.enter_async_context(
        stdio_client(parameters, errlog=sys.stderr))
    client = await stack.enter_async_context(ClientSession(read, write))
    await client.initialize()
    return client


async def call(client: ClientSession) -> None:
    result = await client.call_tool(TOOL, ARGS)
    if result.is_error or result.content[0].text != ARGS["text"]:  # type: ignore[union-attr]
        raise RuntimeError(f"unexpected answer: {result!r}")


async def latency(command: list[str], calls: int, warmup: int) -> dict[str, Any]:
    samples: list[float] = []
    clock = time.perf_counter
    async with AsyncExitStack() as stack:
        client = await session(stack, command)
        await call(client)
        for _ in range(warmup):
            await client.call_tool(TOOL, ARGS)
        for _ in range(calls):
            started = clock()
            await client.call_tool(TOOL, ARGS)
            samples.append(clock() - started)
        version = getattr(client, "protocol_version", None)
    return {"samples": samples, "protocol_version": version}


async def memory(command: list[str], servers: int) -> dict[str, Any]:
    baseline = rss_kb()
    async with AsyncExitStack() as stack:
        clients = [await session(stack, command) for _ in range(servers)]
        for client in clients:
            await call(client)
        reading = with_servers(baseline)
    return reading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", choices=("latency", "memory"))
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("command", nargs="+", help="the server's command, after --")
    args = parser.parse_args(argv)
    if args.mode == "latency":
        result = asyncio.run(latency(args.command, args.calls, args.warmup))
    else:
        result = asyncio.run(memory(args.command, args.servers))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
