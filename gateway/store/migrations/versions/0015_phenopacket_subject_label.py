"""The pseudonym of the subject label a submitted phenopacket gave: a later document under the same id about
another person is refused rather than taken as an update.

Why: a submitted phenopacket's identity in its dataset is its document `id` (collections reuse `subject.id`s such
as "proband" for different people), and its subject pseudonym is derived from that id, so the stored document no
longer says which label the sender gave its subject. Two requests with one generic id ("example-1") about two
different people made the second an update: the first person's record replaced, "(updated)" the only sign. The
keyed pseudonym of the label (never the label) is kept beside the row; NULL for rows made from FHIR and for rows
stored before this migration (no check for them). Key rotation carries it one step like every pseudonym.

Revision ID: 0015_phenopacket_subject_label
Revises: 0014_fhir_deleted
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_phenopacket_subject_label"
down_revision = "0014_fhir_deleted"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both: a batch ("move and copy") would rebuild the SQLite table without the change-log
# triggers of migration 0008.
def upgrade() -> None:
    op.add_column("phenopackets", sa.Column("subject_label", sa.String(64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE phenopackets DROP COLUMN subject_label")  # SQLite >= 3.35 and PostgreSQL
