"""Stopping a child process and everything it started (its process group).

`turnstile dev`, the bench and the tests start each Turnstile process in a session of
its own, so a Celery worker's pool children and Flower's helpers share its group and
go with it: nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> bool:
    """SIGTERM the group, wait up to `grace_s` for its leader, then SIGKILL whatever is
    left of the group. False if the leader had to be killed."""
    signal_group(process, signal.SIGTERM)
    stopped = True
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        stopped = False
    signal_group(process, signal.SIGKILL)
    process.wait()
    return stopped
