"""The composition root: one Runtime per process, built by bootstrap() and passed in.

Nothing here is per turn: connection pools, the config registry and script handles are
process infrastructure. Per-turn state is built fresh inside each turn and never stored
here. Celery prefork children build their own Runtime after fork (tasks.app).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import httpx
from redis import Redis
from sqlalchemy import Engine

from config.registry import ConfigRegistry
from config.settings import Settings
from state.conversations import ConversationStore
from state.db import create_db_engine
from state.models import ConversationRef
from state.outbox import OutboxStore
from state.queue import ConversationQueue
from workers.versions import start_version_publisher


class Wakeups(Protocol):
    """Sends wake-ups through the broker. A wake-up carries no data: it only says
    "look at this conversation", so duplicates, losses and reordering are harmless."""

    def turn(self, conv: ConversationRef, channel: str) -> None: ...

    def delivery(self, conv: ConversationRef, delay_s: float = 0.0) -> None: ...


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    config: ConfigRegistry
    engine: Engine
    redis: Redis
    queue: ConversationQueue
    conversations: ConversationStore
    outbox: OutboxStore
    http: httpx.Client
    wakeups: Wakeups
    stop_publishing: threading.Event | None = None

    def close(self) -> None:
        if self.stop_publishing is not None:
            self.stop_publishing.set()
        self.http.close()
        self.redis.close()
        self.engine.dispose()


def bootstrap(
    settings: Settings,
    wakeups: Wakeups,
    *,
    role: str | None = None,
    db_pool_size: int = 5,
) -> Runtime:
    """Build this process's infrastructure. With a `role` (web, worker), the process
    also publishes the config versions it serves, for `turnstile config status`."""
    redis_url, _, database_url = settings.require_services()
    engine = create_db_engine(database_url, pool_size=db_pool_size)
    client = Redis.from_url(redis_url, health_check_interval=30)
    registry = ConfigRegistry(settings.config_dir)
    return Runtime(
        settings=settings,
        config=registry,
        engine=engine,
        redis=client,
        queue=ConversationQueue(client),
        conversations=ConversationStore(engine),
        outbox=OutboxStore(engine),
        http=httpx.Client(follow_redirects=False),
        wakeups=wakeups,
        stop_publishing=start_version_publisher(client, registry, role) if role else None,
    )
