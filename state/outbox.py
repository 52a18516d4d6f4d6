"""PostgreSQL outbox: replies written in the turn's transaction, delivered in seq order.

Delivery of one conversation takes the lowest pending seq first; a reply that waits for
its next retry holds back the later replies of its conversation only. A dead reply
(attempts exhausted, or refused for good by the platform) no longer holds anything back.
Notices (a rejected message's "still working") go first whenever they are due: they
answer the present, and are never held back behind a slow reply.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text

from state.db import single_statements
from state.models import ConversationRef, OutboxItem

_HEAD = text(
    """
    SELECT o.id, o.tenant, o.channel, o.conversation_id, c.external_id, o.seq,
           o.in_reply_to, o.text, o.attempts, o.next_attempt_at
    FROM outbox o JOIN conversations c ON c.id = o.conversation_id
    WHERE o.conversation_id = :cid AND o.tenant = :tenant AND o.status = 'pending'
      AND (o.kind = 'reply' OR o.next_attempt_at <= now())
    ORDER BY o.kind = 'reply', o.seq LIMIT 1
    """
)

_SENT = text(
    """
    UPDATE outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,
                      last_error = NULL
    WHERE id = :id AND status = 'pending'
    """
)

_RETRY = text(
    """
    UPDATE outbox SET attempts = attempts + 1, last_error = :error,
                      next_attempt_at = now() + make_interval(secs => :delay_s)
    WHERE id = :id AND status = 'pending'
    """
)

_DEAD = text(
    """
    UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = :error
    WHERE id = :id AND status = 'pending'
    """
)

_DUE = text(
    """
    SELECT DISTINCT tenant, conversation_id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now() - make_interval(secs => :grace_s)
    LIMIT :limit
    """
)


class OutboxStore:
    def __init__(self, engine: Engine) -> None:
        self._single = single_statements(engine)  # every outbox operation is one statement

    def head(self, conv: ConversationRef) -> OutboxItem | None:
        """The conversation's lowest pending reply, whether or not it is due yet."""
        with self._single.connect() as conn:
            row = conn.execute(_HEAD, {"cid": conv.conversation_id, "tenant": conv.tenant}).first()
        if row is None:
            return None
        return OutboxItem(
            id=row.id,
            tenant=row.tenant,
            channel=row.channel,
            conversation_id=row.conversation_id,
            conversation_external_id=row.external_id,
            seq=row.seq,
            in_reply_to=row.in_reply_to,
            text=row.text,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
        )

    def mark_sent(self, item: OutboxItem) -> None:
        self._write(_SENT, {"id": item.id})

    def mark_retry(self, item: OutboxItem, error: str, delay_s: float) -> None:
        self._write(_RETRY, {"id": item.id, "error": error[:2000], "delay_s": delay_s})

    def mark_dead(self, item: OutboxItem, error: str) -> None:
        self._write(_DEAD, {"id": item.id, "error": error[:2000]})

    def due(self, grace_s: float, limit: int) -> list[ConversationRef]:
        """Conversations whose head reply is due and was not picked up for `grace_s`."""
        with self._single.connect() as conn:
            rows = conn.execute(_DUE, {"grace_s": grace_s, "limit": limit}).all()
        return [ConversationRef(r.tenant, r.conversation_id) for r in rows]

    def _write(self, statement: object, params: dict[str, object]) -> None:
        with self._single.connect() as conn:
            conn.execute(statement, params)  # type: ignore[call-overload]


def is_due(item: OutboxItem, now: datetime) -> bool:
    return item.next_attempt_at <= now
