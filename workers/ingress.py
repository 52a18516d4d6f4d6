"""Accepting an inbound message: record it, publish it, wake a worker.

Order matters. The PostgreSQL commit comes first (that is "accepted"); then the Redis
cursor is raised; then, only if no worker holds the conversation, a wake-up is sent.
A crash between any two steps loses nothing: the sweep finds the pending message in
PostgreSQL and wakes the conversation again.
"""

from __future__ import annotations

import threading
import time

import structlog
from kombu.exceptions import OperationalError
from redis import RedisError

from config.effective import EffectiveConfig
from config.schema import LimitsConfig
from state.ingress import InboxFull, IngressLimits, count_pending, record_inbound
from state.models import Accepted, ConversationRef, InboundMessage
from workers.policy import concurrency_policy
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


class Backlog:
    """The global bound on queued turns, counted in PostgreSQL at most once per
    `refresh_s` per process so that ingress does not count rows on every request."""

    def __init__(self, refresh_s: float = 1.0) -> None:
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._value = 0
        self._read_at = float("-inf")

    def check(self, rt: Runtime, limits: LimitsConfig) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self._refresh_s:
                self._value = count_pending(rt.engine)
                self._read_at = now
            value = self._value
        if value >= limits.max_queued_turns:
            raise InboxFull("global", limits.max_queued_turns, limits.retry_after_s)


def accept(rt: Runtime, message: InboundMessage, backlog: Backlog) -> Accepted:
    """Record `message` and make sure a worker will run it. Raises InboxFull."""
    config = rt.config.effective(message.tenant)
    if config is None:
        raise LookupError(f"tenant {message.tenant!r} has no config")
    backlog.check(rt, config.global_config.limits)
    limits = IngressLimits(config.limits.max_inbox_per_conversation, config.limits.retry_after_s)
    accepted = record_inbound(rt.engine, message, limits)
    if accepted.duplicate:
        return accepted
    conv = ConversationRef(message.tenant, accepted.conversation_id)
    try:
        busy = rt.queue.enqueue(conv, accepted.seq)
        if not busy:
            rt.wakeups.turn(conv, message.channel)
        elif concurrency_policy(config.channels, message.channel) == "reject":
            _reject(rt, conv, config, accepted.seq)
    except (RedisError, OperationalError, OSError) as exc:
        # Accepted is accepted: the message is committed; the sweep will wake it.
        log.warning("ingress.wakeup_failed", error=type(exc).__name__, tenant=message.tenant)
    return accepted


def _reject(rt: Runtime, conv: ConversationRef, config: EffectiveConfig, seq: int) -> None:
    """A turn of this conversation runs: record the message as rejected and answer at once."""
    channel = config.channels.generic
    if channel is None:
        return
    if rt.conversations.reject_if_unclaimed(conv, seq, channel.busy_text):
        rt.wakeups.delivery(conv)
