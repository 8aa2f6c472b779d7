"""invoke_tool over HTTP versus a bare ``requests.Session.post(...).json()``, same run.

Both sides call the same tool on the same LocalGateway (a child process on 127.0.0.1), in
alternating batches so that drift in the machine's load affects both alike. The SDK side runs
the whole pipeline (validation, deadline, breaker, deadline-aware retries, response checks);
governance is off. Printed: p50/p95/mean in microseconds and the SDK/raw ratios.

Two baselines: ``raw`` is what people write (a default Session, which re-reads proxy and
netrc settings from the environment on every call), ``raw_lean`` the same Session with
``trust_env = False``, which isolates the SDK's own per-call overhead.

    python benchmarks/bench_http.py [--calls 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway_process import API_KEY, gateway_process
from _stats import interleaved, print_table, summary

import sark_sync

PARAMETERS = {"text": "hello"}


def measure(calls: int, url: str) -> dict[str, Any]:
    session = requests.Session()
    lean = requests.Session()
    lean.trust_env = False
    body = {"server": "demo", "tool": "echo", "parameters": PARAMETERS}
    headers = {"X-API-Key": API_KEY}

    def same_call_headers() -> dict[str, str]:
        # The very request the SDK sends, so the gateway does the same work for both sides.
        return {**headers, "X-Request-ID": str(uuid.uuid4()),
                "Idempotency-Key": str(uuid.uuid4())}

    def raw() -> Any:
        return session.post(url + "/api/v1/invoke", json=body,
                            headers=same_call_headers()).json()

    def raw_lean() -> Any:
        return lean.post(url + "/api/v1/invoke", json=body, headers=same_call_headers()).json()

    with sark_sync.GatewayClient(url, api_key=API_KEY) as client:

        def sdk() -> Any:
            return client.invoke_tool("demo", "echo", PARAMETERS)

        assert raw()["result"]["content"][0]["text"] == "hello"
        assert sdk().text == "hello"
        samples = interleaved([("raw", raw), ("raw_lean", raw_lean), ("sdk", sdk)], calls)
    session.close()
    lean.close()
    raw_stats, sdk_stats = summary(samples["raw"]), summary(samples["sdk"])
    lean_stats = summary(samples["raw_lean"])
    return {
        "benchmark": "http_invoke",
        "calls": len(samples["sdk"]),
        "raw": raw_stats,
        "raw_lean": lean_stats,
        "sdk": sdk_stats,
        "ratio_p50": sdk_stats["p50_us"] / raw_stats["p50_us"],
        "ratio_lean_p50": sdk_stats["p50_us"] / lean_stats["p50_us"],
        "ratio_p95": sdk_stats["p95_us"] / raw_stats["p95_us"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with gateway_process() as url:
        result = measure(args.calls, url)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"invoke_tool vs requests.Session.post().json(), {result['calls']} calls each")
    print_table({name: result[name] for name in ("raw", "raw_lean", "sdk")})
    print(f"ratio sdk/raw: p50 {result['ratio_p50']:.3f}  p95 {result['ratio_p95']:.3f}"
          "  (goal: p50 <= 1.15)")
    print(f"ratio sdk/raw_lean: p50 {result['ratio_lean_p50']:.3f}  (the SDK's own overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
