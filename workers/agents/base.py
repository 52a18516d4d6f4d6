"""The agent interface: what a turn gives an agent and what it gets back.

An agent holds no state between turns; everything it may use arrives in TurnInput and
everything it wants kept leaves in AgentReply, so the pipeline persists it once, fenced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from config.effective import EffectiveConfig
from workers.cancel import CancelToken


@dataclass(frozen=True)
class TurnInput:
    tenant: str
    conversation_id: int
    seq: int
    message_id: str
    text: str
    config: EffectiveConfig  # pinned for the whole turn: one tenant and one global version


@dataclass(frozen=True)
class AgentReply:
    text: str


class Agent(Protocol):
    def run(self, turn: TurnInput, cancel: CancelToken) -> AgentReply:
        """Produce the reply; raise TurnCancelled promptly once `cancel` is set."""
        ...
