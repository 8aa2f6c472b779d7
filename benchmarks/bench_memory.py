"""Memory of one GatewayClient holding 8 local stdio servers, versus the official async client
holding 8 stdio sessions in one process, same run.

Both sides run the same server, the official SDK's (``tests/realcomp/mcp_sdk_server.py``, run
by the tools venv's python, mcp 2.3.0), 8 times, and each side measures itself in a fresh
child process of its own, so that nothing else (this script, another benchmark) is in its
RSS:

- ``sdk``: a child of this interpreter imports sark_sync and reads its RSS (``VmRSS`` of
  ``/proc/self/status``: the baseline), makes one ``GatewayClient(local_servers={...})`` with
  the 8 servers, starts each with a first ``invoke_tool(name, "echo", {"text": "hello"})``,
  and reads its RSS again;
- ``official``: a child of the tools venv's python (``_mcp_official_stdio.py memory``)
  imports ``mcp`` and reads its RSS (the baseline), opens 8 ``stdio_client`` +
  ``ClientSession`` pairs on one event loop, initializes each and calls the same tool once on
  each, and reads its RSS again.

Reported for each side, in MB (10^6 bytes): the client's own increase (RSS with the servers
minus the baseline: the client, its threads or tasks, its pipes and buffers), the whole
process's RSS with the servers (the interpreter and the imported library included), and the
RSS of the 8 server processes summed (``VmRSS`` of each child of the measuring process: the
same program on both sides, so about the same: a check, not the client's cost).

    python benchmarks/bench_memory.py [--servers 8] [--json] [--tools-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _rss import rss_kb, with_servers

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE.parent / "tests" / "realcomp" / "mcp_sdk_server.py"
OFFICIAL = HERE / "_mcp_official_stdio.py"
ARGS = {"text": "hello"}
SERVER_ENV = {"SARK_TEST_MCP_LOG_LEVEL": "WARNING"}
#: The client's gateway URL, which no call here reaches (loopback, the discard port).
UNUSED_GATEWAY = "http://127.0.0.1:9"
#: Bound of one side's child process, seconds.
CHILD_TIMEOUT = 120.0


def sdk_child(python: str, servers: int) -> dict[str, Any]:
    """The SDK's side, in the child process: see the module's docstring."""
    import sark_sync

    baseline = rss_kb()
    command = [python, str(SERVER_SCRIPT)]
    local = {f"server{i}": {"command": command, "env": SERVER_ENV} for i in range(servers)}
    # A gateway URL is required but never used: every call goes to a local server.
    with sark_sync.GatewayClient(UNUSED_GATEWAY, local_servers=local) as client:
        for name in local:
            if client.invoke_tool(name, "echo", ARGS).text != ARGS["text"]:
                raise RuntimeError(f"unexpected answer from {name}")
        reading = with_servers(baseline)
    return reading


def run_side(argv: list[str], servers: int, env: dict[str, str] | None = None
             ) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1]} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if len(result["children_kb"]) != servers or not all(result["children_kb"]):
        raise RuntimeError(f"{argv[1]}: expected {servers} live servers, found "
                           f"{result['children_kb']}")
    mb = 1024 / 1e6
    return {
        "baseline_mb": result["baseline_kb"] * mb,
        "with_servers_mb": result["with_servers_kb"] * mb,
        "client_increase_mb": (result["with_servers_kb"] - result["baseline_kb"]) * mb,
        "children_mb": sum(result["children_kb"]) * mb,
        "children": len(result["children_kb"]),
    }


def measure(python: Path, servers: int) -> dict[str, Any]:
    sdk = run_side([sys.executable, str(Path(__file__).resolve()), "--child", "--servers",
                    str(servers), "--tools-python", str(python)], servers)
    # The tools interpreter must not see our paths; the SDK's child keeps them.
    tools_env = {k: v for k, v in os.environ.items()
                 if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")}
    official = run_side([str(python), str(OFFICIAL), "memory", "--servers", str(servers),
                         "--", str(python), str(SERVER_SCRIPT)], servers, tools_env)
    return {
        "benchmark": "memory_local_servers",
        "servers": servers,
        "sdk": sdk,
        "official": official,
        "ratio_client_increase": sdk["client_increase_mb"] / official["client_increase_mb"],
        "ratio_process": sdk["with_servers_mb"] / official["with_servers_mb"],
        "ratio_children": sdk["children_mb"] / official["children_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--servers", type=int, default=8, help="local servers per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tools-python", metavar="PATH",
                        help="the tools venv's python (default: make or reuse .tools-venv)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # the SDK's side, in a fresh process
        print(json.dumps(sdk_child(args.tools_python, args.servers)))
        return 0
    sys.path.insert(0, str(HERE))
    # Not at the top: the SDK's side (--child) needs none of it, and what it imports counts
    # in its RSS.
    from _opa_process import tools_python_or_exit

    python = tools_python_or_exit(
        args.tools_python, "bench_memory.py: the official server and client need the tools "
        "venv: ")
    result = measure(python, args.servers)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"one client with {result['servers']} local stdio servers (the official SDK's "
          "server), RSS in MB")
    print(f"{'':10}{'baseline':>10}{'with servers':>14}{'increase':>10}{'servers sum':>13}")
    for side in ("sdk", "official"):
        figures = result[side]
        print(f"{side:10}{figures['baseline_mb']:10.1f}{figures['with_servers_mb']:14.1f}"
              f"{figures['client_increase_mb']:10.1f}{figures['children_mb']:13.1f}")
    print(f"sdk/official: increase {result['ratio_client_increase']:.2f}, whole process "
          f"{result['ratio_process']:.2f}, servers {result['ratio_children']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
