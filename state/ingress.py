"""Ingress: record an inbound message durably and assign its per-conversation seq.

One PostgreSQL transaction bumps the conversation's `last_seq` and inserts the message,
unique on (tenant, channel, platform message id). Its commit is what "accepted" means:
the webhook answers 202 only after it, so an accepted message survives a Redis that
loses everything. The row lock on the conversation serialises concurrent messages of
one conversation, so seq order is commit order.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

from state.db import single_statements
from state.models import Accepted, InboundMessage


class InboxFull(Exception):
    """Backpressure: a bound was reached; nothing was recorded, the sender retries."""

    def __init__(self, scope: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"{scope} inbox is full ({limit} pending messages)")
        self.scope = scope
        self.limit = limit
        self.retry_after_s = retry_after_s


_FIND_DUPLICATE = text(
    """
    SELECT conversation_id, seq FROM inbound_messages
    WHERE tenant = :tenant AND channel = :channel AND platform_message_id = :message_id
    """
)

# A new conversation starts at seq 1; an existing one takes the next seq under its row lock.
_NEXT_SEQ = text(
    """
    INSERT INTO conversations (tenant, channel, external_id, last_seq)
    VALUES (:tenant, :channel, :conversation, 1)
    ON CONFLICT ON CONSTRAINT uq_conversations_external
    DO UPDATE SET last_seq = conversations.last_seq + 1
    RETURNING id, last_seq, done_seq
    """
)

_INSERT_MESSAGE = text(
    """
    INSERT INTO inbound_messages
        (tenant, channel, conversation_id, seq, platform_message_id, user_external_id, text)
    VALUES (:tenant, :channel, :conversation_id, :seq, :message_id, :user, :text)
    ON CONFLICT ON CONSTRAINT uq_inbound_platform_message DO NOTHING
    RETURNING id
    """
)


@dataclass(frozen=True)
class IngressLimits:
    max_inbox_per_conversation: int
    retry_after_s: int = 2


def record_inbound(engine: Engine, message: InboundMessage, limits: IngressLimits) -> Accepted:
    """Record `message` once; a platform retry of the same message id is a duplicate.

    Raises InboxFull (and records nothing) when the conversation already has
    `max_inbox_per_conversation` messages pending.
    """
    params = {
        "tenant": message.tenant,
        "channel": message.channel,
        "message_id": message.platform_message_id,
    }
    with engine.connect() as conn:
        existing = conn.execute(_FIND_DUPLICATE, params).first()
        if existing is not None:
            conn.rollback()
            return Accepted(existing.conversation_id, existing.seq, duplicate=True)
        row = conn.execute(
            _NEXT_SEQ, {**params, "conversation": message.conversation_external_id}
        ).one()
        if row.last_seq - row.done_seq > limits.max_inbox_per_conversation:
            conn.rollback()
            raise InboxFull("conversation", limits.max_inbox_per_conversation, limits.retry_after_s)
        inserted = conn.execute(
            _INSERT_MESSAGE,
            {
                **params,
                "conversation_id": row.id,
                "seq": row.last_seq,
                "user": message.user_external_id,
                "text": message.text,
            },
        ).first()
        if inserted is None:
            # The same platform message won a race with us in another transaction.
            conn.rollback()
            again = conn.execute(_FIND_DUPLICATE, params).one()
            conn.rollback()
            return Accepted(again.conversation_id, again.seq, duplicate=True)
        conn.commit()
    return Accepted(row.id, row.last_seq, duplicate=False)


def count_pending(engine: Engine) -> int:
    """Messages accepted and not yet done, across all tenants (the global bound)."""
    with single_statements(engine).connect() as conn:
        value = conn.execute(
            text("SELECT count(*) FROM inbound_messages WHERE status = 'pending'")
        ).scalar_one()
    return int(value)
