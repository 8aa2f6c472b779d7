"""The official MCP client's side of bench_mcp_http.py; run with the tools venv's python.

``mcp`` (the official SDK, async only) is installed in the tools venv, not in the venv that
runs sark_sync, so bench_mcp_http.py runs this script as a child process. It opens one
``mcp.client.Client`` session over Streamable HTTP on one event loop, makes ``--warmup``
calls, then ``--calls`` sequential ``call_tool`` calls, each timed with ``perf_counter``, and
prints one JSON object: ``{"samples": [seconds, ...], "protocol_version": ...}``.

    .tools-venv/bin/python benchmarks/_mcp_official_client.py URL [--mode auto|legacy]
        [--calls N] [--warmup N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from mcp.client import Client

TOOL = "echo"
ARGS = {"text": "hello"}


async def measure(url: str, mode: str, calls: int, warmup: int) -> dict[str, Any]:
    samples: list[float] = []
    clock = time.perf_counter
    async with Client(url, mode=mode) as client:
        result = await client.call_tool(TOOL, ARGS)
        if result.is_error or result.content[0].text != ARGS["text"]:  # type: ignore[union-attr]
            raise RuntimeError(f"unexpected answer: {result!r}")
        for _ in range(warmup):
            await client.call_tool(TOOL, ARGS)
        for _ in range(calls):
            started = clock()
            await client.call_tool(TOOL, ARGS)
            samples.append(clock() - started)
        version = getattr(client.session, "protocol_version", None)
    return {"samples": samples, "protocol_version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--mode", default="auto", help="Client(mode=): auto or legacy")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.url, args.mode, args.calls, args.warmup))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
