"""Durable record of the message path: conversations, inbound, transcript, outbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("done_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("attended_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant", "channel", "external_id", name="uq_conversations_external"),
        sa.CheckConstraint("done_seq <= last_seq", name="ck_conversations_done_le_last"),
    )
    op.create_index(
        "ix_conversations_pending",
        "conversations",
        ["attended_at"],
        postgresql_where=sa.text("last_seq > done_seq"),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column(
            "conversation_id", sa.BigInteger, sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("platform_message_id", sa.Text, nullable=False),
        sa.Column("user_external_id", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("started_at", TS),
        sa.Column("worker", sa.Text),
        sa.Column("fence", sa.BigInteger),
        sa.Column("tenant_version", sa.Integer),
        sa.Column("global_version", sa.Integer),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint(
            "tenant", "channel", "platform_message_id", name="uq_inbound_platform_message"
        ),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_inbound_conversation_seq"),
        sa.CheckConstraint("status IN ('pending', 'done', 'dead', 'interrupted', 'rejected', 'coalesced')", name="ck_inbound_status"),
    )
    op.create_index(
        "ix_inbound_pending",
        "inbound_messages",
        ["tenant"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "transcript",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column(
            "conversation_id", sa.BigInteger, sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("conversation_id", "seq", "role", name="uq_transcript_turn_role"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="ck_transcript_role"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column(
            "conversation_id", sa.BigInteger, sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("in_reply_to", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False, server_default="reply"),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", TS),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_outbox_conversation_seq"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'dead')", name="ck_outbox_status"),
        sa.CheckConstraint("kind IN ('reply', 'notice')", name="ck_outbox_kind"),
    )
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    for table in ("outbox", "transcript", "inbound_messages", "conversations"):
        op.drop_table(table)
