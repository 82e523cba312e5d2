"""Alembic migrations of the metadata store, applied programmatically (see gateway.store.migrate)."""
