"""Real Turnstile processes (Celery worker, beat) for the tests that need them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from workers.process_groups import stop_group


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_group(self.process, timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, process, log_path, env)


def wait_for_workers(app: Celery, count: int, proc: Proc, timeout_s: float = 60.0) -> None:
    """Until `count` worker nodes answer a broadcast ping."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-4000:]}")
        replies = app.control.ping(timeout=0.5) or []
        if len(replies) >= count:
            return
    raise TimeoutError(f"{proc.name} did not become ready:\n{proc.log()[-4000:]}")
