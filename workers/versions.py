"""Publishes this process's config versions every few seconds (a daemon thread)."""

from __future__ import annotations

import os
import socket
import threading

import structlog
from redis import Redis, RedisError

from config.registry import ConfigRegistry
from state.processes import ProcessVersions, publish

log = structlog.get_logger(__name__)

PUBLISH_EVERY_S = 5.0


def start_version_publisher(client: Redis, registry: ConfigRegistry, role: str) -> threading.Event:
    """Start publishing; set the returned event to stop."""
    stop = threading.Event()

    def _run() -> None:
        while True:
            _publish_once(client, registry, role)
            if stop.wait(PUBLISH_EVERY_S):
                return

    threading.Thread(target=_run, name="version-publisher", daemon=True).start()
    return stop


def _publish_once(client: Redis, registry: ConfigRegistry, role: str) -> None:
    global_version, tenants = registry.loaded_versions()
    report = ProcessVersions(role, socket.gethostname(), os.getpid(), global_version, tenants)
    try:
        publish(client, report)
    except RedisError as exc:
        log.warning("versions.publish_failed", error=type(exc).__name__)
