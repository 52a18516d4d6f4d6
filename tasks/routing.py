"""Which broker queue a piece of work goes to (pure).

Queues are latency classes, not conversations (one queue per conversation would put
every key into every BRPOP; CELERY-FACTS §5): voice turns never wait behind chat turns,
and each class gets its own worker pool when it needs one.
"""

from __future__ import annotations

from channels.kinds import VOICE_CHANNELS

TURNS_CHAT = "turns.chat"
TURNS_VOICE = "turns.voice"
DELIVERY = "delivery"
MAINTENANCE = "maintenance"
ALL_QUEUES = (TURNS_VOICE, TURNS_CHAT, DELIVERY, MAINTENANCE)


def turn_queue(channel: str) -> str:
    return TURNS_VOICE if channel in VOICE_CHANNELS else TURNS_CHAT
