"""Alembic environment: runs on the connection handed in by `bot.storage.migrate`."""

from __future__ import annotations

from alembic import context

from bot.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `balance-bot migrate` drives Alembic
    raise RuntimeError("run migrations with `balance-bot migrate`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
