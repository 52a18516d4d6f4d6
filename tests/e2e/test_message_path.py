"""The whole message path with real worker processes: webhook → PostgreSQL → broker →
worker → outbox → signed callback to a loopback server started by the test."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import TEST_SECRET, TenantFactory
from tests.support.callbacks import CallbackServer
from tests.support.processes import Proc
from tests.support.webhooks import payload, post_signed
from workers.runtime import Runtime

pytestmark = pytest.mark.usefixtures("system")


def outbox_rows(runtime: Runtime, tenant: str) -> list[tuple[int, str, int, str | None]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, status, attempts, last_error FROM outbox"
                " WHERE tenant = :t ORDER BY seq"
            ),
            {"t": tenant},
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def wait_until(predicate: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_signed_message_gets_the_echo_reply_at_its_callback(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    tenant = make_tenant(callback_server.url, prefix="echo: ")
    document = payload("conv-a", "hello world")
    started = time.monotonic()
    assert post_signed(web, tenant, TEST_SECRET, document).status_code == 202
    replies = callback_server.wait_for(1, timeout_s=10)
    assert time.monotonic() - started < 10
    assert replies == [
        {
            "tenant": tenant,
            "conversation_id": "conv-a",
            "in_reply_to": document["message_id"],
            "seq": 1,
            "type": "message",
            "text": "echo: hello world",
        }
    ]
    assert callback_server.received[0].signature_ok


def test_platform_retries_produce_one_turn_and_one_reply(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer, runtime: Runtime
) -> None:
    tenant = make_tenant(callback_server.url)
    document = payload("conv-dup", "once")
    answers = [post_signed(web, tenant, TEST_SECRET, document).json() for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    callback_server.wait_for(1)
    time.sleep(0.5)  # give a wrongly duplicated turn the time to show up
    assert len(callback_server.messages()) == 1
    with runtime.engine.connect() as conn:
        transcript = (
            conn.execute(
                text("SELECT role FROM transcript WHERE tenant = :t ORDER BY role"), {"t": tenant}
            )
            .scalars()
            .all()
        )
    assert transcript == ["assistant", "user"]


def test_callback_failing_twice_then_succeeding_gets_exactly_one_reply(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer, runtime: Runtime
) -> None:
    callback_server.fail_next(500, 503)
    tenant = make_tenant(callback_server.url)
    post_signed(web, tenant, TEST_SECRET, payload("conv-retry", "persist"))
    callback_server.wait_for(1, timeout_s=15)
    time.sleep(0.5)
    assert [m["text"] for m in callback_server.messages()] == ["persist"]
    assert callback_server.attempts == 3
    assert outbox_rows(runtime, tenant) == [(1, "sent", 3, None)]


def test_callback_failing_always_leaves_the_reply_dead_with_its_error(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer, runtime: Runtime
) -> None:
    callback_server.fail_always(502)
    tenant = make_tenant(callback_server.url)
    post_signed(web, tenant, TEST_SECRET, payload("conv-dead", "lost?"))
    wait_until(
        lambda: outbox_rows(runtime, tenant) and outbox_rows(runtime, tenant)[0][1] == "dead"
    )
    assert outbox_rows(runtime, tenant) == [(1, "dead", 4, "HTTP 502")]  # max_attempts = 4
    assert callback_server.messages() == []


def test_permanent_refusal_is_dead_at_once_and_does_not_block_later_replies(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer, runtime: Runtime
) -> None:
    callback_server.fail_next(404)
    tenant = make_tenant(callback_server.url)
    post_signed(web, tenant, TEST_SECRET, payload("conv-404", "first"))
    wait_until(
        lambda: (
            len(outbox_rows(runtime, tenant)) == 1
            and outbox_rows(runtime, tenant)[0][1] != "pending"
        )
    )
    post_signed(web, tenant, TEST_SECRET, payload("conv-404", "second"))
    callback_server.wait_for(1)
    assert [m["text"] for m in callback_server.messages()] == ["second"]
    assert outbox_rows(runtime, tenant)[0] == (1, "dead", 1, "HTTP 404")


def test_each_conversation_is_answered_in_order(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    tenant = make_tenant(callback_server.url, latency_ms=[0, 20])
    conversations = [f"conv-{n}" for n in range(6)]

    def send_all(conversation: str) -> list[int]:
        with httpx.Client(base_url=str(web.base_url), timeout=10) as client:
            return [
                post_signed(
                    client, tenant, TEST_SECRET, payload(conversation, f"{conversation}:{i}")
                ).json()["seq"]
                for i in range(10)
            ]

    with ThreadPoolExecutor(max_workers=len(conversations)) as pool:
        seqs = list(pool.map(send_all, conversations))
    assert seqs == [list(range(1, 11))] * len(conversations)
    callback_server.wait_for(60, timeout_s=30)
    for conversation in conversations:
        replies = callback_server.messages(conversation)
        assert [r["seq"] for r in replies] == list(range(1, 11))
        assert [r["text"] for r in replies] == [f"{conversation}:{i}" for i in range(10)]


def test_worker_is_alive(system: list[Proc]) -> None:
    assert all(proc.process.poll() is None for proc in system), system[0].log()[-3000:]
