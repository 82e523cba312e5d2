"""Initial metadata schema: datasets, phenopackets, their index terms and biosamples.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_document = sa.JSON().with_variant(JSONB(), "postgresql")
_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(1024), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
    )
    op.create_table(
        "phenopackets",
        sa.Column("pk", _key, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column(
            "dataset_id",
            sa.String(255),
            sa.ForeignKey("datasets.id", name="fk_phenopackets_dataset", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("sex", sa.String(32), nullable=True),
        sa.Column("age_iso", sa.String(64), nullable=True),
        sa.Column("age_days", sa.Float(), nullable=True),
        sa.Column("vital_status", sa.String(32), nullable=True),
        sa.Column("document", _document, nullable=False),
        sa.Column("source", sa.String(1024), nullable=False, server_default=""),
        sa.Column("issues", _document, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.UniqueConstraint("id", name="uq_phenopackets_id"),
        sa.UniqueConstraint("dataset_id", "subject_id", name="uq_phenopackets_dataset_subject"),
    )
    op.create_index("ix_phenopackets_subject", "phenopackets", ["subject_id"])
    op.create_index("ix_phenopackets_dataset_sex", "phenopackets", ["dataset_id", "sex"])
    op.create_index("ix_phenopackets_dataset_age", "phenopackets", ["dataset_id", "age_days"])
    op.create_table(
        "phenopacket_terms",
        sa.Column(
            "phenopacket_pk",
            _key,
            sa.ForeignKey("phenopackets.pk", name="fk_terms_phenopacket", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dataset_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("term", sa.String(255), nullable=False),
        sa.Column("label", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("phenopacket_pk", "kind", "term", name="pk_phenopacket_terms"),
    )
    op.create_index("ix_terms_lookup", "phenopacket_terms", ["kind", "term", "dataset_id", "phenopacket_pk"])
    op.create_table(
        "biosamples",
        sa.Column(
            "phenopacket_pk",
            _key,
            sa.ForeignKey("phenopackets.pk", name="fk_biosamples_phenopacket", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("biosample_id", sa.String(255), nullable=False),
        sa.Column("dataset_id", sa.String(255), nullable=False),
        sa.Column("sampled_tissue", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("phenopacket_pk", "biosample_id", name="pk_biosamples"),
    )
    op.create_index("ix_biosamples_dataset_biosample", "biosamples", ["dataset_id", "biosample_id"])


def downgrade() -> None:
    op.drop_table("biosamples")
    op.drop_table("phenopacket_terms")
    op.drop_table("phenopackets")
    op.drop_table("datasets")
