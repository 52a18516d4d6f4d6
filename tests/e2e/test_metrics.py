"""Metrics from every process: the worker node sums its children; the web process adds
queue depth read from PostgreSQL. No label carries a tenant, user or conversation."""

from __future__ import annotations

import re
import time

import httpx

from tests.conftest import TEST_SECRET, TenantFactory
from tests.support.callbacks import CallbackServer
from tests.support.processes import Proc
from tests.support.webhooks import payload, post_signed


def sample(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)} ([0-9.e+-]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def test_worker_node_exports_turn_metrics_of_all_its_children(
    system: list[Proc],
    web: httpx.Client,
    make_tenant: TenantFactory,
    callback_server: CallbackServer,
) -> None:
    port = system[0].env["TURNSTILE_WORKER_METRICS_PORT"]
    url = f"http://127.0.0.1:{port}/metrics"
    replied = 'turnstile_turns_total{outcome="replied"}'
    before = sample(httpx.get(url, timeout=5).text, replied)
    tenant = make_tenant(callback_server.url)
    for n in range(6):
        post_signed(web, tenant, TEST_SECRET, payload(f"m{n}", "count me"))
    callback_server.wait_for(6)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        scraped = httpx.get(url, timeout=5).text
        if sample(scraped, replied) >= before + 6:
            break
        time.sleep(0.1)
    assert sample(scraped, replied) >= before + 6
    assert 'turnstile_turn_stage_seconds_count{stage="agent"}' in scraped
    assert "turnstile_queue_lag_seconds_bucket" in scraped
    assert tenant not in scraped


def test_web_metrics_include_queue_depth(web: httpx.Client) -> None:
    scraped = web.get("/metrics").text
    for name in (
        "turnstile_inbox_pending_messages",
        "turnstile_conversations_pending",
        "turnstile_outbox_pending_replies",
    ):
        assert re.search(rf"^{name} [0-9.]+$", scraped, re.MULTILINE), name
