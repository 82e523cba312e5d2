"""Durable jobs for the second phase of an erasure: purging the old copies of the deleted rows.

Why: an erasure removes the person from every answer in its own transaction, but the bytes of the deleted rows
stay where the database keeps old pages (PostgreSQL dead tuples and index entries until VACUUM, SQLite's WAL until
a checkpoint). That purge costs a scan of the personal tables' indexes, growing with the cohort (seconds at a
million patients), and must not run inside the request. The erasure's transaction inserts a row here; a worker
thread (or `gateway erasure purge`) claims the due rows, runs one purge for all of them, and marks them done, or
leaves them pending with the error and a later `not_before` (retried). The row names the erasure only by its keyed
reference, as the audit log does.

Revision ID: 0010_erasure_purges
Revises: 0009_fhir_resources_lookups
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_erasure_purges"
down_revision = "0009_fhir_resources_lookups"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erasure_purges",
        sa.Column("id", _key, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.Column("not_before", _time, nullable=True),
        sa.Column("done_at", _time, nullable=True),
    )
    op.create_index("ix_erasure_purges_due", "erasure_purges", ["status", "not_before"])


def downgrade() -> None:
    op.drop_index("ix_erasure_purges_due", table_name="erasure_purges")
    op.drop_table("erasure_purges")
