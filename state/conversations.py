"""PostgreSQL side of the per-conversation queue: fencing, claiming, committing.

Every write that advances a conversation is conditioned on the lease's fencing token
(`fence`) and on `done_seq = seq - 1`, so a worker whose lease was taken over cannot
write, and a turn re-run after a crash is applied once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from state.models import ClaimedMessage, ConversationRef


class FencedOut(Exception):
    """The fencing token is stale (or the turn was already applied): nothing was written."""


_BUMP_FENCE = text(
    """
    UPDATE conversations SET fence = fence + 1, attended_at = now()
    WHERE id = :cid AND tenant = :tenant
    RETURNING fence
    """
)

# One round trip: find the message at done_seq + 1 and count this attempt, committed
# before the agent runs (Redis gives no delivery count; this is the poison bound).
_CLAIM_NEXT = text(
    """
    WITH c AS (SELECT done_seq, last_seq FROM conversations WHERE id = :cid AND tenant = :tenant),
    m AS (
        UPDATE inbound_messages
        SET attempts = attempts + 1, started_at = clock_timestamp(), worker = :worker,
            fence = :fence
        WHERE conversation_id = :cid AND seq = (SELECT done_seq + 1 FROM c)
          AND status = 'pending'
        RETURNING id, tenant, channel, conversation_id, seq, platform_message_id,
                  user_external_id, text, attempts, received_at
    )
    SELECT c.done_seq, c.last_seq AS conversation_last_seq, m.* FROM c LEFT JOIN m ON true
    """
)

_ADVANCE = text(
    """
    UPDATE conversations SET done_seq = :seq, attended_at = now()
    WHERE id = :cid AND fence = :fence AND done_seq = :seq - 1
    """
)

_FINISH_INBOUND = text(
    """
    UPDATE inbound_messages SET status = :status, finished_at = clock_timestamp(),
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
    INSERT INTO outbox (tenant, channel, conversation_id, seq, in_reply_to, text)
    VALUES (:tenant, :channel, :cid, :seq, :in_reply_to, :text)
    ON CONFLICT ON CONSTRAINT uq_outbox_conversation_seq DO NOTHING
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
    """Result of a claim: the message (None when drained) and the cursor it was read at."""

    message: ClaimedMessage | None
    done_seq: int
    last_seq: int


@dataclass(frozen=True)
class StaleConversation:
    ref: ConversationRef
    channel: str
    last_seq: int


class ConversationStore:
    """Queue operations on one PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def bump_fence(self, conv: ConversationRef) -> int:
        """Take the next fencing token; monotonic because PostgreSQL keeps it."""
        with self._engine.begin() as conn:
            token = conn.execute(
                _BUMP_FENCE, {"cid": conv.conversation_id, "tenant": conv.tenant}
            ).scalar_one()
        return int(token)

    def claim_next(self, conv: ConversationRef, fence: int, worker: str) -> Claim:
        """Claim the message at done_seq + 1, recording who claims it under which fence."""
        params = {"cid": conv.conversation_id, "tenant": conv.tenant, "fence": fence}
        with self._engine.begin() as conn:
            row = conn.execute(_CLAIM_NEXT, {**params, "worker": worker}).one()
        if row.id is None:
            return Claim(None, int(row.done_seq), int(row.conversation_last_seq))
        message = ClaimedMessage(
            id=row.id,
            tenant=row.tenant,
            channel=row.channel,
            conversation_id=row.conversation_id,
            seq=row.seq,
            platform_message_id=row.platform_message_id,
            user_external_id=row.user_external_id,
            text=row.text,
            attempts=row.attempts,
            received_at=row.received_at,
        )
        return Claim(message, int(row.done_seq), int(row.conversation_last_seq))

    def record_error(self, message: ClaimedMessage, error: str) -> None:
        """Keep why an attempt failed; the message stays pending for the next attempt."""
        with self._engine.begin() as conn:
            conn.execute(
                _RECORD_ERROR,
                {"cid": message.conversation_id, "seq": message.seq, "error": error[:2000]},
            )

    def mark_dead(self, message: ClaimedMessage, fence: int, reason: str) -> None:
        """Give up on `message` so its conversation moves on; raises FencedOut if stale."""
        with self.turn(message, fence) as uow:
            uow.finish_inbound("dead", reason)
            uow.commit()

    @contextmanager
    def turn(self, message: ClaimedMessage, fence: int) -> Iterator[TurnUnitOfWork]:
        """The turn's one PostgreSQL transaction; rolled back unless commit() is called."""
        with self._engine.connect() as conn:
            uow = TurnUnitOfWork(conn, message, fence)
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
        with self._engine.begin() as conn:
            rows = conn.execute(_STALE_PENDING, {"stale_s": stale_s, "limit": limit}).all()
        return [
            StaleConversation(ConversationRef(r.tenant, r.id), r.channel, int(r.last_seq))
            for r in rows
        ]


class TurnUnitOfWork:
    """Writes of one turn, keyed by (conversation, seq) and fenced by the lease token."""

    def __init__(self, conn: Connection, message: ClaimedMessage, fence: int) -> None:
        self._conn = conn
        self._message = message
        self._fence = fence
        self.committed = False

    def _keys(self) -> dict[str, object]:
        m = self._message
        return {"tenant": m.tenant, "cid": m.conversation_id, "seq": m.seq}

    def advance(self) -> None:
        result = self._conn.execute(_ADVANCE, {**self._keys(), "fence": self._fence})
        if result.rowcount != 1:
            raise FencedOut(
                f"conversation {self._message.conversation_id} seq {self._message.seq}: "
                f"fence {self._fence} is stale or the turn was already applied"
            )

    def finish_inbound(self, status: str, error: str | None = None) -> None:
        self._conn.execute(_FINISH_INBOUND, {**self._keys(), "status": status, "error": error})

    def add_transcript(self, role: str, body: str) -> None:
        self._conn.execute(_INSERT_TRANSCRIPT, {**self._keys(), "role": role, "text": body})

    def add_reply(self, body: str) -> None:
        m = self._message
        self._conn.execute(
            _INSERT_OUTBOX,
            {
                **self._keys(),
                "channel": m.channel,
                "in_reply_to": m.platform_message_id,
                "text": body,
            },
        )

    def commit(self) -> None:
        self._conn.commit()
        self.committed = True
