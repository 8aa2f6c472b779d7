"""Resident memory from ``/proc``, for bench_memory.py and _mcp_official_stdio.py.

Both sides of bench_memory measure themselves with these, each in its own child process: the
SDK's with the interpreter that runs sark_sync, the official client's with the tools venv's
python (``mcp``, no sark_sync), which imports this module as a sibling of its script. So it
imports nothing but ``os`` and ``pathlib``: whatever it imported would count in both sides'
RSS, baseline included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def rss_kb(pid: int | str = "self") -> int:
    """``VmRSS`` of a process, in kB (0 if it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(parent: int) -> list[int]:
    """The PIDs of the processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def with_servers(baseline_kb: int) -> dict[str, Any]:
    """One side's reading, taken while its servers run: ``baseline_kb`` (this process before
    the client), this process's RSS now, and the PIDs and RSS of its children (the servers)."""
    now = rss_kb()
    pids = children(os.getpid())
    children_kb = [rss_kb(pid) for pid in pids]
    return {"baseline_kb": baseline_kb, "with_servers_kb": now,
            "children_pids": pids, "children_kb": children_kb}
