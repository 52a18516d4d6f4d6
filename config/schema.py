"""Schemas of the versioned config files (`global.yaml`, `tenants/<tenant>.yaml`).

Unknown keys are errors: a typo in a production config must fail validation rather
than silently fall back to a default. Secrets never live in these files; a field
ending in `_env` names the environment variable that holds the secret.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_NAME = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    """The bound on queued turns across all tenants (the webhook answers 429 past it)."""

    max_queued_turns: int = Field(default=100_000, ge=1)
    retry_after_s: int = Field(default=5, ge=1, le=3600)


class ConversationLimits(_Strict):
    """Per-conversation backpressure; a tenant may set its own."""

    max_inbox_per_conversation: int = Field(default=1000, ge=1)
    retry_after_s: int = Field(default=2, ge=1, le=3600)


class OrderingConfig(_Strict):
    """Lease and drain bounds of the per-conversation queue.

    A crashed lease holder's conversation is resumed by the sweep within
    `lease_ttl_s` + TURNSTILE_SWEEP_INTERVAL_S (plus the time the wake-up waits in the
    broker).
    """

    lease_ttl_s: float = Field(default=10.0, gt=0.5, le=300)
    drain_max_turns: int = Field(default=50, ge=1)
    # Bounded well under the broker visibility timeout (tasks/app.py) so a healthy drain
    # run is never redelivered while it runs.
    drain_max_s: float = Field(default=20.0, gt=0, le=120)
    max_attempts: int = Field(default=5, ge=1, le=100)


class DeliveryConfig(_Strict):
    """Retry policy of reply delivery: exponential backoff, then the reply is marked dead."""

    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_initial_s: float = Field(default=1.0, gt=0, le=600)
    backoff_max_s: float = Field(default=300.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class ModelsConfig(_Strict):
    """Model versions every process uses unless a tenant's agent names its own."""

    chat: str = "gpt-4o-mini"
    embedding: str = "text-embedding-3-small"


class PromptConfig(_Strict):
    brand_voice: str = ""  # how the bot sounds: "warm, brief, no emoji"
    system_prompt: str = ""  # appended to the global system prompt


class ComplianceConfig(_Strict):
    pii_redaction: bool = True
    retention_days: int = Field(default=30, ge=1, le=3650)
    data_region: str = Field(default="eu", pattern=r"^[a-z]{2}(-[a-z0-9]+)*$")


class SessionConfig(_Strict):
    inactivity_ttl_s: int = Field(default=1800, ge=10)
    history_turns: int = Field(default=20, ge=1, le=1000)


class TenantDefaults(_Strict):
    """What a tenant inherits for every section it leaves out, field by field."""

    prompt: PromptConfig = PromptConfig()
    session: SessionConfig = SessionConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    limits: ConversationLimits = ConversationLimits()


class GlobalConfig(_Strict):
    version: int = Field(ge=1)
    models: ModelsConfig = ModelsConfig()
    defaults: TenantDefaults = TenantDefaults()
    limits: LimitsConfig = LimitsConfig()
    ordering: OrderingConfig = OrderingConfig()
    delivery: DeliveryConfig = DeliveryConfig()


class EchoAgentConfig(_Strict):
    """The built-in echo agent: replies exactly `prefix + text` after a simulated delay."""

    kind: Literal["echo"] = "echo"
    latency_ms: tuple[int, int] = (0, 0)
    prefix: str = ""
    # Chaos testing: a message containing this text kills the worker process running
    # it (SIGKILL), every time, like a turn that segfaults or runs out of memory.
    crash_marker: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _range(self) -> EchoAgentConfig:
        low, high = self.latency_ms
        if low < 0 or high < low or high > 600_000:
            raise ValueError("latency_ms must be [low, high] with 0 <= low <= high <= 600000")
        return self


ConcurrencyPolicy = Literal["queue", "interrupt", "reject", "coalesce"]


class GenericChannelConfig(_Strict):
    secret_env: ENV_NAME
    callback_url: AnyHttpUrl
    # What a message does when it arrives while a turn of its conversation runs; unset
    # means the channel's default (chat: queue, voice: interrupt).
    concurrency: ConcurrencyPolicy | None = None
    # `reject` answers this at once (the message is recorded, not run).
    busy_text: str = Field(default="Still working on your previous message.", min_length=1)
    # Send a typing indicator once a turn has run this long (none if unset), then
    # refresh it every typing_every_s until the turn ends.
    typing_after_ms: int | None = Field(default=500, ge=0)
    typing_every_s: float = Field(default=5.0, gt=0.5, le=60)


class ChannelsConfig(_Strict):
    generic: GenericChannelConfig | None = None


class WorkflowConfig(_Strict):
    """A named multi-turn task the tenant's agent may run (e.g. `book_table`)."""

    enabled: bool = True
    description: str = ""
    expires_after_s: int = Field(default=900, ge=10)


ToolName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]


class TenantConfig(_Strict):
    """One tenant's file. Sections left out (or fields left out of a section) of
    `prompt`, `session`, `compliance` and `limits` inherit global `defaults`."""

    version: int = Field(ge=1)
    agent: EchoAgentConfig = EchoAgentConfig()
    prompt: PromptConfig | None = None
    session: SessionConfig | None = None
    compliance: ComplianceConfig | None = None
    limits: ConversationLimits | None = None
    allowed_tools: tuple[ToolName, ...] = ()
    workflows: dict[str, WorkflowConfig] = Field(default_factory=dict)
    channels: ChannelsConfig = ChannelsConfig()
