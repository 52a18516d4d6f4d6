from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings


def test_broker_defaults_to_the_state_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.delenv("BROKER_URL", raising=False)
    assert load_settings().effective_broker_url == "redis://cache:6379/0"
    monkeypatch.setenv("BROKER_URL", "amqp://rabbit//")
    assert load_settings().effective_broker_url == "amqp://rabbit//"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "http://nope"),
        ("DATABASE_URL", "mysql://x"),
        ("TURNSTILE_HTTP_PORT", "70000"),
        ("TURNSTILE_MAX_BODY_BYTES", "ten"),
        ("TURNSTILE_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_missing_services_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="REDIS_URL and DATABASE_URL"):
        load_settings().require_services()
