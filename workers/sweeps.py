"""Sweeps: find work that lost its wake-up and wake it again.

Wake-ups get lost (a crash between commit and send, a worker SIGKILLed with prefetched
messages, a Redis that lost the broker's lists). PostgreSQL knows what is pending; the
sweeps read it through partial indexes (never SCAN) and send fresh wake-ups for
conversations that nobody holds.
"""

from __future__ import annotations

import structlog

from workers.metrics import SWEEPS
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

BATCH = 500
DELIVERY_GRACE_S = 2.0


def sweep_turns(rt: Runtime) -> int:
    """Wake conversations with pending messages, no lease, and no attention for a lease
    TTL. Their Redis cursor is raised to PostgreSQL's so the holder cannot let go early."""
    stale_s = rt.config.global_config().ordering.lease_ttl_s
    stale = rt.conversations.stale_pending(stale_s=stale_s, limit=BATCH)
    if not stale:
        return 0
    held = rt.queue.holders([s.ref for s in stale])
    woken = 0
    for conversation, has_holder in zip(stale, held, strict=True):
        if has_holder:
            continue
        rt.queue.enqueue(conversation.ref, conversation.last_seq)
        rt.wakeups.turn(conversation.ref, conversation.channel)
        woken += 1
    if woken:
        SWEEPS.labels(kind="turns").inc(woken)
        log.info("sweep.turns", woken=woken)
    return woken


def sweep_deliveries(rt: Runtime) -> int:
    """Wake conversations whose head reply is due and was not picked up."""
    due = rt.outbox.due(grace_s=DELIVERY_GRACE_S, limit=BATCH)
    for conv in due:
        rt.wakeups.delivery(conv)
    if due:
        SWEEPS.labels(kind="deliveries").inc(len(due))
    return len(due)
