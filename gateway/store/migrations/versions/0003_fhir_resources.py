"""FHIR resources as received: the source of truth of the phenopackets the REST surface builds.

Revision ID: 0003_fhir_resources
Revises: 0002_store_version
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_fhir_resources"
down_revision = "0002_store_version"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_document = sa.JSON().with_variant(JSONB(), "postgresql")
_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("pk", _key, primary_key=True, autoincrement=True),
        sa.Column(
            "dataset_id",
            sa.String(255),
            sa.ForeignKey("datasets.id", name="fk_fhir_resources_dataset", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("full_url", sa.String(1024), nullable=True),
        sa.Column("patient_ref", sa.String(1024), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("subject_id", sa.String(255), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("resource", _document, nullable=False),
        sa.Column("received_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.UniqueConstraint("dataset_id", "resource_type", "resource_id", name="uq_fhir_resources_identity"),
    )
    op.create_index("ix_fhir_resources_patient", "fhir_resources", ["dataset_id", "patient_id"])
    op.create_index("ix_fhir_resources_subject", "fhir_resources", ["subject_id"])


def downgrade() -> None:
    op.drop_table("fhir_resources")
