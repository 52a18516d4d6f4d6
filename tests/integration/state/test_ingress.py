from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from state.ingress import InboxFull, IngressLimits, record_inbound
from state.models import InboundMessage
from workers.runtime import Runtime

LIMITS = IngressLimits(max_inbox_per_conversation=1000)


def message(tenant: str, conversation: str = "c", message_id: str | None = None) -> InboundMessage:
    return InboundMessage(
        tenant=tenant,
        channel="generic",
        conversation_external_id=conversation,
        user_external_id="u",
        platform_message_id=message_id or uuid.uuid4().hex,
        text="hi",
    )


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_seq_counts_up_per_conversation(runtime: Runtime) -> None:
    tenant = new_tenant()
    seqs = [record_inbound(runtime.engine, message(tenant, "a"), LIMITS).seq for _ in range(3)]
    other = record_inbound(runtime.engine, message(tenant, "b"), LIMITS)
    assert seqs == [1, 2, 3]
    assert other.seq == 1
    assert (
        other.conversation_id
        != record_inbound(runtime.engine, message(tenant, "a"), LIMITS).conversation_id
    )


def test_a_platform_retry_is_a_duplicate_with_the_original_seq(runtime: Runtime) -> None:
    tenant = new_tenant()
    first = record_inbound(runtime.engine, message(tenant, message_id="m-1"), LIMITS)
    record_inbound(runtime.engine, message(tenant), LIMITS)
    again = record_inbound(runtime.engine, message(tenant, message_id="m-1"), LIMITS)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.seq == first.seq == 1
    with runtime.engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM inbound_messages WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    assert count == 2


def test_concurrent_messages_get_distinct_gapless_seqs(runtime: Runtime) -> None:
    tenant = new_tenant()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda _: record_inbound(runtime.engine, message(tenant), LIMITS), range(40))
        )
    assert sorted(r.seq for r in results) == list(range(1, 41))


def test_concurrent_retries_of_one_message_record_it_once(runtime: Runtime) -> None:
    tenant = new_tenant()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda _: record_inbound(
                    runtime.engine, message(tenant, message_id="same"), LIMITS
                ),
                range(16),
            )
        )
    assert sum(not r.duplicate for r in results) == 1
    assert {r.seq for r in results} == {1}


def test_full_inbox_refuses_and_records_nothing(runtime: Runtime) -> None:
    tenant = new_tenant()
    small = IngressLimits(max_inbox_per_conversation=2)
    record_inbound(runtime.engine, message(tenant), small)
    record_inbound(runtime.engine, message(tenant), small)
    with pytest.raises(InboxFull):
        record_inbound(runtime.engine, message(tenant), small)
    with runtime.engine.connect() as conn:
        last_seq = conn.execute(
            text("SELECT last_seq FROM conversations WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    assert last_seq == 2
