"""The ordering invariants with real worker processes (3 prefork children), real Redis
and real PostgreSQL: load, crashes, pauses past the lease, poison, Redis losing state."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from tasks.app import TurnstileCelery
from tests.conftest import TEST_SECRET, TenantFactory
from tests.support.callbacks import CallbackServer
from tests.support.ordering import (
    assert_ordered_exactly_once,
    send_conversations,
    wait_finished,
)
from tests.support.processes import Proc, spawn, wait_for_workers
from tests.support.webhooks import payload, post_signed
from workers.runtime import Runtime


def pool_children(worker: Proc) -> list[psutil.Process]:
    return psutil.Process(worker.process.pid).children()


@pytest.fixture
def worker(system: list[Proc]) -> Iterator[Proc]:
    node = system[0]
    yield node
    assert node.process.poll() is None, node.log()[-3000:]


def test_fifty_conversations_of_twenty_messages_stay_ordered(
    worker: Proc, web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    tenant = make_tenant(latency_ms=[0, 15])
    conversations = [f"c{n:02d}" for n in range(50)]
    send_conversations(str(web.base_url), tenant, TEST_SECRET, conversations, 20)
    wait_finished(runtime, tenant, 1000, timeout_s=120)
    assert_ordered_exactly_once(runtime, tenant, 20)


def test_children_killed_mid_turn_lose_nothing_and_repeat_nothing(
    worker: Proc, web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    tenant = make_tenant(latency_ms=[20, 60])
    conversations = [f"k{n:02d}" for n in range(12)]
    stop = threading.Event()
    kills: list[float] = []

    def chaos() -> None:
        while not stop.wait(0.7):
            children = pool_children(worker)
            if children:
                random.choice(children).send_signal(signal.SIGKILL)
                kills.append(time.monotonic())

    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        send_conversations(str(web.base_url), tenant, TEST_SECRET, conversations, 10)
        time.sleep(3)
    finally:
        stop.set()
        killer.join()
    assert kills, "no child was killed"
    # Bound: lease TTL (3 s) + sweep interval (0.5 s) + the remaining turns.
    recovery_s = wait_finished(runtime, tenant, 120, timeout_s=60)
    assert recovery_s < 45
    assert_ordered_exactly_once(runtime, tenant, 10)


def test_worker_paused_past_its_lease_cannot_write(
    worker: Proc,
    web: httpx.Client,
    make_tenant: TenantFactory,
    runtime: Runtime,
    callback_server: CallbackServer,
) -> None:
    tenant = make_tenant(callback_server.url, latency_ms=[1500, 1500])
    post_signed(web, tenant, TEST_SECRET, payload("paused", "slow"))
    holder = running_worker_pid(runtime, tenant)
    os.kill(holder, signal.SIGSTOP)
    try:
        # Another child takes the conversation once the lease (3 s) lapses, and finishes.
        wait_for(lambda: attempt_by_other(runtime, tenant, holder), timeout_s=20)
        callback_server.wait_for(1, timeout_s=20)
    finally:
        os.kill(holder, signal.SIGCONT)
    time.sleep(2.5)  # the resumed worker finishes its agent call and tries to commit
    assert [m["text"] for m in callback_server.messages()] == ["slow"]
    assert_ordered_exactly_once_single(runtime, tenant)
    # The resumed worker either saw its lease lost before writing (cancelled) or tried to
    # commit and was refused by the fence; both are logged, neither wrote anything.
    log = worker.log()
    assert '"event": "turn.fenced"' in log or '"event": "turn.cancelled"' in log, log[-3000:]


def test_poison_message_is_retried_a_bounded_number_of_times_then_dead(
    worker: Proc,
    web: httpx.Client,
    make_tenant: TenantFactory,
    runtime: Runtime,
    callback_server: CallbackServer,
) -> None:
    tenant = make_tenant(callback_server.url, crash_marker="☠")
    post_signed(web, tenant, TEST_SECRET, payload("poison", "☠ kills its worker"))
    post_signed(web, tenant, TEST_SECRET, payload("poison", "after the poison"))
    callback_server.wait_for(1, timeout_s=60)
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seq, status, attempts, last_error FROM inbound_messages"
                " WHERE tenant = :t ORDER BY seq"
            ),
            {"t": tenant},
        ).all()
    assert [(r.seq, r.status) for r in rows] == [(1, "dead"), (2, "done")]
    assert rows[0].attempts == 4  # 3 crashed attempts (max_attempts) + the claim that gave up
    assert "gave up after 3 attempts" in rows[0].last_error
    assert [m["text"] for m in callback_server.messages()] == ["after the poison"]


def test_redis_flushed_while_messages_queue_loses_nothing(
    worker: Proc, web: httpx.Client, make_tenant: TenantFactory, runtime: Runtime
) -> None:
    """FLUSHALL: cursors, leases and the broker's queued wake-ups are all gone; the
    PostgreSQL record and the sweep bring every message back, once, in order."""
    tenant = make_tenant(latency_ms=[50, 100])
    conversations = [f"f{n}" for n in range(5)]
    send_conversations(str(web.base_url), tenant, TEST_SECRET, conversations, 8)
    runtime.redis.flushall()
    wait_finished(runtime, tenant, 40, timeout_s=60)
    assert_ordered_exactly_once(runtime, tenant, 8)


def running_worker_pid(runtime: Runtime, tenant: str, timeout_s: float = 10) -> int:
    row = wait_for(lambda: _claim(runtime, tenant), timeout_s=timeout_s)
    return int(str(row[0]).rsplit(":", 1)[1])


def attempt_by_other(runtime: Runtime, tenant: str, pid: int) -> bool:
    row = _claim(runtime, tenant)
    return row is not None and not str(row[0]).endswith(f":{pid}")


def _claim(runtime: Runtime, tenant: str) -> tuple[object, ...] | None:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT worker, fence FROM inbound_messages"
                " WHERE tenant = :t AND worker IS NOT NULL"
            ),
            {"t": tenant},
        ).first()
    return tuple(row) if row is not None else None


def assert_ordered_exactly_once_single(runtime: Runtime, tenant: str) -> None:
    with runtime.engine.connect() as conn:
        roles = (
            conn.execute(
                text("SELECT role FROM transcript WHERE tenant = :t ORDER BY role"), {"t": tenant}
            )
            .scalars()
            .all()
        )
        outbox = conn.execute(
            text("SELECT count(*) FROM outbox WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    assert roles == ["assistant", "user"]
    assert outbox == 1


def wait_for(predicate, timeout_s: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@contextmanager
def second_node_alone(
    worker: Proc,
    service_env: dict[str, str],
    celery_client: TurnstileCelery,
    tmp_path: Path,
    overrides: dict[str, str],
    stop_timeout_s: float,
) -> Iterator[Proc]:
    """Another worker node (2 processes) on the same services, with the session's node
    paused (SIGSTOP, whole group) so that all the work goes to the new one; on exit the
    session's node resumes and the new one is stopped."""
    env = {
        **service_env,
        "TURNSTILE_WORKER_CONCURRENCY": "2",
        "TURNSTILE_DATA_DIR": str(tmp_path),
        **overrides,
    }
    node = spawn("second-node", ["worker"], env, tmp_path)
    try:
        wait_for_workers(celery_client, 2, node)
        os.killpg(worker.process.pid, signal.SIGSTOP)
        yield node
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
        node.stop(timeout_s=stop_timeout_s)


def test_killing_a_whole_worker_node_loses_no_turn(
    worker: Proc,
    web: httpx.Client,
    make_tenant: TenantFactory,
    runtime: Runtime,
    service_env: dict[str, str],
    celery_client: TurnstileCelery,
    tmp_path: Path,
) -> None:
    """A second node takes the work while the first is paused, then dies with running
    and prefetched wake-ups (parent and children SIGKILLed); nothing is lost."""
    with second_node_alone(worker, service_env, celery_client, tmp_path, {}, 1) as node:
        tenant = make_tenant(latency_ms=[100, 200])
        conversations = [f"n{n}" for n in range(6)]
        send_conversations(str(web.base_url), tenant, TEST_SECRET, conversations, 5)
        wait_for(lambda: _claim(runtime, tenant), timeout_s=10)
        time.sleep(0.5)
        os.killpg(node.process.pid, signal.SIGKILL)
    wait_finished(runtime, tenant, 30, timeout_s=60)
    assert_ordered_exactly_once(runtime, tenant, 5)


def test_a_turn_longer_than_the_visibility_timeout_never_runs_twice_at_once(
    worker: Proc,
    web: httpx.Client,
    make_tenant: TenantFactory,
    runtime: Runtime,
    service_env: dict[str, str],
    celery_client: TurnstileCelery,
    tmp_path: Path,
) -> None:
    """The broker redelivers the wake-up of a 6 s turn after 2 s; the copy finds the
    lease held and returns, so the turn runs once."""
    overrides = {"TURNSTILE_VISIBILITY_TIMEOUT_S": "2", "TURNSTILE_LOG_LEVEL": "DEBUG"}
    with second_node_alone(worker, service_env, celery_client, tmp_path, overrides, 10) as node:
        tenant = make_tenant(latency_ms=[6000, 6000])
        post_signed(web, tenant, TEST_SECRET, payload("long", "takes a while"))
        wait_finished(runtime, tenant, 1, timeout_s=30)
    received = [
        line for line in node.log().splitlines() if "turns.process[" in line and "received" in line
    ]
    task_ids = [line.split("turns.process[", 1)[1].split("]", 1)[0] for line in received]
    assert len(task_ids) > len(set(task_ids)), "the broker never redelivered the wake-up"
    with runtime.engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT attempts FROM inbound_messages WHERE tenant = :t"), {"t": tenant}
        ).scalar_one()
    assert attempts == 1
    assert_ordered_exactly_once_single(runtime, tenant)
