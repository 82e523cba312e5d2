"""An index on phenopackets.updated_at: what the Beacon term index reads to patch itself after writes.

Why: a node keeps ingesting while it is queried. The in-memory term index (gateway.beacon.term_index) is
patched after each write with the rows changed since its snapshot, found by `updated_at` in a window; without
this index that read scans the whole table (every document) on each write, and so would its check of the
store's count and sums of pks and revisions.

Revision ID: 0007_phenopackets_updated_at
Revises: 0006_store_version_slots
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007_phenopackets_updated_at"
down_revision = "0006_store_version_slots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # revision and pk too: the patch's count and sums are then read from this index alone
    op.create_index("ix_phenopackets_updated_at", "phenopackets", ["updated_at", "revision", "pk"])


def downgrade() -> None:
    op.drop_index("ix_phenopackets_updated_at", table_name="phenopackets")
