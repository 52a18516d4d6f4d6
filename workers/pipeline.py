"""Draining one conversation: the lease holder runs its pending turns in seq order.

A drain run takes the lease (or returns at once: the holder drains), takes a fencing
token, then claims and runs messages until the queue is empty, the lease is lost, or its
budget (turns, seconds) is spent; then it hands the conversation back to the broker so a
long conversation never starves the others on this worker.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from config.effective import EffectiveConfig
from config.schema import OrderingConfig
from state.conversations import FencedOut
from state.models import ClaimedMessage, ConfigVersions, ConversationRef
from state.queue import Lease
from workers.agents.base import TurnInput
from workers.agents.registry import build_agent
from workers.cancel import CancelToken, TurnCancelled
from workers.heartbeat import INTERRUPTED, LeaseKeeper
from workers.metrics import (
    DRAINS,
    FENCED_WRITES,
    QUEUE_LAG,
    TURN_RERUNS,
    TURN_SECONDS,
    TURN_STAGE_SECONDS,
    TURNS,
)
from workers.policy import concurrency_policy
from workers.runtime import Runtime
from workers.typing import TypingIndicator

log = structlog.get_logger(__name__)

# Under `coalesce`, at most this many queued messages become one turn.
COALESCE_MAX = 20


def worker_id() -> str:
    """Which process runs an attempt (host:pid); read per call, as prefork forks after import."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DrainOutcome(StrEnum):
    BUSY = "busy"  # another worker holds the lease and will drain
    IDLE = "idle"  # nothing pending: a duplicate wake-up
    DRAINED = "drained"  # nothing pending; lease released
    YIELDED = "yielded"  # budget spent; lease released and a wake-up re-sent
    LEASE_LOST = "lease_lost"  # taken over; this run wrote nothing after that
    NO_CONFIG = "no_config"  # the tenant file is gone; messages wait for it


class TurnOutcome(StrEnum):
    REPLIED = "replied"
    INTERRUPTED = "interrupted"  # a newer message cancelled it; no reply
    REJECTED = "rejected"  # refused at ingress while busy; skipped
    FAILED = "failed"  # an error; the message stays pending and is retried
    DEAD = "dead"  # attempts exhausted; the conversation moves on
    LEASE_LOST = "lease_lost"


def drain_conversation(rt: Runtime, conv: ConversationRef, channel: str) -> DrainOutcome:
    ordering = rt.config.global_config().ordering
    tenant = rt.config.effective(conv.tenant)
    if tenant is None:
        # Messages stay pending; the sweep wakes the conversation again, and it resumes
        # once the tenant file is back.
        log.error("drain.no_tenant_config", tenant=conv.tenant)
        return DrainOutcome.NO_CONFIG
    lease = rt.queue.acquire(conv, ttl_ms=int(ordering.lease_ttl_s * 1000))
    if not isinstance(lease, Lease):
        outcome = DrainOutcome.BUSY if lease is None else DrainOutcome.IDLE
        DRAINS.labels(outcome=outcome).inc()
        return outcome
    policy = concurrency_policy(tenant.channels, channel)
    try:
        with LeaseKeeper(lease, rt.queue, watch_interrupts=policy == "interrupt") as keeper:
            fence = rt.conversations.bump_fence(conv)
            outcome = _drain(rt, _Holder(lease, keeper, fence), channel, ordering)
    except BaseException:
        lease.release()  # let the next wake-up (or the sweep) take over at once
        raise
    if outcome is DrainOutcome.YIELDED:
        rt.wakeups.turn(conv, channel)
    DRAINS.labels(outcome=outcome).inc()
    return outcome


@dataclass(frozen=True)
class _Holder:
    """What a drain run holds: the lease, its keeper and the fencing token."""

    lease: Lease
    keeper: LeaseKeeper
    fence: int


def _drain(rt: Runtime, holder: _Holder, channel: str, ordering: OrderingConfig) -> DrainOutcome:
    deadline = time.monotonic() + ordering.drain_max_s
    empty_claims = 0
    for _ in range(ordering.drain_max_turns):
        if holder.keeper.lost.is_set():
            return DrainOutcome.LEASE_LOST
        # Each turn pins the config current at its start (hot reload within a drain run).
        tenant = rt.config.effective(holder.lease.conv.tenant)
        if tenant is None:
            holder.lease.release()
            return DrainOutcome.NO_CONFIG
        policy = concurrency_policy(tenant.channels, channel)
        limit = COALESCE_MAX if policy == "coalesce" else 1
        claimed_at = time.monotonic()
        claim = rt.conversations.claim_next(
            holder.lease.conv, holder.fence, worker_id(), limit=limit
        )
        TURN_STAGE_SECONDS.labels(stage="claim").observe(time.monotonic() - claimed_at)
        if not claim.messages:
            empty_claims += 1
            released = _try_release(holder.lease, claim.done_seq, claim.last_seq, empty_claims)
            if released is not None:
                return released
            continue
        empty_claims = 0
        batch = _batch(claim.messages)
        finished = _after_turn(holder, run_turn(rt, holder, batch, tenant, ordering), batch)
        if finished is not None:
            return finished
        if time.monotonic() >= deadline:
            break
    holder.lease.release()
    return DrainOutcome.YIELDED


def _after_turn(
    holder: _Holder, outcome: TurnOutcome, batch: list[ClaimedMessage]
) -> DrainOutcome | None:
    """How the drain run goes on after a turn; None: claim the next message."""
    if outcome is TurnOutcome.LEASE_LOST:
        return DrainOutcome.LEASE_LOST
    if outcome is TurnOutcome.FAILED:
        return None  # the same message is claimed again (its attempts count up)
    # Nothing newer in the Redis cursor: let go now, without another claim. A message
    # committed but not yet published there finds no lease and sends its own wake-up.
    return _released(holder.lease.release_if_drained(batch[-1].seq))


def _released(code: int) -> DrainOutcome | None:
    """The drain's end for a release_if_drained answer; None: more is pending."""
    return {1: DrainOutcome.DRAINED, -1: DrainOutcome.LEASE_LOST}.get(code)


def _try_release(
    lease: Lease, done_seq: int, last_seq: int, empty_claims: int
) -> DrainOutcome | None:
    """Let go if nothing is pending; None means more arrived: keep draining."""
    released = _released(lease.release_if_drained(done_seq))
    if released is not None:
        return released
    if empty_claims >= 2:
        # Redis says more is pending but PostgreSQL, the truth, has none twice in a row:
        # its cursor is from another life (a restored database). Resync and let go.
        log.error("queue.cursor_ahead", done_seq=done_seq, last_seq=last_seq)
        lease.release_resync(done_seq, last_seq)
        return DrainOutcome.DRAINED
    return None


def _batch(messages: list[ClaimedMessage]) -> list[ClaimedMessage]:
    """A rejected head is skipped alone; otherwise the leading run of pending messages."""
    if messages[0].status == "rejected":
        return messages[:1]
    batch: list[ClaimedMessage] = []
    for message in messages:
        if message.status != "pending":
            break
        batch.append(message)
    return batch


def run_turn(
    rt: Runtime,
    holder: _Holder,
    batch: list[ClaimedMessage],
    tenant: EffectiveConfig,
    ordering: OrderingConfig,
) -> TurnOutcome:
    """Run one turn over `batch` and persist its effects once, under the fence."""
    last = batch[-1]
    structlog.contextvars.bind_contextvars(
        tenant=last.tenant,
        conversation=last.conversation_id,
        seq=last.seq,
        message_id=last.platform_message_id,
        attempt=last.attempts,
    )
    try:
        outcome = _run_turn(rt, holder, batch, tenant, ordering)
    finally:
        structlog.contextvars.unbind_contextvars(
            "tenant", "conversation", "seq", "message_id", "attempt"
        )
    TURNS.labels(outcome=outcome).inc()
    return outcome


def _run_turn(
    rt: Runtime,
    holder: _Holder,
    batch: list[ClaimedMessage],
    tenant: EffectiveConfig,
    ordering: OrderingConfig,
) -> TurnOutcome:
    head = batch[0]
    if head.status == "rejected":
        return _finish_without_turn(rt, holder, head, "rejected", None, TurnOutcome.REJECTED)
    if head.attempts > ordering.max_attempts:
        reason = f"gave up after {ordering.max_attempts} attempts"
        log.error("turn.dead", reason=reason)
        return _finish_without_turn(rt, holder, head, "dead", reason, TurnOutcome.DEAD)
    started = time.monotonic()
    now = datetime.now(UTC)
    for message in batch:
        QUEUE_LAG.observe(max(0.0, (now - message.received_at).total_seconds()))
    if head.attempts > 1:
        TURN_RERUNS.inc()
    cancel = holder.keeper.begin_turn(batch[-1].seq)
    try:
        with TypingIndicator(rt.http, tenant.channels.generic, batch[-1]):
            reply = _ask_agent(batch, tenant, cancel)
    except TurnCancelled as exc:
        if cancel.reason == INTERRUPTED:
            return _persist_interrupted(rt, holder, batch, _versions(tenant))
        log.warning("turn.cancelled", reason=str(exc))
        return TurnOutcome.LEASE_LOST
    except Exception as exc:
        log.exception("turn.failed")
        rt.conversations.record_error(head, f"{type(exc).__name__}: {exc}")
        return TurnOutcome.FAILED
    finally:
        holder.keeper.end_turn()
    persisting = time.monotonic()
    TURN_STAGE_SECONDS.labels(stage="agent").observe(persisting - started)
    outcome = _persist_reply(rt, holder, batch, reply, _versions(tenant))
    TURN_STAGE_SECONDS.labels(stage="persist").observe(time.monotonic() - persisting)
    if outcome is TurnOutcome.REPLIED:
        TURN_SECONDS.observe(time.monotonic() - started)
        log.info("turn.replied", messages=len(batch), duration_ms=_ms_since(started))
    return outcome


def _ask_agent(batch: list[ClaimedMessage], tenant: EffectiveConfig, cancel: CancelToken) -> str:
    last = batch[-1]
    turn = TurnInput(
        tenant=last.tenant,
        conversation_id=last.conversation_id,
        seq=last.seq,
        message_id=last.platform_message_id,
        text="\n".join(message.text for message in batch),
        config=tenant,
    )
    return build_agent(tenant).run(turn, cancel).text


def _versions(config: EffectiveConfig) -> ConfigVersions:
    return ConfigVersions(config.tenant_version, config.global_version)


def _persist_reply(
    rt: Runtime,
    holder: _Holder,
    batch: list[ClaimedMessage],
    reply: str,
    versions: ConfigVersions,
) -> TurnOutcome:
    last = batch[-1]
    try:
        with rt.conversations.turn(batch, holder.fence, versions) as uow:
            for message in batch:
                uow.finish_inbound(message.seq, "done" if message is last else "coalesced")
                uow.add_transcript(message.seq, "user", message.text)
            uow.add_transcript(last.seq, "assistant", reply)
            uow.add_reply(reply)
            uow.commit()
    except FencedOut:
        return _fenced("postgres", holder.fence)
    result = holder.lease.commit(last.seq)
    if not result.delivery_running:
        rt.wakeups.delivery(holder.lease.conv)
    if not result.committed:
        return _fenced("redis", holder.fence)
    return TurnOutcome.REPLIED


def _persist_interrupted(
    rt: Runtime, holder: _Holder, batch: list[ClaimedMessage], versions: ConfigVersions
) -> TurnOutcome:
    """History keeps what the user said, marked interrupted; no reply is stored or sent."""
    try:
        with rt.conversations.turn(batch, holder.fence, versions) as uow:
            for message in batch:
                uow.finish_inbound(message.seq, "interrupted")
                uow.add_transcript(message.seq, "user", message.text)
            uow.commit()
    except FencedOut:
        return _fenced("postgres", holder.fence)
    log.info("turn.interrupted")
    return _commit_cursor(holder, batch[-1].seq, TurnOutcome.INTERRUPTED)


def _finish_without_turn(
    rt: Runtime,
    holder: _Holder,
    message: ClaimedMessage,
    status: str,
    reason: str | None,
    outcome: TurnOutcome,
) -> TurnOutcome:
    try:
        rt.conversations.finish_without_turn(message, holder.fence, status, reason)
    except FencedOut:
        return _fenced("postgres", holder.fence)
    return _commit_cursor(holder, message.seq, outcome)


def _commit_cursor(holder: _Holder, seq: int, outcome: TurnOutcome) -> TurnOutcome:
    if holder.lease.commit(seq).committed:
        return outcome
    # PostgreSQL took the turn under a fence that was still current; only the Redis
    # cursor write was refused, and the next holder rebuilds it from PostgreSQL.
    return _fenced("redis", holder.fence)


def _fenced(store: str, fence: int) -> TurnOutcome:
    FENCED_WRITES.labels(store=store).inc()
    log.warning("turn.fenced", store=store, fence=fence)
    return TurnOutcome.LEASE_LOST


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
