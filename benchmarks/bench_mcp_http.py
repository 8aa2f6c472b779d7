"""RemoteServer.call_tool over MCP Streamable HTTP versus a raw requests.post and the official
async client, against the official MCP server, same run.

The server is the official SDK's (``tests/realcomp/mcp_http_server.py``, mcp 2.3.0 in the tools
venv), started by this script on 127.0.0.1 port 0 and stopped by its PID. Three sides make the
same sequential ``call_tool("echo", {"text": "hello"})`` calls:

- ``sdk``: one ``sark_sync.RemoteServer`` session;
- ``raw``: one ``requests.Session`` posting the same JSON-RPC message with the same headers
  the SDK sends at the negotiated revision (at 2026-07-28 the ``_meta`` envelope and the
  ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers; at 2025-11-25 the session id
  and version headers), then ``json.loads`` of the answer (for an SSE answer, of its
  ``data:`` line): the least a client can do. ``raw_lean`` is the same with
  ``trust_env = False``, as the SDK's session is;
- ``official``: the official async client (``mcp.client.Client``, one session, one event
  loop) in a child process of the tools venv's python (``_mcp_official_client.py``; ``mcp``
  is not installed beside sark_sync), which prints its timings as JSON.

``sdk`` and ``raw`` are measured in alternating batches (``_stats.interleaved``), in two halves
with the official client's run between them, so that drift lands on every side. Scenarios:
the server's stateless JSON mode with the revision negotiated (2026-07-28), the same at
2025-11-25, and its stateful SSE mode at 2025-11-25 (each answer an SSE stream, a session).

Goals (p50, stateless JSON, negotiated): <= 1.15x raw, <= 1.0x the official client.

    python benchmarks/bench_mcp_http.py [--calls 2000] [--warmup 200] [--json]
                                        [--tools-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

import sark_sync
from sark_sync.transports import RemoteServer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _opa_process import add_tools_python_option, tools_python_or_exit
from _stats import WARMUP, interleaved, print_table, summary

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE.parent / "tests" / "realcomp" / "mcp_http_server.py"
OFFICIAL_CLIENT = HERE / "_mcp_official_client.py"
TOOL = "echo"
ARGS = {"text": "hello"}
#: Bound for the server to print its READY line, and to exit after SIGTERM.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 5.0
#: Goals of the main scenario, p50 ratios.
RAW_GOAL = 1.15
OFFICIAL_GOAL = 1.0
#: Scenario -> (server options, sark_sync's protocol_version, the official client's mode).
SCENARIOS: dict[str, tuple[list[str], str, str]] = {
    "stateless_json": (["--stateless", "--json-response"], "auto", "auto"),
    "stateless_json_2025": (["--stateless", "--json-response"], "2025-11-25", "legacy"),
    "stateful_sse_2025": ([], "2025-11-25", "legacy"),
}


class McpServer:
    """The official server in a mode, on loopback; a context manager that stops it by PID."""

    def __init__(self, python: Path, options: list[str]) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED")}
        env["SARK_TEST_MCP_LOG_LEVEL"] = "WARNING"
        self.process = subprocess.Popen([str(python), str(SERVER_SCRIPT), *options],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env, text=True)
        self.url = ""

    def __enter__(self) -> McpServer:
        assert self.process.stdout is not None
        # The server prints READY <url> once it serves; a bounded wait for that line.
        ready = select.select([self.process.stdout], [], [], START_TIMEOUT)[0]
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the MCP server did not start within {START_TIMEOUT:g}s: "
                               f"{line!r}")
        self.url = line.split(" ", 1)[1].strip()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class RawClient:
    """The baseline: ``requests.Session.post`` of the message the SDK sends, ``json.loads`` of
    the answer. At 2025-11-25 it makes the handshake first, as the SDK does."""

    def __init__(self, url: str, version: str, *, trust_env: bool = True) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers.update({"Accept": "application/json, text/event-stream",
                                     "Content-Type": "application/json"})
        self.version = version
        self.next_id = 0
        if version == "2026-07-28":
            self.headers = {"MCP-Protocol-Version": version, "Mcp-Method": "tools/call",
                            "Mcp-Name": TOOL}
            self.meta: dict[str, Any] = {
                "io.modelcontextprotocol/protocolVersion": version,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}}
            return
        self.meta = {}
        answer = self.session.post(url, data=self.body("initialize", {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}))
        self.headers = {"MCP-Protocol-Version": version}
        session_id = answer.headers.get("Mcp-Session-Id")
        if session_id:
            self.headers["Mcp-Session-Id"] = session_id
        self.session.post(url, headers=self.headers, data=json.dumps(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def body(self, method: str, params: dict[str, Any]) -> str:
        self.next_id += 1
        return json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                           "params": params})

    def call(self) -> Any:
        params: dict[str, Any] = {"name": TOOL, "arguments": ARGS}
        if self.meta:
            params["_meta"] = self.meta
        answer = self.session.post(self.url, headers=self.headers,
                                   data=self.body("tools/call", params))
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            data = [line for line in answer.text.splitlines() if line.startswith("data: {")]
            return json.loads(data[-1][6:])["result"]
        return answer.json()["result"]

    def close(self) -> None:
        if "Mcp-Session-Id" in self.headers:
            self.session.delete(self.url, headers=self.headers)
        self.session.close()


def official(python: Path, url: str, mode: str, calls: int, warmup: int) -> dict[str, Any]:
    """The official client's samples, from its child process."""
    done = subprocess.run([str(python), str(OFFICIAL_CLIENT), url, "--mode", mode,
                           "--calls", str(calls), "--warmup", str(warmup)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the official client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure_scenario(python: Path, name: str, calls: int, warmup: int) -> dict[str, Any]:
    options, version, mode = SCENARIOS[name]
    with McpServer(python, options) as mcp, \
            RemoteServer(mcp.url, name="bench", protocol_version=version) as server:
        negotiated = server.protocol_version
        assert negotiated is not None
        raw = RawClient(mcp.url, negotiated)
        lean = RawClient(mcp.url, negotiated, trust_env=False)
        try:
            assert server.call_tool(TOOL, ARGS).text == "hello"
            assert raw.call()["content"][0]["text"] == "hello"
            assert lean.call()["content"][0]["text"] == "hello"
            runners = [("raw", raw.call), ("raw_lean", lean.call),
                       ("sdk", lambda: server.call_tool(TOOL, ARGS))]
            first = interleaved(runners, calls // 2, warmup=warmup)
            theirs = official(python, mcp.url, mode, calls, warmup)
            second = interleaved(runners, calls - calls // 2, warmup=0)
        finally:
            raw.close()
            lean.close()
    samples = {side: first[side] + second[side] for side in first}
    stats = {side: summary(values) for side, values in samples.items()}
    stats["official"] = summary(theirs["samples"])
    sdk_p50 = stats["sdk"]["p50_us"]
    return {
        "scenario": name,
        "protocol_version": negotiated,
        "official_protocol_version": theirs.get("protocol_version"),
        "calls": len(samples["sdk"]),
        **stats,
        "ratio_raw_p50": sdk_p50 / stats["raw"]["p50_us"],
        "ratio_raw_lean_p50": sdk_p50 / stats["raw_lean"]["p50_us"],
        "ratio_official_p50": sdk_p50 / stats["official"]["p50_us"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per side and scenario")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"calls per side before measuring (default {WARMUP})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_tools_python_option(parser)
    args = parser.parse_args(argv)
    python = tools_python_or_exit(
        args.tools_python, "bench_mcp_http.py: the official server and client need the tools "
        "venv: ")
    load_before = os.getloadavg()[0]
    scenarios = [measure_scenario(python, name, args.calls, args.warmup) for name in SCENARIOS]
    result = {"benchmark": "mcp_http_call_tool", "sark_sync": sark_sync.__version__,
              "cpu_count": os.cpu_count(), "load_average": [round(load_before, 2),
                                                            round(os.getloadavg()[0], 2)],
              "scenarios": scenarios}
    if args.json:
        print(json.dumps(result))
        return 0
    for scenario in scenarios:
        print(f"\n{scenario['scenario']}: call_tool over MCP {scenario['protocol_version']} "
              f"(official client at {scenario['official_protocol_version']}), "
              f"{scenario['calls']} calls each")
        print_table({side: scenario[side] for side in ("raw", "raw_lean", "sdk", "official")})
        print(f"sdk/raw p50 {scenario['ratio_raw_p50']:.3f} "
              f"(lean {scenario['ratio_raw_lean_p50']:.3f})  "
              f"sdk/official p50 {scenario['ratio_official_p50']:.3f}")
    print(f"\n{result['cpu_count']} CPUs, load average {result['load_average'][0]} before and "
          f"{result['load_average'][1]} after (a loaded machine widens every p95)")
    main_row = scenarios[0]
    print(f"\ngoals ({main_row['scenario']}): sdk/raw p50 {main_row['ratio_raw_p50']:.3f} <= "
          f"{RAW_GOAL} {'met' if main_row['ratio_raw_p50'] <= RAW_GOAL else 'MISSED'}; "
          f"sdk/official p50 {main_row['ratio_official_p50']:.3f} <= {OFFICIAL_GOAL} "
          f"{'met' if main_row['ratio_official_p50'] <= OFFICIAL_GOAL else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
