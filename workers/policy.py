"""Concurrency policy: what a message does when its conversation is busy (pure).

`queue` waits its turn; `interrupt` cancels the running turn and runs next; `reject`
is recorded and answered "still working" at once but never run; `coalesce` waits and
runs as one turn with the other messages that queued up meanwhile.
"""

from __future__ import annotations

from channels.kinds import VOICE_CHANNELS
from config.schema import ChannelsConfig, ConcurrencyPolicy


def default_policy(channel: str) -> ConcurrencyPolicy:
    """Voice cannot talk over the caller; chat users expect every message answered."""
    return "interrupt" if channel in VOICE_CHANNELS else "queue"


def concurrency_policy(channels: ChannelsConfig, channel: str) -> ConcurrencyPolicy:
    settings = getattr(channels, channel, None)
    configured: ConcurrencyPolicy | None = getattr(settings, "concurrency", None)
    return configured or default_policy(channel)
