"""Alembic environment: always run from gateway.store.migrate with a live connection."""

from __future__ import annotations

from alembic import context

from gateway.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations with gateway.store.migrate.upgrade(engine), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, compare_type=True, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
