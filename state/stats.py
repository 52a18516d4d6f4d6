"""Queue depth read from the durable record, for gauges computed at scrape time.

Counted through the partial indexes of pending rows, so a scrape costs little when
queues are short; the numbers are global (no tenant or conversation labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

_STATS = text(
    """
    SELECT
      (SELECT count(*) FROM conversations WHERE last_seq > done_seq) AS conversations_pending,
      (SELECT coalesce(sum(last_seq - done_seq), 0) FROM conversations
         WHERE last_seq > done_seq) AS messages_pending,
      (SELECT count(*) FROM outbox WHERE status = 'pending') AS replies_pending
    """
)


@dataclass(frozen=True)
class QueueStats:
    conversations_pending: int
    messages_pending: int
    replies_pending: int


def queue_stats(engine: Engine) -> QueueStats:
    with engine.connect() as conn:
        row = conn.execute(_STATS).one()
    return QueueStats(
        int(row.conversations_pending), int(row.messages_pending), int(row.replies_pending)
    )
