"""Redis side of the per-conversation queue: inbox cursor and lease, as Lua scripts.

The inbox of a conversation is a cursor, HASH {last, done}: the pending seqs are
(done, last]. The messages themselves (and their text) stay in PostgreSQL; Redis only
decides, atomically, whether a lease holder may let go. Every script names all the keys
it touches in KEYS, and they share one hash tag, so the scripts run on Redis Cluster.

Why the scripts make a lost wake-up impossible: ingress raises `last` after its
PostgreSQL commit and sends a wake-up only if no lease exists at that instant; a holder
releases only if `last <= done` at that instant. One of the two always sees the other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis import Redis
from redis.commands.core import Script

from state.keys import DELIVERY_LEASE_TTL_MS, QUEUE_TTL_S, ConversationKeys
from state.models import ConversationRef

# KEYS: queue, lease. ARGV: seq, queue ttl. Returns 1 if a lease is held (no wake-up needed).
_ENQUEUE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'last', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('EXISTS', KEYS[2])
"""

# KEYS: lease, queue. ARGV: token, ttl ms. Returns 2 if nothing is pending (the cursor's
# last <= done: no lease taken), 1 if the lease is now ours, 0 if another worker holds it.
# Under a backlog most wake-ups are duplicates of one the holder already drained; this
# turns them away with one round trip, before any fencing token or claim.
_ACQUIRE = """
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if last <= done then return 2 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: lease. ARGV: token, ttl ms. Returns 1 if the lease was ours and is renewed.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS: lease, queue, delivery lease. ARGV: token, seq, lease ttl ms, queue ttl s.
# Records seq as committed (and renews the lease). Returns 0 if the lease is no longer
# ours, 2 if a delivery drain holds the conversation (it will see the new reply), else 1.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if tonumber(ARGV[2]) > done then redis.call('HSET', KEYS[2], 'done', ARGV[2]) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
return 1
"""

# KEYS: lease, queue. ARGV: token, done seq from PostgreSQL, queue ttl s.
# Returns 1 released, 0 messages still pending (keep draining), -1 lease not ours.
_RELEASE_IF_DRAINED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if tonumber(ARGV[2]) > done then
  done = tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'done', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
if last > done then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: lease, queue. ARGV: token, done, last, queue ttl s. Releases our lease and sets the
# cursor to PostgreSQL's values: used only when Redis claims messages PostgreSQL lacks.
_RELEASE_RESYNC = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'done', ARGV[2], 'last', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return redis.call('DEL', KEYS[1])
"""

# KEYS: lease. ARGV: token. Unconditional release of our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


@dataclass(frozen=True)
class _Scripts:
    """Registered once per client; redis-py reloads them after a NOSCRIPT (restart)."""

    enqueue: Script
    acquire: Script
    renew: Script
    commit: Script
    release_if_drained: Script
    release_resync: Script
    release: Script

    @classmethod
    def register(cls, client: Redis) -> _Scripts:
        return cls(
            enqueue=client.register_script(_ENQUEUE),
            acquire=client.register_script(_ACQUIRE),
            renew=client.register_script(_RENEW),
            commit=client.register_script(_COMMIT),
            release_if_drained=client.register_script(_RELEASE_IF_DRAINED),
            release_resync=client.register_script(_RELEASE_RESYNC),
            release=client.register_script(_RELEASE),
        )


class ConversationQueue:
    """Inbox cursor and lease operations of every conversation, on one Redis client."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._scripts = _Scripts.register(client)

    def enqueue(self, conv: ConversationRef, seq: int) -> bool:
        """Publish an accepted seq; True if a lease holder will pick it up (no wake-up)."""
        keys = ConversationKeys(conv.tenant, conv.conversation_id)
        return bool(self._scripts.enqueue(keys=[keys.queue, keys.lease], args=[seq, QUEUE_TTL_S]))

    def acquire(self, conv: ConversationRef, ttl_ms: int) -> Lease | Idle | None:
        """The turn lease; Idle if the cursor shows nothing pending (no lease taken), None
        if another worker holds it. Either way the caller has nothing to do."""
        keys = ConversationKeys(conv.tenant, conv.conversation_id)
        token = secrets.token_hex(12)
        code = int(self._scripts.acquire(keys=[keys.lease, keys.queue], args=[token, ttl_ms]))
        if code == 2:
            return IDLE
        if code == 0:
            return None
        return Lease(self._scripts, conv, keys.lease, keys.queue, token, ttl_ms)

    def acquire_delivery(self, conv: ConversationRef) -> Lease | None:
        """The delivery lease: one delivery drain per conversation, so replies stay in order."""
        keys = ConversationKeys(conv.tenant, conv.conversation_id)
        token = secrets.token_hex(12)
        if not self._client.set(keys.delivery_lease, token, nx=True, px=DELIVERY_LEASE_TTL_MS):
            return None
        return Lease(
            self._scripts, conv, keys.delivery_lease, keys.queue, token, DELIVERY_LEASE_TTL_MS
        )

    def last_seq(self, conv: ConversationRef) -> int:
        """The highest accepted seq Redis knows of (0 if none): an interrupt watcher's poll."""
        keys = ConversationKeys(conv.tenant, conv.conversation_id)
        value = self._client.hget(keys.queue, "last")
        return int(value) if value is not None else 0

    def holders(self, convs: list[ConversationRef]) -> list[bool]:
        """Which of `convs` have a live lease (one pipelined round trip)."""
        pipe = self._client.pipeline(transaction=False)
        for conv in convs:
            pipe.exists(ConversationKeys(conv.tenant, conv.conversation_id).lease)
        return [bool(n) for n in pipe.execute()]


class Idle:
    """acquire()'s answer when the conversation has nothing pending."""


IDLE = Idle()


@dataclass(frozen=True)
class CommitResult:
    committed: bool  # False: the lease was taken over, the cursor write was refused
    delivery_running: bool


@dataclass
class Lease:
    """A held conversation lease. Every method checks the token first, in Lua."""

    _scripts: _Scripts
    conv: ConversationRef
    key: str
    queue_key: str
    token: str
    ttl_ms: int

    def renew(self) -> bool:
        return bool(self._scripts.renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def commit(self, seq: int) -> CommitResult:
        """Record `seq` as done in Redis, and say whether a delivery drain is running.

        A delivery drain that holds its lease looks at the outbox once more after it
        lets go, so a reply committed before this call needs no wake-up of its own.
        """
        delivery_key = ConversationKeys(self.conv.tenant, self.conv.conversation_id).delivery_lease
        code = int(
            self._scripts.commit(
                keys=[self.key, self.queue_key, delivery_key],
                args=[self.token, seq, self.ttl_ms, QUEUE_TTL_S],
            )
        )
        return CommitResult(committed=code > 0, delivery_running=code == 2)

    def release_if_drained(self, done_seq: int) -> int:
        """1 released, 0 more messages arrived (keep draining), -1 lease lost."""
        return int(
            self._scripts.release_if_drained(
                keys=[self.key, self.queue_key], args=[self.token, done_seq, QUEUE_TTL_S]
            )
        )

    def release_resync(self, done_seq: int, last_seq: int) -> bool:
        """Let go and overwrite the Redis cursor with PostgreSQL's (done, last)."""
        return bool(
            self._scripts.release_resync(
                keys=[self.key, self.queue_key],
                args=[self.token, done_seq, last_seq, QUEUE_TTL_S],
            )
        )

    def release(self) -> bool:
        return bool(self._scripts.release(keys=[self.key], args=[self.token]))
