"""Records that cross module boundaries on the message path (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class InboundMessage:
    """A platform message normalised by its channel adapter, before it has a seq."""

    tenant: str
    channel: str
    conversation_external_id: str  # the platform's id; may be personal data (a phone number)
    user_external_id: str
    platform_message_id: str  # the de-duplication key of the platform's retries
    text: str


@dataclass(frozen=True)
class Accepted:
    """Ingress outcome: the internal conversation id and the message's seq."""

    conversation_id: int
    seq: int
    duplicate: bool


@dataclass(frozen=True)
class ConversationRef:
    """Enough to address a conversation's keys and rows; carries no personal data."""

    tenant: str
    conversation_id: int


@dataclass(frozen=True)
class ConfigVersions:
    """The tenant and global config versions one turn ran with (recorded per message)."""

    tenant: int
    global_: int


@dataclass(frozen=True)
class ClaimedMessage:
    """The next message of a conversation, claimed by the lease holder.

    `attempts` already counts this claim: it was committed before the agent runs, so a
    worker that dies mid-turn still leaves its attempt on record (the poison bound).
    """

    id: int
    tenant: str
    channel: str
    conversation_id: int
    conversation_external_id: str
    seq: int
    platform_message_id: str
    user_external_id: str
    text: str
    attempts: int
    received_at: datetime
    status: str  # `pending`, or `rejected` at ingress (skipped, never run)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    tenant: str
    channel: str
    conversation_id: int
    conversation_external_id: str
    seq: int
    in_reply_to: str
    text: str
    attempts: int
    next_attempt_at: datetime
