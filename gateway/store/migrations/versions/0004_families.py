"""Families: the relatives and pedigree around a stored phenopacket (its proband).

One row per proband phenopacket, removed with it (ON DELETE CASCADE: erasure, dataset withdrawal,
a Patient deleted). The proband itself is not repeated: it is the phenopacket row, read together.

Revision ID: 0004_families
Revises: 0003_fhir_resources
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_families"
down_revision = "0003_fhir_resources"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_document = sa.JSON().with_variant(JSONB(), "postgresql")
_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "phenopacket_families",
        sa.Column(
            "phenopacket_pk",
            _key,
            sa.ForeignKey("phenopackets.pk", name="fk_families_phenopacket", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("dataset_id", sa.String(255), nullable=False),
        sa.Column("relatives", sa.Integer(), nullable=False),
        sa.Column("document", _document, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
    )
    op.create_index("ix_phenopacket_families_id", "phenopacket_families", ["id"])


def downgrade() -> None:
    op.drop_table("phenopacket_families")
