from __future__ import annotations

from config.effective import effective_config
from config.schema import GlobalConfig, TenantConfig

GLOBAL = GlobalConfig.model_validate(
    {
        "version": 4,
        "defaults": {
            "prompt": {"brand_voice": "neutral", "system_prompt": "Be safe."},
            "session": {"inactivity_ttl_s": 600, "history_turns": 10},
            "compliance": {"retention_days": 30, "data_region": "eu"},
        },
    }
)


def test_sections_left_out_inherit_global_defaults() -> None:
    config = effective_config("acme", TenantConfig.model_validate({"version": 2}), GLOBAL)
    assert (config.tenant_version, config.global_version) == (2, 4)
    assert config.prompt.brand_voice == "neutral"
    assert config.session.history_turns == 10
    assert config.compliance.data_region == "eu"


def test_fields_set_override_field_by_field() -> None:
    tenant = TenantConfig.model_validate(
        {
            "version": 1,
            "prompt": {"brand_voice": "playful"},
            "session": {"history_turns": 3},
            "compliance": {"data_region": "us-east"},
        }
    )
    config = effective_config("acme", tenant, GLOBAL)
    assert config.prompt.brand_voice == "playful"
    assert config.prompt.system_prompt == "Be safe."  # not set by the tenant: inherited
    assert (config.session.history_turns, config.session.inactivity_ttl_s) == (3, 600)
    assert (config.compliance.data_region, config.compliance.retention_days) == ("us-east", 30)


def test_conversation_limits_are_inherited_and_overridable() -> None:
    inherited = effective_config("a", TenantConfig.model_validate({"version": 1}), GLOBAL)
    own = effective_config(
        "b",
        TenantConfig.model_validate({"version": 1, "limits": {"max_inbox_per_conversation": 5}}),
        GLOBAL,
    )
    assert inherited.limits.max_inbox_per_conversation == 1000
    assert (own.limits.max_inbox_per_conversation, own.limits.retry_after_s) == (5, 2)
