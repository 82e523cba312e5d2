"""What the FHIR REST API deleted: a tombstone per resource (its last version), so that a read answers 410 Gone
and the same id created again continues the versions.

Why: a DELETE removed the row and every trace of it. A read then answered 404 (FHIR http.html#read: 410 for a
deleted resource), and a resource created again under the same id restarted at version 1, so a client's stale
`If-Match: W/"1"` from before the delete matched the new incarnation (a lost update FHIR's versioning exists to
prevent; HAPI continues the versions). A tombstone holds the identity, the last version and the subject
pseudonym of the person it was about (when known): an erasure removes the person's tombstones with their rows,
and none is written for an erasure or an expired pending resource.

Revision ID: 0014_fhir_deleted
Revises: 0013_fhir_identifiers
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_fhir_deleted"
down_revision = "0013_fhir_identifiers"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fhir_deleted",
        sa.Column(
            "dataset_id",
            sa.String(255),
            sa.ForeignKey("datasets.id", name="fk_fhir_deleted_dataset", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=True),
        sa.Column("deleted_at", _time, nullable=False),
    )
    op.create_index("ix_fhir_deleted_subject", "fhir_deleted", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_fhir_deleted_subject", table_name="fhir_deleted")
    op.drop_table("fhir_deleted")
