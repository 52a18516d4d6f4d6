"""PostgreSQL side of the per-conversation queue: fencing, claiming, committing.

Every write that advances a conversation is conditioned on the lease's fencing token
(`fence`) and on `done_seq = seq - 1`, so a worker whose lease was taken over cannot
write, and a turn re-run after a crash is applied once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, text

from state.db import single_statements
from state.models import ClaimedMessage, ConfigVersions, ConversationRef


class FencedOut(Exception):
    """The fencing token is stale (or the turn was already applied): nothing was written."""


_BUMP_FENCE = text(
    """
    UPDATE conversations SET fence = fence + 1, attended_at = now()
    WHERE id = :cid AND tenant = :tenant
    RETURNING fence
    """
)

# One round trip: claim the messages from done_seq + 1 (up to :limit of them) and count
# this attempt, committed before the agent runs (Redis gives no delivery count; this is
# the poison bound). A message rejected at ingress is returned too, to be skipped.
_CLAIM_NEXT = text(
    """
    WITH c AS (
        SELECT done_seq, last_seq, external_id FROM conversations
        WHERE id = :cid AND tenant = :tenant
    ),
    m AS (
        UPDATE inbound_messages
        SET attempts = attempts + CASE WHEN status = 'pending' THEN 1 ELSE 0 END,
            started_at = clock_timestamp(), worker = :worker, fence = :fence
        WHERE conversation_id = :cid
          AND seq BETWEEN (SELECT done_seq + 1 FROM c) AND (SELECT done_seq + :limit FROM c)
          AND status IN ('pending', 'rejected')
        RETURNING id, tenant, channel, conversation_id, seq, platform_message_id,
                  user_external_id, text, attempts, received_at, status
    )
    SELECT c.done_seq, c.last_seq AS conversation_last_seq, c.external_id, m.*
    FROM c LEFT JOIN m ON true ORDER BY m.seq
    """
)

_ADVANCE = text(
    """
    UPDATE conversations SET done_seq = :last_seq, attended_at = now()
    WHERE id = :cid AND fence = :fence AND done_seq = :first_seq - 1
    """
)

_FINISH_INBOUND = text(
    """
    UPDATE inbound_messages
    SET status = :status, finished_at = clock_timestamp(),
        tenant_version = :tenant_version, global_version = :global_version,
        last_error = CASE
            WHEN CAST(:error AS text) IS NULL THEN NULL
            WHEN last_error IS NULL THEN CAST(:error AS text)
            ELSE CAST(:error AS text) || '; last error: ' || last_error
        END
    WHERE conversation_id = :cid AND seq = :seq
    """
)

_RECORD_ERROR = text(
    "UPDATE inbound_messages SET last_error = :error WHERE conversation_id = :cid AND seq = :seq"
)

_INSERT_TRANSCRIPT = text(
    """
    INSERT INTO transcript (tenant, conversation_id, seq, role, text)
    VALUES (:tenant, :cid, :seq, :role, :text)
    ON CONFLICT ON CONSTRAINT uq_transcript_turn_role DO NOTHING
    """
)

_INSERT_OUTBOX = text(
    """
    INSERT INTO outbox (tenant, channel, conversation_id, seq, in_reply_to, kind, text)
    VALUES (:tenant, :channel, :cid, :seq, :in_reply_to, :kind, :text)
    ON CONFLICT ON CONSTRAINT uq_outbox_conversation_seq DO NOTHING
    """
)

# Reject only a message no worker has claimed yet: if the running turn ended meanwhile
# and the message already started, it simply runs.
_REJECT_UNCLAIMED = text(
    """
    UPDATE inbound_messages SET status = 'rejected', finished_at = clock_timestamp()
    WHERE conversation_id = :cid AND seq = :seq AND status = 'pending' AND attempts = 0
    RETURNING tenant, channel, platform_message_id
    """
)

_STALE_PENDING = text(
    """
    UPDATE conversations SET attended_at = now()
    WHERE id IN (
        SELECT id FROM conversations
        WHERE last_seq > done_seq AND attended_at < now() - make_interval(secs => :stale_s)
        ORDER BY attended_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING tenant, id, channel, last_seq
    """
)


@dataclass(frozen=True)
class Claim:
    """Result of a claim: the messages (none when drained) and the cursor read with them."""

    messages: list[ClaimedMessage]
    done_seq: int
    last_seq: int

    @property
    def message(self) -> ClaimedMessage | None:
        return self.messages[0] if self.messages else None


@dataclass(frozen=True)
class StaleConversation:
    ref: ConversationRef
    channel: str
    last_seq: int


class ConversationStore:
    """Queue operations on one PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    def bump_fence(self, conv: ConversationRef) -> int:
        """Take the next fencing token; monotonic because PostgreSQL keeps it."""
        with self._single.connect() as conn:
            token = conn.execute(
                _BUMP_FENCE, {"cid": conv.conversation_id, "tenant": conv.tenant}
            ).scalar_one()
        return int(token)

    def claim_next(
        self, conv: ConversationRef, fence: int, worker: str, *, limit: int = 1
    ) -> Claim:
        """Claim up to `limit` messages from done_seq + 1, recording who claims them under
        which fence; a gap (a message not claimable) ends the batch."""
        params = {"cid": conv.conversation_id, "tenant": conv.tenant, "fence": fence}
        with self._single.connect() as conn:
            rows = conn.execute(_CLAIM_NEXT, {**params, "worker": worker, "limit": limit}).all()
        first = rows[0]
        messages = [_claimed(row) for row in rows if row.id is not None]
        contiguous = [m for i, m in enumerate(messages) if m.seq == first.done_seq + 1 + i]
        return Claim(contiguous, int(first.done_seq), int(first.conversation_last_seq))

    def record_error(self, message: ClaimedMessage, error: str) -> None:
        """Keep why an attempt failed; the message stays pending for the next attempt."""
        with self._single.connect() as conn:
            conn.execute(
                _RECORD_ERROR,
                {"cid": message.conversation_id, "seq": message.seq, "error": error[:2000]},
            )

    def finish_without_turn(
        self, message: ClaimedMessage, fence: int, status: str, reason: str | None
    ) -> None:
        """Move past `message` without running it (dead, or rejected at ingress)."""
        with self.turn([message], fence) as uow:
            uow.finish_inbound(message.seq, status, reason)
            uow.commit()

    def reject_if_unclaimed(self, conv: ConversationRef, seq: int, notice: str) -> bool:
        """Mark a message rejected (recorded, never run) and queue its "busy" notice,
        unless a worker already claimed it."""
        with self._engine.begin() as conn:
            row = conn.execute(_REJECT_UNCLAIMED, {"cid": conv.conversation_id, "seq": seq}).first()
            if row is None:
                return False
            conn.execute(
                _INSERT_OUTBOX,
                {
                    "tenant": row.tenant,
                    "channel": row.channel,
                    "cid": conv.conversation_id,
                    "seq": seq,
                    "in_reply_to": row.platform_message_id,
                    "kind": "notice",
                    "text": notice,
                },
            )
        return True

    @contextmanager
    def turn(
        self,
        messages: Sequence[ClaimedMessage],
        fence: int,
        versions: ConfigVersions | None = None,
    ) -> Iterator[TurnUnitOfWork]:
        """One turn's PostgreSQL transaction over consecutive messages (one, or several
        coalesced); rolled back unless commit() is called."""
        with self._engine.connect() as conn:
            uow = TurnUnitOfWork(conn, messages, fence, versions)
            try:
                uow.advance()
                yield uow
            finally:
                if not uow.committed:
                    conn.rollback()

    def stale_pending(self, stale_s: float, limit: int) -> list[StaleConversation]:
        """Conversations with pending messages nobody attended to for `stale_s`.

        Marks them attended, so a backlogged broker gets at most one extra wake-up per
        conversation per `stale_s`, not one per sweep.
        """
        with self._single.connect() as conn:
            rows = conn.execute(_STALE_PENDING, {"stale_s": stale_s, "limit": limit}).all()
        return [
            StaleConversation(ConversationRef(r.tenant, r.id), r.channel, int(r.last_seq))
            for r in rows
        ]


class TurnUnitOfWork:
    """Writes of one turn, keyed by (conversation, seq) and fenced by the lease token."""

    def __init__(
        self,
        conn: Connection,
        messages: Sequence[ClaimedMessage],
        fence: int,
        versions: ConfigVersions | None = None,
    ) -> None:
        if not messages:
            raise ValueError("a turn needs at least one message")
        self._conn = conn
        self._first = messages[0]
        self._last = messages[-1]
        self._fence = fence
        self._versions = versions
        self.committed = False

    def _keys(self, seq: int) -> dict[str, object]:
        return {"tenant": self._first.tenant, "cid": self._first.conversation_id, "seq": seq}

    def advance(self) -> None:
        result = self._conn.execute(
            _ADVANCE,
            {
                "cid": self._first.conversation_id,
                "fence": self._fence,
                "first_seq": self._first.seq,
                "last_seq": self._last.seq,
            },
        )
        if result.rowcount != 1:
            raise FencedOut(
                f"conversation {self._first.conversation_id} seq {self._first.seq}: "
                f"fence {self._fence} is stale or the turn was already applied"
            )

    def finish_inbound(self, seq: int, status: str, error: str | None = None) -> None:
        versions = self._versions
        self._conn.execute(
            _FINISH_INBOUND,
            {
                **self._keys(seq),
                "status": status,
                "error": error,
                "tenant_version": versions.tenant if versions else None,
                "global_version": versions.global_ if versions else None,
            },
        )

    def add_transcript(self, seq: int, role: str, body: str) -> None:
        self._conn.execute(_INSERT_TRANSCRIPT, {**self._keys(seq), "role": role, "text": body})

    def add_reply(self, body: str) -> None:
        """The turn's reply, keyed by (and answering) its last message."""
        last = self._last
        self._conn.execute(
            _INSERT_OUTBOX,
            {
                **self._keys(last.seq),
                "channel": last.channel,
                "in_reply_to": last.platform_message_id,
                "kind": "reply",
                "text": body,
            },
        )

    def commit(self) -> None:
        self._conn.commit()
        self.committed = True


def _claimed(row: Row[Any]) -> ClaimedMessage:
    return ClaimedMessage(
        id=row.id,
        tenant=row.tenant,
        channel=row.channel,
        conversation_id=row.conversation_id,
        conversation_external_id=row.external_id,
        seq=row.seq,
        platform_message_id=row.platform_message_id,
        user_external_id=row.user_external_id,
        text=row.text,
        attempts=row.attempts,
        received_at=row.received_at,
        status=row.status,
    )
