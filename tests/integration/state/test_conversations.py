"""Fencing and exactly-once writes of a turn, against a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from state.conversations import FencedOut
from state.ingress import IngressLimits, record_inbound
from state.models import ConversationRef, InboundMessage
from workers.runtime import Runtime


def accept(runtime: Runtime, tenant: str, body: str) -> ConversationRef:
    accepted = record_inbound(
        runtime.engine,
        InboundMessage(tenant, "generic", "c", "u", uuid.uuid4().hex, body),
        IngressLimits(100),
    )
    return ConversationRef(tenant, accepted.conversation_id)


def counts(runtime: Runtime, tenant: str) -> tuple[int, int]:
    with runtime.engine.connect() as conn:
        transcript = conn.execute(
            text("SELECT count(*) FROM transcript WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
        outbox = conn.execute(
            text("SELECT count(*) FROM outbox WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    return transcript, outbox


def commit_turn(runtime: Runtime, ref: ConversationRef, fence: int, reply: str) -> None:
    claim = runtime.conversations.claim_next(ref, 0, "test")
    assert claim.message is not None
    message = claim.message
    with runtime.conversations.turn([message], fence) as uow:
        uow.finish_inbound(message.seq, "done")
        uow.add_transcript(message.seq, "user", message.text)
        uow.add_transcript(message.seq, "assistant", reply)
        uow.add_reply(reply)
        uow.commit()


def test_claims_follow_seq_order_and_count_attempts(runtime: Runtime) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    ref = accept(runtime, tenant, "one")
    accept(runtime, tenant, "two")
    fence = runtime.conversations.bump_fence(ref)
    first = runtime.conversations.claim_next(ref, 0, "test")
    assert first.message is not None
    assert (first.message.seq, first.message.text, first.message.attempts) == (1, "one", 1)
    again = runtime.conversations.claim_next(ref, 0, "test")  # a re-run after a crash: same message
    assert again.message is not None
    assert (again.message.seq, again.message.attempts) == (1, 2)
    commit_turn(runtime, ref, fence, "re: one")
    second = runtime.conversations.claim_next(ref, 0, "test")
    assert second.message is not None
    assert second.message.seq == 2


def test_stale_fence_writes_nothing(runtime: Runtime) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    ref = accept(runtime, tenant, "one")
    stale = runtime.conversations.bump_fence(ref)
    current = runtime.conversations.bump_fence(ref)
    assert current > stale
    with pytest.raises(FencedOut):
        commit_turn(runtime, ref, stale, "from the paused worker")
    assert counts(runtime, tenant) == (0, 0)
    commit_turn(runtime, ref, current, "from the new holder")
    assert counts(runtime, tenant) == (2, 1)


def test_a_turn_applied_twice_is_written_once(runtime: Runtime) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    ref = accept(runtime, tenant, "one")
    fence = runtime.conversations.bump_fence(ref)
    claim = runtime.conversations.claim_next(ref, 0, "test")
    assert claim.message is not None
    commit_turn(runtime, ref, fence, "reply")
    rerun = runtime.conversations.turn([claim.message], fence)
    with pytest.raises(FencedOut):
        rerun.__enter__()
    assert counts(runtime, tenant) == (2, 1)


def test_uncommitted_unit_of_work_rolls_back(runtime: Runtime) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    ref = accept(runtime, tenant, "one")
    fence = runtime.conversations.bump_fence(ref)
    claim = runtime.conversations.claim_next(ref, 0, "test")
    assert claim.message is not None
    with runtime.conversations.turn([claim.message], fence) as uow:
        uow.add_reply("never committed")
    assert counts(runtime, tenant) == (0, 0)
    assert runtime.conversations.claim_next(ref, 0, "test").done_seq == 0
