"""Draining one conversation: the lease holder runs its pending turns in seq order.

A drain run takes the lease (or returns at once: the holder drains), takes a fencing
token, then claims and runs messages one at a time until the queue is empty, the lease
is lost, or its budget (turns, seconds) is spent; then it hands the conversation back
to the broker so a long conversation never starves the others on this worker.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from config.schema import OrderingConfig
from state.conversations import FencedOut
from state.models import ClaimedMessage, ConversationRef
from state.queue import Lease
from workers.agents.base import TurnInput
from workers.agents.registry import build_agent
from workers.cancel import CancelToken, TurnCancelled
from workers.heartbeat import LeaseKeeper
from workers.metrics import DRAINS, FENCED_WRITES, QUEUE_LAG, TURN_SECONDS, TURNS
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


def worker_id() -> str:
    """Which process runs an attempt (host:pid); read per call, as prefork forks after import."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DrainOutcome(StrEnum):
    BUSY = "busy"  # another worker holds the lease and will drain
    DRAINED = "drained"  # nothing pending; lease released
    YIELDED = "yielded"  # budget spent; lease released and a wake-up re-sent
    LEASE_LOST = "lease_lost"  # taken over; this run wrote nothing after that


class TurnOutcome(StrEnum):
    REPLIED = "replied"
    FAILED = "failed"  # an error; the message stays pending and is retried
    DEAD = "dead"  # attempts exhausted; the conversation moves on
    LEASE_LOST = "lease_lost"


def drain_conversation(rt: Runtime, conv: ConversationRef, channel: str) -> DrainOutcome:
    ordering = rt.config.global_config().ordering
    lease = rt.queue.acquire(conv, ttl_ms=int(ordering.lease_ttl_s * 1000))
    if lease is None:
        DRAINS.labels(outcome=DrainOutcome.BUSY).inc()
        return DrainOutcome.BUSY
    cancel = CancelToken()
    try:
        with LeaseKeeper(lease, cancel):
            fence = rt.conversations.bump_fence(conv)
            outcome = _drain(rt, lease, fence, cancel, ordering)
    except BaseException:
        lease.release()  # let the next wake-up (or the sweep) take over at once
        raise
    if outcome is DrainOutcome.YIELDED:
        rt.wakeups.turn(conv, channel)
    DRAINS.labels(outcome=outcome).inc()
    return outcome


def _drain(
    rt: Runtime, lease: Lease, fence: int, cancel: CancelToken, ordering: OrderingConfig
) -> DrainOutcome:
    deadline = time.monotonic() + ordering.drain_max_s
    empty_claims = 0
    for _ in range(ordering.drain_max_turns):
        if cancel.cancelled:
            return DrainOutcome.LEASE_LOST
        claim = rt.conversations.claim_next(lease.conv, fence, worker_id())
        if claim.message is None:
            empty_claims += 1
            released = lease.release_if_drained(claim.done_seq)
            if released == 1:
                return DrainOutcome.DRAINED
            if released == -1:
                return DrainOutcome.LEASE_LOST
            if empty_claims >= 2:
                # Redis says more is pending but PostgreSQL, the truth, has none twice in
                # a row: its cursor is from another life (a restored database). Resync.
                log.error("queue.cursor_ahead", done_seq=claim.done_seq, last_seq=claim.last_seq)
                lease.release_resync(claim.done_seq, claim.last_seq)
                return DrainOutcome.DRAINED
            continue
        empty_claims = 0
        outcome = run_turn(rt, claim.message, lease, fence, cancel, ordering)
        if outcome is TurnOutcome.LEASE_LOST:
            return DrainOutcome.LEASE_LOST
        if time.monotonic() >= deadline:
            break
    lease.release()
    return DrainOutcome.YIELDED


def run_turn(
    rt: Runtime,
    message: ClaimedMessage,
    lease: Lease,
    fence: int,
    cancel: CancelToken,
    ordering: OrderingConfig,
) -> TurnOutcome:
    """Run one claimed message and persist its effects once, under the fence."""
    structlog.contextvars.bind_contextvars(
        tenant=message.tenant,
        conversation=message.conversation_id,
        seq=message.seq,
        message_id=message.platform_message_id,
        attempt=message.attempts,
    )
    try:
        outcome = _run_turn(rt, message, lease, fence, cancel, ordering)
    finally:
        structlog.contextvars.unbind_contextvars(
            "tenant", "conversation", "seq", "message_id", "attempt"
        )
    TURNS.labels(outcome=outcome).inc()
    return outcome


def _run_turn(
    rt: Runtime,
    message: ClaimedMessage,
    lease: Lease,
    fence: int,
    cancel: CancelToken,
    ordering: OrderingConfig,
) -> TurnOutcome:
    if message.attempts > ordering.max_attempts:
        return _give_up(rt, message, lease, fence, ordering.max_attempts)
    started = time.monotonic()
    QUEUE_LAG.observe(max(0.0, (datetime.now(UTC) - message.received_at).total_seconds()))
    try:
        reply = _ask_agent(rt, message, cancel)
    except TurnCancelled as exc:
        log.warning("turn.cancelled", reason=str(exc))
        return TurnOutcome.LEASE_LOST
    except Exception as exc:
        log.exception("turn.failed")
        rt.conversations.record_error(message, f"{type(exc).__name__}: {exc}")
        return TurnOutcome.FAILED
    try:
        with rt.conversations.turn(message, fence) as uow:
            uow.finish_inbound("done")
            uow.add_transcript("user", message.text)
            uow.add_transcript("assistant", reply)
            uow.add_reply(reply)
            uow.commit()
    except FencedOut:
        FENCED_WRITES.labels(store="postgres").inc()
        log.warning("turn.fenced", store="postgres", fence=fence)
        return TurnOutcome.LEASE_LOST
    rt.wakeups.delivery(lease.conv)
    TURN_SECONDS.observe(time.monotonic() - started)
    if not lease.commit(message.seq):
        # PostgreSQL took the turn under a fence that was still current; only the Redis
        # cursor write was refused, and the next holder rebuilds it from PostgreSQL.
        FENCED_WRITES.labels(store="redis").inc()
        log.warning("turn.fenced", store="redis", fence=fence)
        return TurnOutcome.LEASE_LOST
    log.info("turn.replied", duration_ms=round((time.monotonic() - started) * 1000, 1))
    return TurnOutcome.REPLIED


def _ask_agent(rt: Runtime, message: ClaimedMessage, cancel: CancelToken) -> str:
    tenant_config = rt.config.tenant(message.tenant)
    if tenant_config is None:
        raise LookupError(f"tenant {message.tenant!r} has no config file")
    turn = TurnInput(
        tenant=message.tenant,
        conversation_id=message.conversation_id,
        seq=message.seq,
        message_id=message.platform_message_id,
        text=message.text,
        tenant_config=tenant_config,
        global_config=rt.config.global_config(),
    )
    return build_agent(tenant_config).run(turn, cancel).text


def _give_up(
    rt: Runtime, message: ClaimedMessage, lease: Lease, fence: int, max_attempts: int
) -> TurnOutcome:
    reason = f"gave up after {max_attempts} attempts"
    try:
        rt.conversations.mark_dead(message, fence, reason)
    except FencedOut:
        FENCED_WRITES.labels(store="postgres").inc()
        return TurnOutcome.LEASE_LOST
    log.error("turn.dead", reason=reason)
    if not lease.commit(message.seq):
        FENCED_WRITES.labels(store="redis").inc()
        return TurnOutcome.LEASE_LOST
    return TurnOutcome.DEAD
