"""Ordered reply delivery for one conversation.

One delivery drain per conversation at a time (a Redis lease), sending the outbox in
seq order: a reply waiting for its retry holds back the later replies of its own
conversation only. Retries back off exponentially (or as the platform's Retry-After
says); after the last attempt, or on a permanent refusal, the reply is marked dead with
the platform's error and the conversation moves on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import structlog

from channels.delivery_result import DeliveryResult, Outcome, backoff_s
from channels.generic import send_reply
from channels.secrets import read_secret
from config.schema import DeliveryConfig
from state.models import ConversationRef, OutboxItem
from state.outbox import is_due
from state.queue import Lease
from workers.metrics import DELIVERIES
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Retries further out than this are left to the delivery sweep instead of a broker
# countdown, which must stay far below the visibility timeout (CELERY-FACTS §1).
MAX_COUNTDOWN_S = 60.0


class DeliveryOutcome(StrEnum):
    BUSY = "busy"
    DRAINED = "drained"
    WAITING = "waiting"  # the head reply waits for its next attempt


def deliver_conversation(rt: Runtime, conv: ConversationRef) -> DeliveryOutcome:
    """Send what is due; return once drained, waiting for a retry, or when another
    worker holds the conversation's delivery lease."""
    while True:
        lease = rt.queue.acquire_delivery(conv)
        if lease is None:
            return DeliveryOutcome.BUSY
        try:
            outcome = _send_due(rt, conv, lease)
        finally:
            lease.release()
        # A reply committed while we held the lease had its wake-up turned away as BUSY;
        # look once more now that the lease is free, so it is not left for the sweep.
        if outcome is DeliveryOutcome.WAITING or rt.outbox.head(conv) is None:
            return outcome


def _send_due(rt: Runtime, conv: ConversationRef, lease: Lease) -> DeliveryOutcome:
    policy = rt.config.global_config().delivery
    while True:
        item = rt.outbox.head(conv)
        if item is None:
            return DeliveryOutcome.DRAINED
        now = datetime.now(UTC)
        if not is_due(item, now):
            delay_s = (item.next_attempt_at - now).total_seconds()
            if delay_s <= MAX_COUNTDOWN_S:
                rt.wakeups.delivery(conv, delay_s=delay_s)
            return DeliveryOutcome.WAITING
        if not lease.renew():
            return DeliveryOutcome.BUSY  # another worker took over this conversation's delivery
        result = _attempt(rt, item, policy)
        DELIVERIES.labels(result=result.outcome).inc()
        _record(rt, item, result, policy)


def _attempt(rt: Runtime, item: OutboxItem, policy: DeliveryConfig) -> DeliveryResult:
    tenant = rt.config.tenant(item.tenant)
    channel = tenant.channels.generic if tenant is not None else None
    if channel is None:
        return DeliveryResult.retry(f"tenant {item.tenant!r} has no generic channel configured")
    secret = read_secret(channel.secret_env)
    if secret is None:
        return DeliveryResult.retry(f"environment variable {channel.secret_env} is not set")
    return send_reply(rt.http, str(channel.callback_url), secret, item, policy.timeout_s)


def _record(rt: Runtime, item: OutboxItem, result: DeliveryResult, policy: DeliveryConfig) -> None:
    attempt = item.attempts + 1
    fields = {"seq": item.seq, "attempt": attempt, "tenant": item.tenant}
    if result.outcome is Outcome.SENT:
        rt.outbox.mark_sent(item)
        log.info("delivery.sent", **fields)
        return
    error = result.error or "unknown error"
    if result.outcome is Outcome.PERMANENT or attempt >= policy.max_attempts:
        rt.outbox.mark_dead(item, error)
        log.error("delivery.dead", error=error, **fields)
        return
    delay_s = result.retry_after_s
    if delay_s is None:
        delay_s = backoff_s(attempt, policy.backoff_initial_s, policy.backoff_max_s)
    rt.outbox.mark_retry(item, error, min(delay_s, policy.backoff_max_s))
    log.warning("delivery.retry", error=error, delay_s=delay_s, **fields)
