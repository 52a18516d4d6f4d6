"""The baseline of `turnstile bench ordering`: raw Celery tasks that do (almost) nothing.

A worker started as `celery -A workers.bench_noop worker -Q bench.noop` runs `bench.noop`
with the broker settings of tasks/app.py that decide throughput (copied from it: late
acks, prefetch 1, JSON, task events, the same transport options), so turns/s divided by
no-op tasks/s says how much of a turn's cost is Turnstile's own rather than Celery's.

The task does one Redis INCR so the bench can tell exactly when all of them ran,
instead of inferring it from kombu's internal queue and unacked keys.
"""

from __future__ import annotations

import os
import time
from functools import cached_property
from typing import Any

from celery import Celery, Task
from kombu import Queue  # type: ignore[attr-defined]
from redis import Redis

NOOP_QUEUE = "bench.noop"
NOOP_TASK = "bench.noop"
# Where the counter lives: the state Redis, which the bench already reads.
COUNTER_URL_ENV = "REDIS_URL"


# The settings of tasks/app.py that decide a task's round trips through the broker.
# Copied from the real app, so the baseline follows any change made there.
SHARED_SETTINGS = (
    "broker_url",
    "broker_transport_options",
    "broker_connection_retry_on_startup",
    "task_ignore_result",
    "task_serializer",
    "accept_content",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "worker_send_task_events",
    "task_send_sent_event",
    "worker_hijack_root_logger",
)


def create_noop_app(turnstile: Celery) -> Celery:
    """A Celery app configured like `turnstile`'s in everything that affects a task's
    round trips through the broker; nothing else (no beat, no Runtime)."""
    app = Celery("bench_noop")
    app.conf.update({name: turnstile.conf[name] for name in SHARED_SETTINGS})
    app.conf.update(
        result_backend=None,
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
    """Count this run and stamp the time (first and last), in one round trip."""
    now = time.time()
    pipe = task.counter.pipeline(transaction=False)
    pipe.incr(counter_key)
    pipe.set(f"{counter_key}:first", now, nx=True)
    pipe.set(f"{counter_key}:last", now)
    pipe.execute()


def span_s(client: Redis, counter_key: str) -> float:
    """Seconds from the first no-op task to the last one."""
    first, last = client.mget(f"{counter_key}:first", f"{counter_key}:last")
    if first is None or last is None:
        raise RuntimeError(f"no-op tasks left no timestamps under {counter_key}")
    return float(last) - float(first)


def _turnstile_app() -> Celery:
    from tasks.app import create_celery_app

    return create_celery_app()


# `celery -A workers.bench_noop` looks for this name.
app: Any = create_noop_app(_turnstile_app())
