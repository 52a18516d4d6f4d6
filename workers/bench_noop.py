"""The baseline of `turnstile bench ordering`: raw Celery tasks that do (almost) nothing.

A worker started as `celery -A workers.bench_noop worker -Q bench.noop` runs `bench.noop`
with the broker settings of tasks/app.py that decide throughput (late acks, prefetch 1,
JSON, task events, the same transport options), so turns/s divided by no-op tasks/s
says how much of a turn's cost is Turnstile's own rather than Celery's.

The task does one Redis INCR so the bench can tell exactly when all of them ran,
instead of inferring it from kombu's internal queue and unacked keys.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from celery import Celery, Task
from kombu import Queue  # type: ignore[attr-defined]
from redis import Redis

NOOP_QUEUE = "bench.noop"
NOOP_TASK = "bench.noop"
# Where the counter lives: the state Redis, which the bench already reads.
COUNTER_URL_ENV = "REDIS_URL"


def create_noop_app(broker_url: str, visibility_timeout_s: int = 900) -> Celery:
    """A Celery app configured like tasks/app.py in everything that affects a task's
    round trips through the broker; nothing else (no beat, no Runtime)."""
    app = Celery("bench_noop")
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_throttle": 1,
            "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 4)),
        },
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        task_queues=[Queue(NOOP_QUEUE)],  # type: ignore[no-untyped-call]
        task_default_queue=NOOP_QUEUE,
    )
    app.task(name=NOOP_TASK, base=CountingTask, bind=True)(_noop)
    return app


class CountingTask(Task):  # type: ignore[misc]
    """Holds one Redis client per worker process, made on first use (after the fork)."""

    @cached_property
    def counter(self) -> Redis:
        url = os.environ.get(COUNTER_URL_ENV)
        if not url:
            raise RuntimeError(f"{COUNTER_URL_ENV} is not set: the no-op counter has no Redis")
        return Redis.from_url(url)


def _noop(task: CountingTask, counter_key: str) -> None:
    """Count this run; nothing else."""
    task.counter.incr(counter_key)


def _broker_url() -> str:
    url = os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL")
    if not url:
        raise RuntimeError("BROKER_URL (or REDIS_URL) must be set for the bench no-op worker")
    return url


def _visibility_timeout_s() -> int:
    return int(os.environ.get("TURNSTILE_VISIBILITY_TIMEOUT_S", "900"))


# `celery -A workers.bench_noop` looks for this name.
app: Any = create_noop_app(_broker_url(), _visibility_timeout_s())
