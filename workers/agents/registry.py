"""Which agent runs a tenant's turns (pure: config in, agent out)."""

from __future__ import annotations

from config.schema import TenantConfig
from workers.agents.base import Agent
from workers.agents.echo import EchoAgent


def build_agent(config: TenantConfig) -> Agent:
    return EchoAgent(config.agent)
