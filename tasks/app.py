"""The Celery app: broker settings that fit the lease design, queues, beat schedule.

A Celery message is only a wake-up ("look at conversation X"); the PostgreSQL record,
the Redis cursor and the lease are the truth. The settings below follow
CELERY-FACTS.md "What the design must do".
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from kombu import Queue  # type: ignore[attr-defined]

from config.settings import Settings, load_settings
from state.models import ConversationRef
from tasks.routing import ALL_QUEUES, DELIVERY, MAINTENANCE, turn_queue
from workers.logging import configure_logging
from workers.metrics_server import forget_process
from workers.runtime import Runtime, bootstrap

TASK_SOFT_TIME_LIMIT_S = 600
TASK_TIME_LIMIT_S = 660


class CeleryWakeups:
    """Wakeups over the broker; the task names are the public contract of the queues."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def turn(self, conv: ConversationRef, channel: str) -> None:
        self._app.send_task(
            "turns.process",
            args=(conv.tenant, conv.conversation_id, channel),
            queue=turn_queue(channel),
        )

    def delivery(self, conv: ConversationRef, delay_s: float = 0.0) -> None:
        self._app.send_task(
            "delivery.send",
            args=(conv.tenant, conv.conversation_id),
            queue=DELIVERY,
            countdown=delay_s if delay_s > 0 else None,
        )


class TurnstileCelery(Celery):  # type: ignore[misc]
    """Celery app that owns this process's Runtime, built lazily after fork."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("turnstile", **kwargs)
        self.turnstile_settings = settings
        self._runtime: Runtime | None = None
        # Set in prefork children: they publish their config versions as "worker".
        self.process_role: str | None = None
        self._runtime_lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            with self._runtime_lock:
                if self._runtime is None:
                    self._runtime = bootstrap(
                        self.turnstile_settings, CeleryWakeups(self), role=self.process_role
                    )
        return self._runtime

    def warm_up(self) -> None:
        """Build the Runtime now (connections still open lazily), so the process
        publishes its config versions before its first task."""
        _ = self.runtime

    def reset_runtime(self) -> None:
        """Drop connections inherited across fork; the child builds its own."""
        with self._runtime_lock:
            self._runtime = None

    def close_runtime(self) -> None:
        with self._runtime_lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None


def create_celery_app(settings: Settings | None = None) -> TurnstileCelery:
    settings = settings or load_settings()
    app = TurnstileCelery(settings)
    # The default visibility timeout (TURNSTILE_VISIBILITY_TIMEOUT_S, 900 s) is far above
    # any drain run (ordering.drain_max_s <= 120 s plus one turn), so a healthy run is not
    # redelivered while it runs; and if it is, the lease makes the copy return at once.
    # A crashed worker's wake-up is recovered by our own sweep long before this backstop.
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu 5.7: scan unacked messages on every restore tick (not every 10th), and
        # tick often enough for a short visibility timeout to mean what it says.
        "unacked_restore_throttle": 1,
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
    }
    app.conf.update(
        broker_url=settings.effective_broker_url or "memory://",
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_TIME_LIMIT_S,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Task events cost a PUBLISH per task state (about 40% of a worker's main process
        # in `turnstile bench ordering`). Flower switches them on in every worker while it
        # runs (its enable_events), so monitoring works and idle monitoring costs nothing.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_soft_shutdown_timeout=20.0,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
        task_queues=[Queue(name) for name in ALL_QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue=MAINTENANCE,
        beat_schedule=_beat_schedule(settings.sweep_interval_s),
        imports=("tasks.turns", "tasks.delivery", "tasks.maintenance"),
    )
    configure_logging(settings.log_level)
    return app


def _beat_schedule(interval_s: float) -> dict[str, dict[str, Any]]:
    # A sweep that waited in the queue longer than a few intervals is stale: drop it.
    options = {"queue": MAINTENANCE, "expires": interval_s * 5}
    return {
        "sweep-turns": {
            "task": "maintenance.sweep_turns",
            "schedule": interval_s,
            "options": options,
        },
        "sweep-deliveries": {
            "task": "maintenance.sweep_deliveries",
            "schedule": interval_s,
            "options": options,
        },
    }


app = create_celery_app()


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _after_fork(**_: object) -> None:
    app.process_role = "worker"
    app.reset_runtime()
    app.warm_up()


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _on_child_exit(pid: int | None = None, **_: object) -> None:
    app.close_runtime()
    if pid is not None:
        forget_process(pid)


__all__ = ["DELIVERY", "app"]
