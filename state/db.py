"""PostgreSQL engine construction. One engine per process, built by bootstrap()."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


def sqlalchemy_url(database_url: str) -> str:
    """Accept plain `postgresql://` URLs and select the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def single_statements(engine: Engine) -> Engine:
    """The same pool in autocommit: for operations that are one statement, which are
    atomic anyway, so they skip the BEGIN and COMMIT round trips (over half of the
    statements of a turn otherwise)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_db_engine(database_url: str, *, pool_size: int = 5) -> Engine:
    """A pooled engine.

    No pre-ping: it would cost a round trip on every checkout, several per turn. After
    a PostgreSQL restart the first statement on a dead connection fails, SQLAlchemy then
    invalidates the whole pool, and the failed turn is retried (its message is still
    pending) or the webhook answers 503 and the platform retries.
    """
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
    )
