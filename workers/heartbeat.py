"""Keeps a lease alive while its holder works, and cancels the turn when it cannot.

A renewal that fails (token gone, or Redis unreachable) means another worker may hold
the conversation now; the turn is cancelled before any further side effect. The fencing
checks in PostgreSQL and Redis stay the last line of defence.
"""

from __future__ import annotations

import threading
from types import TracebackType

import structlog
from redis import RedisError

from state.queue import Lease
from workers.cancel import CancelToken

log = structlog.get_logger(__name__)


class LeaseKeeper:
    """Context manager: renews `lease` every ttl/3 on a daemon thread."""

    def __init__(self, lease: Lease, cancel: CancelToken) -> None:
        self._lease = lease
        self._cancel = cancel
        self._stop = threading.Event()
        self._interval_s = lease.ttl_ms / 3000
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                renewed = self._lease.renew()
            except RedisError as exc:
                log.warning("lease.renew_failed", error=type(exc).__name__)
                renewed = False
            if not renewed:
                self._cancel.cancel("lease lost")
                return
