"""A change counter for the phenopacket tables, bumped in the writing transaction (PostgreSQL).

Why: per-process caches of the store (the in-memory term index, the set of present terms) need a
cheap "has anything changed since I read it?" that every process sees. SQLite has
`PRAGMA data_version`; on PostgreSQL a statement-level trigger on `phenopackets` and
`phenopacket_terms` bumps the one row of `store_version` inside the writing transaction, so the new
value becomes visible exactly when the rows do (a sequence would not: `nextval` is seen before the
commit), and every write is counted, whichever process or tool makes it. On SQLite the table is made
for a uniform schema but left unused.

Revision ID: 0002_store_version
Revises: 0001_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_store_version"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_WATCHED = ("phenopackets", "phenopacket_terms")


def upgrade() -> None:
    op.create_table(
        "store_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO store_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION gateway_bump_store_version() RETURNS trigger LANGUAGE plpgsql"
        # Pinned to the migration's schema: writers with another search_path still bump this store's row.
        " SET search_path FROM CURRENT AS $$"
        " BEGIN UPDATE store_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$"
    )
    for table in _WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_bump_store_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION gateway_bump_store_version()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER {table}_bump_store_version ON {table}")
        op.execute("DROP FUNCTION gateway_bump_store_version()")
    op.drop_table("store_version")
