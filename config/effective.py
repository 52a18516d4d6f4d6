"""The effective config of a tenant: its file over global defaults (pure).

A turn pins one EffectiveConfig from start to end. It is derived from exactly one
tenant version and one global version, and says which: that pair is its cache key, so a
tenant edit recomputes only that tenant, and a global edit recomputes what derives from
global, never another tenant's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from config.schema import (
    ChannelsConfig,
    ComplianceConfig,
    ConversationLimits,
    EchoAgentConfig,
    GlobalConfig,
    ModelsConfig,
    PromptConfig,
    SessionConfig,
    TenantConfig,
    WorkflowConfig,
)

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class EffectiveConfig:
    tenant_id: str
    tenant_version: int
    global_version: int
    agent: EchoAgentConfig
    prompt: PromptConfig
    session: SessionConfig
    compliance: ComplianceConfig
    limits: ConversationLimits
    allowed_tools: tuple[str, ...]
    workflows: dict[str, WorkflowConfig]
    channels: ChannelsConfig
    models: ModelsConfig
    global_config: GlobalConfig


def inherit(default: S, override: S | None) -> S:
    """The fields the tenant file set, over the global default's."""
    if override is None:
        return default
    return default.model_copy(update=override.model_dump(exclude_unset=True))


def effective_config(
    tenant_id: str, tenant: TenantConfig, global_: GlobalConfig
) -> EffectiveConfig:
    defaults = global_.defaults
    return EffectiveConfig(
        tenant_id=tenant_id,
        tenant_version=tenant.version,
        global_version=global_.version,
        agent=tenant.agent,
        prompt=inherit(defaults.prompt, tenant.prompt),
        session=inherit(defaults.session, tenant.session),
        compliance=inherit(defaults.compliance, tenant.compliance),
        limits=inherit(defaults.limits, tenant.limits),
        allowed_tools=tenant.allowed_tools,
        workflows=dict(tenant.workflows),
        channels=tenant.channels,
        models=global_.models,
        global_config=global_,
    )
