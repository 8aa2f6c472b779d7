"""The leak guard of the integration tests sees what the stdio promises are about.

"No orphans" is only checked if the guard can see an orphan: a grandchild whose parent exited
is reparented to init, and no longer a child of the test process. The guard also watches the
process groups and sessions led by every process the tests spawned; this test proves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import leak_guard
from support import wait_for

#: The grandchild sleeps this long unless killed (the test kills it at once).
SLEEP = 60


def test_an_orphan_left_in_a_spawned_session_is_reported() -> None:
    before = leak_guard.snapshot()
    starter = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({SLEEP})'])\n"
        "print(child.pid, flush=True)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert leader.stdout is not None
    with leader.stdout:
        orphan = int(leader.stdout.readline())
    try:
        assert leader.wait(10) == 0  # the leader is gone and reaped: the orphan is init's now
        problems, _ = leak_guard.find_leaks(before)
        reported = [p for p in problems if p.startswith(f"child process pid {orphan} ")]
        assert len(reported) == 1, problems
        assert f"(in the process group or session of spawned pid {leader.pid})" in reported[0]
    finally:
        os.kill(orphan, signal.SIGKILL)
    wait_for(lambda: not leak_guard.find_leaks(before)[0], 10, what="the orphan to go")
