"""Hot reload of tenant config in running worker processes, under traffic."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import text

from state.processes import list_processes
from tests.conftest import TEST_SECRET, TenantFactory, tenant_document
from tests.support.callbacks import CallbackServer
from tests.support.processes import Proc
from tests.support.webhooks import payload, post_signed
from workers.runtime import Runtime

pytestmark = pytest.mark.usefixtures("system")


def db_now(runtime: Runtime) -> object:
    with runtime.engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def test_edits_reach_running_workers_and_refused_edits_change_nothing(
    system: list[Proc],
    web: httpx.Client,
    make_tenant: TenantFactory,
    callback_server: CallbackServer,
    runtime: Runtime,
    config_dir: Path,
) -> None:
    tenant = make_tenant(callback_server.url, prefix="v1:")
    path = config_dir / "tenants" / f"{tenant}.yaml"
    stop = threading.Event()
    sent: list[int] = []

    def traffic() -> None:
        with httpx.Client(base_url=str(web.base_url), timeout=10) as client:
            while not stop.is_set():
                for conversation in ("a", "b", "c"):
                    post_signed(client, tenant, TEST_SECRET, payload(conversation, "hi"))
                    sent.append(1)
                time.sleep(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        time.sleep(1.5)
        switched_at = db_now(runtime)
        v2 = tenant_document(callback_server.url, None, 2, {"prefix": "v2:"})
        path.write_text(yaml.safe_dump(v2))
        time.sleep(3)
        for refused in (
            "version: [3\n",  # broken YAML
            yaml.safe_dump(tenant_document(callback_server.url, None, 3, {"kind": "gpt"})),
            yaml.safe_dump(tenant_document(callback_server.url, None, 1, {"prefix": "v1:"})),
            yaml.safe_dump(tenant_document(callback_server.url, None, 2, {"prefix": "edit:"})),
        ):
            path.write_text(refused)
            time.sleep(1.5)
        time.sleep(1)
    finally:
        stop.set()
        sender.join()
    callback_server.wait_for(len(sent), timeout_s=30)

    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.seq, m.started_at, m.tenant_version, o.text FROM inbound_messages m"
                " JOIN outbox o ON o.conversation_id = m.conversation_id AND o.seq = m.seq"
                " WHERE m.tenant = :t"
            ),
            {"t": tenant},
        ).all()
    assert len(rows) == len(sent)
    for row in rows:  # every turn ran with exactly one version, the one it recorded
        assert row.text == f"v{row.tenant_version}:hi", row
    late = [row for row in rows if row.started_at > switched_at + timedelta(seconds=2)]
    assert late, "no traffic after the switch"
    assert {row.tenant_version for row in late} == {2}
    assert {row.tenant_version for row in rows} == {1, 2}

    log = system[0].log()
    refusals = [line for line in log.splitlines() if '"config.refused"' in line and tenant in line]
    reasons = {
        reason
        for reason in ("invalid", "version_lowered", "version_reused")
        if any(f'"reason": "{reason}"' in line for line in refusals)
    }
    assert reasons == {"invalid", "version_lowered", "version_reused"}, refusals[:5]

    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        workers = [p for p in list_processes(runtime.redis) if p.role == "worker"]
        if any(p.tenants.get(tenant) == 2 for p in workers):
            break
        time.sleep(0.5)
    assert any(p.tenants.get(tenant) == 2 for p in workers)
