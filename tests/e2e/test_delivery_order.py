"""Replies reach the platform in seq order per conversation; one conversation's failing
deliveries hold back only that conversation."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import TEST_SECRET, TenantFactory
from tests.support.callbacks import CallbackServer
from tests.support.webhooks import payload, post_signed

pytestmark = pytest.mark.usefixtures("system")


def test_a_failing_conversation_recovers_in_order_without_delaying_others(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    tenant = make_tenant(callback_server.url)
    callback_server.fail_conversation("broken", 503)
    for i in range(4):
        post_signed(web, tenant, TEST_SECRET, payload("broken", f"b{i}"))
    for i in range(4):
        post_signed(web, tenant, TEST_SECRET, payload("healthy", f"h{i}"))
    deadline = time.monotonic() + 10
    while len(callback_server.messages("healthy")) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["text"] for m in callback_server.messages("healthy")] == ["h0", "h1", "h2", "h3"]
    assert callback_server.messages("broken") == []
    callback_server.fail_conversation("broken", None)
    deadline = time.monotonic() + 15
    while len(callback_server.messages("broken")) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["text"] for m in callback_server.messages("broken")] == ["b0", "b1", "b2", "b3"]


def test_a_slow_conversation_does_not_hold_up_the_others(
    web: httpx.Client, make_tenant: TenantFactory, callback_server: CallbackServer
) -> None:
    """While one conversation's 2 s turns run, other conversations are served."""
    slow = make_tenant(callback_server.url, latency_ms=[2000, 2000])
    fast = make_tenant(callback_server.url)
    for i in range(2):
        post_signed(web, slow, TEST_SECRET, payload("slow", f"s{i}"))
    time.sleep(0.2)
    for n in range(10):
        post_signed(web, fast, TEST_SECRET, payload(f"fast-{n}", "quick"))
    callback_server.wait_for(12, timeout_s=15)
    received = {r.body["conversation_id"]: r.at for r in callback_server.received}
    fast_done = max(received[f"fast-{n}"] for n in range(10))
    slow_first = min(r.at for r in callback_server.received if r.body["conversation_id"] == "slow")
    assert fast_done < slow_first, "fast conversations waited behind the slow one"
