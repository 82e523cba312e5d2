"""Drop the index on phenopackets.updated_at (migration 0007): nothing reads through it since the change log.

Why: the Beacon term index patched itself from an `updated_at` window (0007); it reads the change log now
(0008), and no query filters or orders phenopackets by `updated_at`. The index was still maintained by every
insert and replacement (three columns, one entry per row): write cost for nothing.

Revision ID: 0011_drop_updated_at_index
Revises: 0010_erasure_purges
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0011_drop_updated_at_index"
down_revision = "0010_erasure_purges"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_phenopackets_updated_at", table_name="phenopackets")


def downgrade() -> None:
    op.create_index("ix_phenopackets_updated_at", "phenopackets", ["updated_at", "revision", "pk"])
