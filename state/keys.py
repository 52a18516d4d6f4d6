"""Every Redis key Turnstile writes, with its hash tag and the reason for its TTL.

All keys of one conversation share the hash tag `{<tenant>:<conversation id>}` so the
Lua scripts that touch several of them run on Redis Cluster. Keys use the internal
numeric conversation id, never the platform's conversation id: those are often phone
numbers, and personal data never reaches Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "ts"

# The inbox cursor (`last`, `done` seq) outlives any turn by far; it is refreshed on every
# write and rebuilt from PostgreSQL by the sweep, so expiring an idle one loses nothing.
QUEUE_TTL_S = 86_400

# The delivery lease only guards one delivery drain run; a crashed holder's replies wait
# at most this long before another worker (or the delivery sweep) takes over.
DELIVERY_LEASE_TTL_MS = 30_000

# Each process publishes what it runs (config versions, queues) for `config status`.
PROCESS_HEARTBEAT_TTL_S = 30


# Which config versions each process runs: one key per process, indexed by a ZSET
# scored by publish time so `config status` lists them without SCAN.
PROCESSES_INDEX = f"{PREFIX}:processes"


def process_key(host: str, pid: int) -> str:
    """STRING (JSON) of one process's versions; TTL = PROCESS_HEARTBEAT_TTL_S."""
    return f"{PREFIX}:process:{host}:{pid}"


@dataclass(frozen=True)
class ConversationKeys:
    """The keys of one conversation, in one Redis Cluster slot."""

    tenant: str
    conversation_id: int

    @property
    def tag(self) -> str:
        return f"{{{self.tenant}:{self.conversation_id}}}"

    @property
    def queue(self) -> str:
        """HASH `last` (highest accepted seq) and `done` (highest committed seq)."""
        return f"{PREFIX}:{self.tag}:queue"

    @property
    def lease(self) -> str:
        """STRING holding the turn lease token; TTL = the tenant's lease_ttl_s."""
        return f"{PREFIX}:{self.tag}:lease"

    @property
    def delivery_lease(self) -> str:
        """STRING holding the delivery lease token; TTL = DELIVERY_LEASE_TTL_MS."""
        return f"{PREFIX}:{self.tag}:dlease"
