"""invoke_tool over HTTP versus a bare ``requests.Session.post(...).json()``, same run.

Every side calls the same tool on the same LocalGateway (a child process on 127.0.0.1), in
alternating batches so that drift in the machine's load affects all alike. The SDK side runs
the whole pipeline (validation, deadline, breaker, deadline-aware retries, response checks)
with governance off. Printed: p50/p95/mean in microseconds and the SDK/raw ratios.

Two baselines: ``raw`` is what people write (a default Session, which re-reads proxy and
netrc settings from the environment on every call), ``raw_lean`` the same Session with
``trust_env = False``, which isolates the SDK's own per-call overhead.

``list_servers()`` is measured the same way, in a run of its own after the invoke sides: the
SDK's ``client.list_servers()`` (one page, the gateway's registered servers as
``ServerInfo``) against ``raw`` and ``raw_lean`` sessions sending the very request it sends
(``GET /api/v1/servers?offset=0&limit=100`` with the key and an ``X-Request-ID``) and reading
the JSON.

Three governed rows, in the same run against the same baselines, show where governance costs:
``audit to file only`` (one JSON line per call appended by a ``JSONLinesSink``), then an
``OPAAuthorizer`` pre-check on the real OPA engine with the shipped ``gateway.rego`` plus the
same audit, with its decision cache on (the policy lets this principal call the gateway's
low-sensitivity ``demo`` server and says ``cache_ttl: 300``) and off (one OPA round trip per
call). Each governed side has its own audit file and its own engine (a child process of the
tools venv's python, ``_opa_process.py``), so that after the run the bench checks that every
call left exactly one audit line, that the cache-on side asked its engine a handful of times
at most, and that the cache-off side asked once per call. ``--no-governed`` skips these rows
(for machines without the tools venv); ``--tools-python`` names the venv's interpreter
instead of making or reusing ``<repo>/.tools-venv``.

    python benchmarks/bench_http.py [--calls 3000] [--json] [--no-governed]
                                    [--tools-python PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway_process import API_KEY, gateway_process
from _opa_process import OpaProcess, add_tools_python_option, opa_process, tools_python_or_exit
from _stats import WARMUP, interleaved, print_table, summary

import sark_sync
from sark_sync.governance import JSONLinesSink, OPAAuthorizer

PARAMETERS = {"text": "hello"}
#: Who the calls are made for: the shipped policy allows any authenticated principal on a
#: low-sensitivity server such as the gateway's ``demo``.
PRINCIPAL = sark_sync.Principal("alice", roles=("developer",))
#: The SDK sides: result key -> row label.
SDK_ROWS = {
    "sdk": "sdk",
    "audit_only": "audit to file only",
    "governed_cache_on": "governed (OPA pre-check, cache on, audit to file)",
    "governed_cache_off": "governed (OPA pre-check, cache off, audit to file)",
}
#: The cache-on side may ask its engine at most this fraction of its calls ("far fewer").
CACHED_DECISIONS_MAX_FRACTION = 0.1


@dataclass(frozen=True)
class GovernedSetup:
    """Where the governed sides audit to, and their engines (one each, to count apart)."""

    audit_dir: Path
    opa_cache_on: OpaProcess
    opa_cache_off: OpaProcess


def caller(client: sark_sync.GatewayClient, principal: sark_sync.Principal | None
           ) -> Callable[[], Any]:
    def call() -> Any:
        return client.invoke_tool("demo", "echo", PARAMETERS, principal=principal)
    return call


def audit_lines(path: Path) -> int:
    """The lines of an audit file; raise unless each is a JSON event of a successful call."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if json.loads(line).get("outcome") != "success":
            raise RuntimeError(f"{path.name} line {number} is not a successful call: {line}")
    return len(lines)


def governed_sides(stack: ExitStack, url: str, setup: GovernedSetup
                   ) -> list[tuple[str, Callable[[], Any]]]:
    """A client per governed side, each auditing to its own file; closed by ``stack``."""
    engines = {"audit_only": None, "governed_cache_on": setup.opa_cache_on,
               "governed_cache_off": setup.opa_cache_off}
    sides = []
    for side, engine in engines.items():
        sink = JSONLinesSink(setup.audit_dir / f"{side}.jsonl")
        stack.callback(sink.close)  # the client only flushes a caller's sink
        authorizer = None if engine is None else OPAAuthorizer(
            engine.url, cache=side == "governed_cache_on")
        client = stack.enter_context(sark_sync.GatewayClient(
            url, api_key=API_KEY, authorizer=authorizer, audit=sink))
        sides.append((side, caller(client, PRINCIPAL)))
    return sides


def check_governed(setup: GovernedSetup, samples: dict[str, list[float]]) -> dict[str, Any]:
    """After the run: one audit line per call of each side, and the engines asked as the
    cache says. Raises ``RuntimeError`` if not."""
    # Every side was called once to check its answer, then WARMUP times, then measured.
    made = {side: 1 + WARMUP + len(samples[side]) for side in SDK_ROWS if side != "sdk"}
    lines = {side: audit_lines(setup.audit_dir / f"{side}.jsonl") for side in made}
    decisions = {"governed_cache_on": setup.opa_cache_on.decisions(),
                 "governed_cache_off": setup.opa_cache_off.decisions()}
    if lines != made:
        raise RuntimeError(f"audit lines {lines} != calls made {made}")
    cached = decisions["governed_cache_on"]
    if not 1 <= cached <= CACHED_DECISIONS_MAX_FRACTION * made["governed_cache_on"]:
        raise RuntimeError(f"the cache-on side asked OPA {cached} times in "
                           f"{made['governed_cache_on']} calls")
    if decisions["governed_cache_off"] != made["governed_cache_off"]:
        raise RuntimeError(f"the cache-off side asked OPA {decisions['governed_cache_off']} "
                           f"times in {made['governed_cache_off']} calls")
    return {"calls_made": made, "audit_lines": lines, "opa_decisions": decisions}


def measure(calls: int, url: str, setup: GovernedSetup | None = None) -> dict[str, Any]:
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

    with ExitStack() as stack:
        client = stack.enter_context(sark_sync.GatewayClient(url, api_key=API_KEY))
        sdk_sides = [("sdk", caller(client, None))]
        if setup is not None:
            sdk_sides += governed_sides(stack, url, setup)
        assert raw()["result"]["content"][0]["text"] == "hello"
        for _, call in sdk_sides:
            assert call().text == "hello"
        samples = interleaved([("raw", raw), ("raw_lean", raw_lean), *sdk_sides], calls)
        listing = measure_list_servers(calls, url, client, session, lean)
    session.close()
    lean.close()
    stats = {side: summary(values) for side, values in samples.items()}
    raw_stats, lean_stats = stats["raw"], stats["raw_lean"]
    ratios = {side: {"p50": stats[side]["p50_us"] / raw_stats["p50_us"],
                     "lean_p50": stats[side]["p50_us"] / lean_stats["p50_us"],
                     "p95": stats[side]["p95_us"] / raw_stats["p95_us"]}
              for side, _ in sdk_sides}
    return {
        "benchmark": "http_invoke",
        "calls": len(samples["sdk"]),
        **stats,
        "ratio_p50": ratios["sdk"]["p50"],
        "ratio_lean_p50": ratios["sdk"]["lean_p50"],
        "ratio_p95": ratios["sdk"]["p95"],
        "ratios": ratios,
        "governed": None if setup is None else check_governed(setup, samples),
        "list_servers": listing,
    }


def measure_list_servers(calls: int, url: str, client: sark_sync.GatewayClient,
                         session: requests.Session, lean: requests.Session) -> dict[str, Any]:
    """``client.list_servers()`` against the same GET on the raw and lean sessions."""
    params = {"offset": 0, "limit": 100}

    def raw_get(on: requests.Session) -> Callable[[], Any]:
        def get() -> Any:
            response = on.get(url + "/api/v1/servers", params=params, headers={
                "X-API-Key": API_KEY, "X-Request-ID": str(uuid.uuid4())})
            response.raise_for_status()
            return response.json()
        return get

    raw, raw_lean = raw_get(session), raw_get(lean)
    names = [server.name for server in client.list_servers()]
    assert names and names == [server["server_name"] for server in raw()["servers"]], names
    samples = interleaved([("raw", raw), ("raw_lean", raw_lean),
                           ("sdk", client.list_servers)], calls)
    stats = {side: summary(values) for side, values in samples.items()}
    return {**stats, "calls": len(samples["sdk"]),
            "ratio_p50": stats["sdk"]["p50_us"] / stats["raw"]["p50_us"],
            "ratio_lean_p50": stats["sdk"]["p50_us"] / stats["raw_lean"]["p50_us"]}


def report(result: dict[str, Any]) -> None:
    print(f"invoke_tool vs requests.Session.post().json(), {result['calls']} calls each")
    rows = {name: result[name] for name in ("raw", "raw_lean")}
    rows.update({label: result[side] for side, label in SDK_ROWS.items() if side in result})
    print_table(rows)
    width = max(len(SDK_ROWS[side]) for side in result["ratios"]) + 2
    print(f"\n{'ratios':{width}}{'p50/raw':>10}{'p95/raw':>10}{'p50/lean':>10}")
    for side, ratio in result["ratios"].items():
        print(f"{SDK_ROWS[side]:{width}}{ratio['p50']:10.3f}{ratio['p95']:10.3f}"
              f"{ratio['lean_p50']:10.3f}")
    print("goal: sdk p50/raw <= 1.0; p50/lean is the SDK's own overhead")
    listing = result["list_servers"]
    print(f"\nlist_servers() vs requests.Session.get().json(), {listing['calls']} calls each")
    print_table({name: listing[name] for name in ("raw", "raw_lean", "sdk")})
    print(f"sdk/raw p50 {listing['ratio_p50']:.3f}, sdk/lean p50 {listing['ratio_lean_p50']:.3f}"
          " (goal: p50/raw <= 1.10)")
    governed = result["governed"]
    if governed is not None:
        made, decisions = governed["calls_made"], governed["opa_decisions"]
        print(f"checked: one audit line per call on every audited side "
              f"({', '.join(str(n) for n in governed['audit_lines'].values())} lines); "
              f"OPA asked {decisions['governed_cache_on']} times in "
              f"{made['governed_cache_on']} calls with the cache on, "
              f"{decisions['governed_cache_off']} in {made['governed_cache_off']} with it off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-governed", action="store_true",
                        help="skip the governed rows (they need the tools venv's OPA engine)")
    add_tools_python_option(parser)
    args = parser.parse_args(argv)
    python = None if args.no_governed else tools_python_or_exit(
        args.tools_python, "bench_http.py: the governed rows need the real OPA engine of the "
        "tools venv, which is not usable; run with --no-governed to skip them. Cause: ")
    with ExitStack() as stack:
        url = stack.enter_context(gateway_process())
        setup = None
        if python is not None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_http_")))
            setup = GovernedSetup(
                folder,
                stack.enter_context(opa_process(python, folder / "opa_cache_on.log")),
                stack.enter_context(opa_process(python, folder / "opa_cache_off.log")),
            )
        result = measure(args.calls, url, setup)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
