"""The Redis cursor and lease scripts, against a real Redis."""

from __future__ import annotations

import time
import uuid

from state.models import ConversationRef
from state.queue import IDLE, Lease
from workers.runtime import Runtime


def conv() -> ConversationRef:
    return ConversationRef(f"t-{uuid.uuid4().hex[:12]}", 1)


def held(runtime: Runtime, ref: ConversationRef, ttl_ms: int = 5000) -> Lease:
    lease = runtime.queue.acquire(ref, ttl_ms=ttl_ms)
    assert isinstance(lease, Lease), lease
    return lease


def test_nothing_pending_means_no_lease(runtime: Runtime) -> None:
    ref = conv()
    assert runtime.queue.acquire(ref, ttl_ms=5000) is IDLE
    runtime.queue.enqueue(ref, 1)
    lease = held(runtime, ref)
    assert lease.commit(1).committed
    assert lease.release()
    assert runtime.queue.acquire(ref, ttl_ms=5000) is IDLE


def test_lease_is_exclusive_until_released(runtime: Runtime) -> None:
    ref = conv()
    runtime.queue.enqueue(ref, 1)
    lease = held(runtime, ref)
    assert runtime.queue.acquire(ref, ttl_ms=5000) is None
    assert lease.release()
    held(runtime, ref)


def test_enqueue_reports_whether_a_holder_will_see_the_message(runtime: Runtime) -> None:
    ref = conv()
    assert runtime.queue.enqueue(ref, 1) is False  # nobody holds it: send a wake-up
    held(runtime, ref)
    assert runtime.queue.enqueue(ref, 2) is True  # the holder drains it


def test_holder_cannot_let_go_while_messages_are_pending(runtime: Runtime) -> None:
    ref = conv()
    runtime.queue.enqueue(ref, 1)
    lease = held(runtime, ref)
    runtime.queue.enqueue(ref, 2)
    assert lease.commit(1).committed
    assert lease.release_if_drained(done_seq=1) == 0
    assert lease.commit(2).committed
    assert lease.release_if_drained(done_seq=2) == 1
    assert runtime.queue.acquire(ref, ttl_ms=5000) is IDLE


def test_postgres_done_seq_catches_the_cursor_up(runtime: Runtime) -> None:
    """After a Redis flush the cursor is rebuilt from what PostgreSQL says is done."""
    ref = conv()
    runtime.queue.enqueue(ref, 3)
    lease = held(runtime, ref)
    assert lease.release_if_drained(done_seq=3) == 1


def test_a_taken_over_lease_cannot_commit_or_release(runtime: Runtime) -> None:
    ref = conv()
    runtime.queue.enqueue(ref, 1)
    old = held(runtime, ref, ttl_ms=100)
    time.sleep(0.2)  # the holder paused past its lease
    new = held(runtime, ref)
    assert old.renew() is False
    assert old.commit(1).committed is False
    assert old.release_if_drained(done_seq=1) == -1
    assert old.release() is False
    assert new.renew() is True


def test_commit_says_whether_a_delivery_drain_is_running(runtime: Runtime) -> None:
    ref = conv()
    runtime.queue.enqueue(ref, 3)
    lease = held(runtime, ref)
    assert lease.commit(1).delivery_running is False
    delivery = runtime.queue.acquire_delivery(ref)
    assert isinstance(delivery, Lease)
    assert lease.commit(2).delivery_running is True
    delivery.release()
    assert lease.commit(3).delivery_running is False
