"""Which agent runs a tenant's turns (pure: config in, agent out)."""

from __future__ import annotations

from config.effective import EffectiveConfig
from workers.agents.base import Agent
from workers.agents.echo import EchoAgent


def build_agent(config: EffectiveConfig) -> Agent:
    return EchoAgent(config.agent)
