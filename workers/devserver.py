"""`turnstile dev`: the whole system on one machine, under one supervisor.

Starts the embedded services (unless REDIS_URL / DATABASE_URL are set), applies the
migrations, then runs web, one worker, beat and Flower as child processes with their
output prefixed. Ctrl-C (or SIGTERM, or any child dying) stops every child, each in its
own process group so nothing is left behind, and then the embedded services.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from config.settings import Settings
from state.embedded import EmbeddedServices
from state.migrate import upgrade
from workers.process_groups import signal_group, stop_group

# The documented dev default of the demo tenant's webhook secret; set your own anywhere
# else. It only ever signs requests to and from this machine's dev sink.
DEV_DEMO_SECRET = "dev-demo-secret"  # noqa: S105
STOP_GRACE_S = 25.0
# Written while `turnstile dev` runs, so CLI commands in another terminal find its services.
SERVICES_FILE = "dev-services.json"
COLOURS = ("36", "32", "35", "33")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def run_dev(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"turnstile dev: data in {data_dir}", file=sys.stderr)
    services = EmbeddedServices.start(
        data_dir,
        need_redis=settings.redis_url is None,
        need_postgres=settings.database_url is None,
    )
    children: list[Child] = []
    services_file = data_dir / SERVICES_FILE
    try:
        env = _child_env(services)
        _write_services_file(services_file, env)
        upgrade(env["DATABASE_URL"])
        stop = _install_signal_handlers()
        width = max(len(name) for name in ("web", "worker", "beat", "flower"))
        for index, name in enumerate(("web", "worker", "beat", "flower")):
            children.append(_spawn(name, env, COLOURS[index], width))
        if _wait_healthy(settings, children, stop):
            _banner(settings, env)
        return _supervise(children, stop)
    finally:
        services_file.unlink(missing_ok=True)
        _stop_all(children)
        services.stop()
        print("turnstile dev: stopped", file=sys.stderr)


def _write_services_file(path: Path, env: dict[str, str]) -> None:
    urls = {key: env[key] for key in ("REDIS_URL", "BROKER_URL", "DATABASE_URL")}
    path.write_text(json.dumps(urls))


def read_services_file(data_dir: Path) -> dict[str, str]:
    """The service URLs of a `turnstile dev` running from this checkout, if any."""
    try:
        found = json.loads((data_dir / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _child_env(services: EmbeddedServices) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in services.environment().items():
        if key not in os.environ or not os.environ[key]:
            env[key] = value
    env.setdefault("BROKER_URL", env["REDIS_URL"])
    env.setdefault("TURNSTILE_DEMO_SECRET", DEV_DEMO_SECRET)
    env.setdefault("TURNSTILE_WORKER_CONCURRENCY", "2")
    env.setdefault("TURNSTILE_WORKER_METRICS_PORT", "9808")
    env["TURNSTILE_DEV_SINK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _install_signal_handlers() -> threading.Event:
    stop = threading.Event()

    def _handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    return stop


def _spawn(name: str, env: dict[str, str], colour: str, width: int) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", name],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: Ctrl-C reaches only us
    )
    prefix = (
        f"\x1b[{colour}m{name.ljust(width)} |\x1b[0m "
        if sys.stderr.isatty()
        else f"{name.ljust(width)} | "
    )
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(process.stdout, prefix), daemon=True).start()
    return Child(name, process)


def _pump(stream: IO[bytes], prefix: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stderr.write(prefix + line.decode(errors="replace"))
    stream.close()


def _wait_healthy(settings: Settings, children: list[Child], stop: threading.Event) -> bool:
    web = f"http://{settings.http_host}:{settings.http_port}/healthz"
    flower = f"http://127.0.0.1:{settings.flower_port}/"
    deadline = time.monotonic() + 60
    pending = {web, flower}
    while pending and not stop.is_set() and time.monotonic() < deadline:
        if any(child.process.poll() is not None for child in children):
            return False
        for url in list(pending):
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    pending.discard(url)
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    return not pending


def _banner(settings: Settings, env: dict[str, str]) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    secret_note = (
        f"TURNSTILE_DEMO_SECRET={env['TURNSTILE_DEMO_SECRET']} "
        if "TURNSTILE_DEMO_SECRET" not in os.environ
        else ""
    )
    lines = [
        "",
        "Turnstile is running (Ctrl-C stops everything)",
        f"  webhook   POST {base}/webhooks/demo/generic",
        f"  health    {base}/healthz   metrics {base}/metrics",
        f"  flower    http://127.0.0.1:{settings.flower_port}/",
        f"  worker metrics http://127.0.0.1:{env['TURNSTILE_WORKER_METRICS_PORT']}/metrics",
        "  try it, in another terminal:",
        f'    {secret_note}.venv/bin/turnstile send "hello"',
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _supervise(children: list[Child], stop: threading.Event) -> int:
    while not stop.wait(0.5):
        for child in children:
            code = child.process.poll()
            if code is not None:
                print(f"turnstile dev: {child.name} exited with {code}; stopping", file=sys.stderr)
                return 1
    return 0


def _stop_all(children: list[Child]) -> None:
    for child in children:  # all of them at once, then wait: they stop in parallel
        signal_group(child.process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        if not stop_group(child.process, max(0.1, deadline - time.monotonic())):
            print(f"turnstile dev: {child.name} did not stop; killed it", file=sys.stderr)
