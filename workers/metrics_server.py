"""Prometheus for a worker node: every prefork child writes its metrics to a directory
of this node's own (prometheus_client multiprocess mode), and the node's main process
serves their sum on TURNSTILE_WORKER_METRICS_PORT.

`prepare()` must run before anything imports prometheus_client's metrics, because the
library picks its storage when a metric is created.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(data_dir: Path) -> Path:
    """A fresh, empty directory for this node's processes."""
    directory = (data_dir / "metrics" / f"worker-{os.getpid()}").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[ENV] = str(directory)
    return directory


def serve(port: int, host: str = "127.0.0.1") -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def forget_process(pid: int) -> None:
    """Drop a dead child's live gauges; its counters keep counting in the sum."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
