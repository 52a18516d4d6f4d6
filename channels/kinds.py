"""Facts about channel kinds that routing and policy both need (pure data)."""

from __future__ import annotations

# Channels whose turns are spoken: latency-critical, and a caller who talks over the bot
# interrupts it.
VOICE_CHANNELS = frozenset({"voice"})
