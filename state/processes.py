"""Where each process publishes the config versions it serves (Redis, with a TTL), so
version skew across workers is visible (`turnstile config status`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import cast

from redis import Redis

from state.keys import PROCESS_HEARTBEAT_TTL_S, PROCESSES_INDEX, process_key


@dataclass(frozen=True)
class ProcessVersions:
    role: str
    host: str
    pid: int
    global_version: int | None
    tenants: dict[str, int] = field(default_factory=dict)
    at: float = 0.0


def publish(client: Redis, report: ProcessVersions) -> None:
    key = process_key(report.host, report.pid)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.set(key, json.dumps(asdict(report) | {"at": now}), ex=PROCESS_HEARTBEAT_TTL_S)
    pipe.zadd(PROCESSES_INDEX, {key: now})
    pipe.zremrangebyscore(PROCESSES_INDEX, "-inf", now - PROCESS_HEARTBEAT_TTL_S)
    pipe.execute()


def list_processes(client: Redis) -> list[ProcessVersions]:
    """Processes that published within the heartbeat TTL, oldest report first."""
    since = time.time() - PROCESS_HEARTBEAT_TTL_S
    keys = cast(list[bytes], client.zrangebyscore(PROCESSES_INDEX, since, "+inf"))
    if not keys:
        return []
    reports = []
    for raw in client.mget(keys):
        if raw is not None:
            reports.append(ProcessVersions(**json.loads(raw)))
    return sorted(reports, key=lambda r: (r.role, r.host, r.pid))
