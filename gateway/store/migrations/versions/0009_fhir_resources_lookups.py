"""Indexes that let a FHIR write read only the rows it needs, whatever the size of its dataset.

Why: a write read every resource of its dataset that belongs to no patient (to resolve its patient's references
against them) and walked every row without a patient for the oldest pending time: ≈6 ms per write at 8,300
rows, growing with the dataset. Now it reads the patient-less rows its references can name, by the keys a
reference is resolved by (translators.fhir.references.BundleIndex): the fullUrl (indexed), the `Type/id` tail
of an absolute fullUrl (`full_url_tail`, kept beside it: indexed), the resource's type and id (the identity
index). The pending rows (a patient reference, no patient yet) get a partial index ordered by `updated_at`:
the oldest pending time is its first entry.

Revision ID: 0009_fhir_resources_lookups
Revises: 0008_phenopacket_changes
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0009_fhir_resources_lookups"
down_revision = "0008_phenopacket_changes"
branch_labels = None
depends_on = None

# Frozen copy of translators.fhir.references.TYPE_ID_TAIL (a migration must not change when that does).
_TYPE_ID_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_PENDING = "patient_ref IS NOT NULL AND patient_id IS NULL"  # a Patient row never has a patient_ref


def _tail(full_url: str) -> str | None:
    found = _TYPE_ID_TAIL.search(full_url)
    return found.group(1) if found and not full_url.startswith("urn:") else None


def upgrade() -> None:
    op.add_column("fhir_resources", sa.Column("full_url_tail", sa.String(1024), nullable=True))
    table = sa.table("fhir_resources", sa.column("pk"), sa.column("full_url"), sa.column("full_url_tail"))
    connection = op.get_bind()
    found = connection.execute(sa.select(table.c.pk, table.c.full_url).where(table.c.full_url.is_not(None))).all()
    for pk, full_url in found:
        tail = _tail(full_url)
        if tail is not None:
            connection.execute(sa.update(table).where(table.c.pk == pk).values(full_url_tail=tail))
    op.create_index("ix_fhir_resources_full_url", "fhir_resources", ["dataset_id", "full_url"])
    op.create_index("ix_fhir_resources_full_url_tail", "fhir_resources", ["dataset_id", "full_url_tail"])
    op.create_index(
        "ix_fhir_resources_pending",
        "fhir_resources",
        ["dataset_id", "updated_at"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_fhir_resources_pending", table_name="fhir_resources")
    op.drop_index("ix_fhir_resources_full_url_tail", table_name="fhir_resources")
    op.drop_index("ix_fhir_resources_full_url", table_name="fhir_resources")
    with op.batch_alter_table("fhir_resources") as batch:
        batch.drop_column("full_url_tail")
