"""Process settings read from the environment.

Every process (web, worker, beat, CLI) reads the same variables, so many of them can
run side by side against the same services. Invalid values fail at start-up with one
message naming the variable, never later in the middle of a turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "files"

Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(RuntimeError):
    """Raised with a single readable line when the environment is not usable."""


class Settings(BaseSettings):
    """Environment of one Turnstile process.

    `redis_url` / `database_url` left unset means "use the embedded server", which only
    `turnstile dev` and the test suite start; a production process must have both.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    broker_url: str | None = Field(
        default=None,
        alias="BROKER_URL",
        description="Celery broker; defaults to REDIS_URL. Keep it separate at scale.",
    )
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    config_dir: Path = Field(default=_PACKAGED_CONFIG_DIR, alias="TURNSTILE_CONFIG_DIR")
    data_dir: Path = Field(default=Path(".turnstile"), alias="TURNSTILE_DATA_DIR")
    admin_token: str | None = Field(default=None, alias="TURNSTILE_ADMIN_TOKEN")
    http_host: str = Field(default="127.0.0.1", alias="TURNSTILE_HTTP_HOST")
    http_port: Port = Field(default=8000, alias="TURNSTILE_HTTP_PORT")
    flower_port: Port = Field(default=5555, alias="TURNSTILE_FLOWER_PORT")
    worker_metrics_port: Port | None = Field(
        default=None,
        alias="TURNSTILE_WORKER_METRICS_PORT",
        description="Serve the worker node's Prometheus metrics (all its processes) here.",
    )
    worker_concurrency: int | None = Field(
        default=None, ge=1, le=512, alias="TURNSTILE_WORKER_CONCURRENCY"
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1024, alias="TURNSTILE_MAX_BODY_BYTES")
    dev_sink: bool = Field(
        default=False,
        alias="TURNSTILE_DEV_SINK",
        description="Mount /dev/sink, a signed reply receiver for `make dev`; never in production.",
    )
    log_level: str = Field(default="INFO", alias="TURNSTILE_LOG_LEVEL")
    visibility_timeout_s: int = Field(
        default=900,
        ge=1,
        alias="TURNSTILE_VISIBILITY_TIMEOUT_S",
        description="Broker redelivery of unacked wake-ups; the same on every process.",
    )
    sweep_interval_s: float = Field(
        default=2.0,
        gt=0.1,
        le=300,
        alias="TURNSTILE_SWEEP_INTERVAL_S",
        description="How often beat looks for stalled conversations and due replies.",
    )

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        allowed = ("redis://", "rediss://", "unix://", "amqp://", "amqps://", "sentinel://")
        if value is not None and not value.startswith(allowed):
            raise ValueError(f"must start with one of {', '.join(allowed)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @property
    def effective_broker_url(self) -> str | None:
        return self.broker_url or self.redis_url

    def require_services(self) -> tuple[str, str, str]:
        """(redis, broker, database) URLs, or SettingsError naming what is missing."""
        missing = [
            name
            for name, value in (("REDIS_URL", self.redis_url), ("DATABASE_URL", self.database_url))
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} not set: run under `turnstile dev` (embedded services) "
                "or point them at your Redis and PostgreSQL"
            )
        assert self.redis_url is not None
        assert self.database_url is not None
        return self.redis_url, self.effective_broker_url or self.redis_url, self.database_url


def load_settings() -> Settings:
    """Read the environment once; a bad value becomes one clear SettingsError."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise SettingsError(f"invalid environment: {problems}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    info = Settings.model_fields.get(field)
    return (info.alias if info and info.alias else field).upper()
