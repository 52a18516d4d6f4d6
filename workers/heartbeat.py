"""Keeps a lease alive while its holder works, and cancels turns that must stop.

A renewal that fails (token gone, or Redis unreachable) means another worker may hold
the conversation now: the running turn is cancelled before any further side effect, and
the drain ends. The fencing checks in PostgreSQL and Redis stay the last line of defence.
Under the `interrupt` policy the keeper also polls the conversation's cursor, and a
newer message cancels the running turn within one poll interval.
"""

from __future__ import annotations

import threading
import time

import structlog
from redis import RedisError

from state.queue import ConversationQueue, Lease
from workers.background import BlockThread
from workers.cancel import CancelToken

log = structlog.get_logger(__name__)

INTERRUPT_POLL_S = 0.05
LEASE_LOST = "lease lost"
INTERRUPTED = "interrupted"


class LeaseKeeper(BlockThread):
    """Context manager: renews `lease` every ttl/3 on a daemon thread."""

    thread_name = "lease-keeper"

    def __init__(self, lease: Lease, queue: ConversationQueue, *, watch_interrupts: bool) -> None:
        super().__init__()
        self._lease = lease
        self._queue = queue
        self._renew_every_s = lease.ttl_ms / 3000
        self._tick_s = INTERRUPT_POLL_S if watch_interrupts else self._renew_every_s
        self._watch = watch_interrupts
        self.lost = threading.Event()
        self._guard = threading.Lock()
        self._turn: tuple[int, CancelToken] | None = None

    def begin_turn(self, last_seq: int) -> CancelToken:
        """A fresh token for the turn that ends at `last_seq`; cancelled if the lease is
        lost, or (watching interrupts) when a message after `last_seq` arrives."""
        token = CancelToken()
        if self.lost.is_set():
            token.cancel(LEASE_LOST)
        with self._guard:
            self._turn = (last_seq, token)
        return token

    def end_turn(self) -> None:
        with self._guard:
            self._turn = None

    def _run(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self._tick_s):
            try:
                if time.monotonic() - renewed_at >= self._renew_every_s:
                    if not self._lease.renew():
                        self._lose("token gone")
                        return
                    renewed_at = time.monotonic()
                if self._watch:
                    self._check_interrupt()
            except RedisError as exc:
                self._lose(type(exc).__name__)
                return

    def _check_interrupt(self) -> None:
        with self._guard:
            turn = self._turn
        if turn is not None and self._queue.last_seq(self._lease.conv) > turn[0]:
            turn[1].cancel(INTERRUPTED)

    def _lose(self, why: str) -> None:
        log.warning("lease.lost", why=why)
        self.lost.set()
        with self._guard:
            if self._turn is not None:
                self._turn[1].cancel(LEASE_LOST)
