"""Checks of the ordering invariants over what PostgreSQL recorded."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import text

from tests.support.webhooks import payload, post_signed
from workers.runtime import Runtime


def send_conversations(
    base_url: str, tenant: str, secret: str, conversations: list[str], per_conversation: int
) -> None:
    """Each conversation's messages in order from its own thread, all concurrently."""

    def send(conversation: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for i in range(per_conversation):
                response = post_signed(
                    client, tenant, secret, payload(conversation, f"{conversation}:{i}")
                )
                assert response.status_code == 202, response.text

    with ThreadPoolExecutor(max_workers=min(32, len(conversations))) as pool:
        list(pool.map(send, conversations))


def finished(runtime: Runtime, tenant: str) -> int:
    with runtime.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM inbound_messages"
                    " WHERE tenant = :t AND status <> 'pending'"
                ),
                {"t": tenant},
            ).scalar_one()
        )


def wait_finished(runtime: Runtime, tenant: str, count: int, timeout_s: float) -> float:
    """Seconds until `count` messages of `tenant` are done or dead; fails past timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if finished(runtime, tenant) >= count:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"only {finished(runtime, tenant)} of {count} finished in {timeout_s} s")


def assert_ordered_exactly_once(runtime: Runtime, tenant: str, per_conversation: int) -> None:
    """Per conversation: every message done once, in seq order, turns never overlapping,
    one user and one assistant transcript row and one reply per message."""
    with runtime.engine.connect() as conn:
        inbound = conn.execute(
            text(
                """
                SELECT c.external_id, m.seq, m.status, m.text, m.started_at, m.finished_at
                FROM inbound_messages m JOIN conversations c ON c.id = m.conversation_id
                WHERE m.tenant = :t ORDER BY c.external_id, m.seq
                """
            ),
            {"t": tenant},
        ).all()
        transcript = conn.execute(
            text(
                """
                SELECT c.external_id, t.seq, t.role, t.text
                FROM transcript t JOIN conversations c ON c.id = t.conversation_id
                WHERE t.tenant = :t ORDER BY c.external_id, t.seq, t.role
                """
            ),
            {"t": tenant},
        ).all()
        outbox = conn.execute(
            text("SELECT conversation_id, seq FROM outbox WHERE tenant = :t"), {"t": tenant}
        ).all()
    by_conversation: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for row in inbound:
        by_conversation[row.external_id].append(tuple(row))
    for conversation, rows in by_conversation.items():
        assert [r[1] for r in rows] == list(range(1, per_conversation + 1)), conversation
        assert all(r[2] == "done" for r in rows), (conversation, [r[2] for r in rows])
        assert [r[3] for r in rows] == [f"{conversation}:{i}" for i in range(per_conversation)]
        for previous, current in itertools.pairwise(rows):
            assert current[4] >= previous[5], f"{conversation}: seq {current[1]} overlapped"  # type: ignore[operator]
    expected_transcript = sorted(
        (conversation, seq, role, f"{conversation}:{seq - 1}")
        for conversation in by_conversation
        for seq in range(1, per_conversation + 1)
        for role in ("assistant", "user")
    )
    assert sorted(tuple(r) for r in transcript) == expected_transcript
    assert len(outbox) == len(set(outbox)) == len(inbound)
