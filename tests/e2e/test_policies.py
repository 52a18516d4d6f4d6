"""Concurrency policies with real workers: what a message does while its conversation
is busy (queue with typing, interrupt, reject, coalesce)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import TEST_SECRET, TenantFactory
from tests.support.callbacks import CallbackServer
from tests.support.webhooks import payload, post_signed
from workers.runtime import Runtime

pytestmark = pytest.mark.usefixtures("system")


def inbound(runtime: Runtime, tenant: str) -> list[tuple[int, str, object, object, object]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, status, received_at, started_at, finished_at FROM inbound_messages"
                " WHERE tenant = :t ORDER BY seq"
            ),
            {"t": tenant},
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def wait_started(runtime: Runtime, tenant: str, seq: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = inbound(runtime, tenant)
        if len(rows) >= seq and rows[seq - 1][3] is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"seq {seq} did not start")


def test_queue_shows_typing_while_a_slow_turn_runs(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    tenant = make_tenant(
        callback_server.url, channel={"typing_after_ms": 100}, latency_ms=[1200, 1200]
    )
    document = payload("typing", "think first")
    post_signed(web, tenant, TEST_SECRET, document)
    callback_server.wait_for(1)
    typing = callback_server.messages(kind="typing")
    assert typing, "no typing indicator during a 1.2 s turn"
    assert typing[0]["in_reply_to"] == document["message_id"]
    first_typing = next(r for r in callback_server.received if r.body["type"] == "typing")
    reply = next(r for r in callback_server.received if r.body["type"] == "message")
    assert first_typing.at < reply.at
    assert first_typing.signature_ok


def test_fast_turns_show_no_typing(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    tenant = make_tenant(callback_server.url, channel={"typing_after_ms": 500})
    post_signed(web, tenant, TEST_SECRET, payload("quick", "fast"))
    callback_server.wait_for(1)
    assert callback_server.messages(kind="typing") == []


def test_interrupt_cancels_the_running_turn_and_answers_only_the_new_message(
    web: httpx.Client,
    make_tenant: TenantFactory,
    callback_server: CallbackServer,
    runtime: Runtime,
) -> None:
    tenant = make_tenant(
        callback_server.url, channel={"concurrency": "interrupt"}, latency_ms=[3000, 3000]
    )
    post_signed(web, tenant, TEST_SECRET, payload("voice", "first"))
    wait_started(runtime, tenant, 1)
    post_signed(web, tenant, TEST_SECRET, payload("voice", "second"))
    callback_server.wait_for(1, timeout_s=15)
    time.sleep(0.3)
    assert [m["text"] for m in callback_server.messages()] == ["second"]
    rows = inbound(runtime, tenant)
    assert [(seq, status) for seq, status, *_ in rows] == [(1, "interrupted"), (2, "done")]
    cancelled_after = rows[0][4] - rows[1][2]  # type: ignore[operator]
    assert cancelled_after < timedelta(milliseconds=200), cancelled_after
    with runtime.engine.connect() as conn:
        history = conn.execute(
            text("SELECT seq, role FROM transcript WHERE tenant = :t ORDER BY seq, role"),
            {"t": tenant},
        ).all()
    assert [tuple(h) for h in history] == [(1, "user"), (2, "assistant"), (2, "user")]


def test_reject_answers_still_working_at_once_and_never_runs_the_message(
    web: httpx.Client,
    make_tenant: TenantFactory,
    callback_server: CallbackServer,
    runtime: Runtime,
) -> None:
    tenant = make_tenant(
        callback_server.url,
        channel={"concurrency": "reject", "busy_text": "Busy, one moment."},
        latency_ms=[1500, 1500],
    )
    post_signed(web, tenant, TEST_SECRET, payload("rej", "first"))
    wait_started(runtime, tenant, 1)
    busy = payload("rej", "second")
    assert post_signed(web, tenant, TEST_SECRET, busy).status_code == 202
    callback_server.wait_for(2, timeout_s=15)
    replies = callback_server.messages()
    assert [(r["seq"], r["text"]) for r in replies] == [(2, "Busy, one moment."), (1, "first")]
    assert replies[0]["in_reply_to"] == busy["message_id"]
    post_signed(web, tenant, TEST_SECRET, payload("rej", "third"))
    callback_server.wait_for(3)
    assert [m["text"] for m in callback_server.messages()][-1] == "third"
    assert [(s, st) for s, st, *_ in inbound(runtime, tenant)] == [
        (1, "done"),
        (2, "rejected"),
        (3, "done"),
    ]


def test_coalesce_turns_messages_queued_during_a_turn_into_one(
    web: httpx.Client,
    make_tenant: TenantFactory,
    callback_server: CallbackServer,
    runtime: Runtime,
) -> None:
    tenant = make_tenant(
        callback_server.url, channel={"concurrency": "coalesce"}, latency_ms=[1000, 1000]
    )
    post_signed(web, tenant, TEST_SECRET, payload("co", "first"))
    wait_started(runtime, tenant, 1)
    second, third = payload("co", "second"), payload("co", "third")
    post_signed(web, tenant, TEST_SECRET, second)
    post_signed(web, tenant, TEST_SECRET, third)
    callback_server.wait_for(2, timeout_s=15)
    time.sleep(0.3)
    replies = callback_server.messages()
    assert [(r["seq"], r["text"]) for r in replies] == [(1, "first"), (3, "second\nthird")]
    assert replies[1]["in_reply_to"] == third["message_id"]
    assert [(s, st) for s, st, *_ in inbound(runtime, tenant)] == [
        (1, "done"),
        (2, "coalesced"),
        (3, "done"),
    ]
