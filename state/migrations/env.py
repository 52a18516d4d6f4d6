"""Alembic environment: the URL comes from the caller (`turnstile migrate`), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from state.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("state.migrate.upgrade() sets sqlalchemy.url; run `turnstile migrate`")

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
