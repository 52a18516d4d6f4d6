"""PostgreSQL schema of the durable record (SQLAlchemy Core, no I/O).

PostgreSQL is the truth for ordering: a conversation's `last_seq` / `done_seq` bound
its pending messages, `fence` is the monotonic fencing token of its lease (monotonic
even when Redis loses everything), and every row carries its tenant.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

metadata = MetaData()


conversations = Table(
    "conversations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("external_id", Text, nullable=False),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("done_seq", BigInteger, nullable=False, server_default="0"),
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Last time a worker or the sweep attended to this conversation's queue; the sweep
    # wakes conversations with pending messages that nobody attended to for a lease TTL.
    Column("attended_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant", "channel", "external_id", name="uq_conversations_external"),
    CheckConstraint("done_seq <= last_seq", name="ck_conversations_done_le_last"),
    Index(
        "ix_conversations_pending",
        "attended_at",
        postgresql_where=text("last_seq > done_seq"),
    ),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("platform_message_id", Text, nullable=False),
    Column("user_external_id", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    # Start of the latest attempt: queue lag is started_at - received_at, and two turns
    # of one conversation never overlap: each starts after its predecessor finished.
    Column("started_at", DateTime(timezone=True)),
    # Which process ran the latest attempt, under which fencing token: the first two
    # questions of any "why did this turn run twice / not at all" investigation.
    Column("worker", Text),
    Column("fence", BigInteger),
    # The config versions the turn pinned, so "which prompt answered this?" has an answer.
    Column("tenant_version", Integer),
    Column("global_version", Integer),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint(
        "tenant", "channel", "platform_message_id", name="uq_inbound_platform_message"
    ),
    UniqueConstraint("conversation_id", "seq", name="uq_inbound_conversation_seq"),
    CheckConstraint(
        "status IN ('pending', 'done', 'dead', 'interrupted', 'rejected', 'coalesced')",
        name="ck_inbound_status",
    ),
    Index("ix_inbound_pending", "tenant", postgresql_where=text("status = 'pending'")),
)

transcript = Table(
    "transcript",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("role", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("conversation_id", "seq", "role", name="uq_transcript_turn_role"),
    CheckConstraint("role IN ('user', 'assistant')", name="ck_transcript_role"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("in_reply_to", Text, nullable=False),
    # `reply`: the turn's answer, delivered in seq order. `notice`: an immediate answer
    # about the conversation (a rejected message's "still working"), not held back.
    Column("kind", Text, nullable=False, server_default="reply"),
    Column("text", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("conversation_id", "seq", name="uq_outbox_conversation_seq"),
    CheckConstraint("status IN ('pending', 'sent', 'dead')", name="ck_outbox_status"),
    CheckConstraint("kind IN ('reply', 'notice')", name="ck_outbox_kind"),
    Index(
        "ix_outbox_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
)
