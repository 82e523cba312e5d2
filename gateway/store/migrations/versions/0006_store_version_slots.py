"""The change counter without a hot row: each writing transaction bumps a slot no other writer holds (PostgreSQL).

Why: migration 0002 bumped the one row of `store_version` in every writing transaction, so that row's lock
serialised every metadata writer until it committed, and two writers that also locked each other's
phenopacket rows deadlocked. Now `store_version` holds slots: a writing transaction bumps the first slot that
no other open transaction has locked (`FOR UPDATE SKIP LOCKED`: it never waits), or adds a slot when all are
taken, and bumps once per transaction. The counter readers compare is the sum of the slots: every commit
raises it, and it becomes visible exactly with the rows (MVCC), as before. The slots number at most the
writers that were ever open at once. SQLite keeps the table unused, as before.

Revision ID: 0006_store_version_slots
Revises: 0003_fhir_resources
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006_store_version_slots"
down_revision = "0004_families"
branch_labels = None
depends_on = None

# A transaction-local setting marks a transaction that has bumped already (undone with a rolled-back savepoint).
_BUMP_ONCE = """
BEGIN
  IF current_setting('gateway.store_version_bumped', true) = 'yes' THEN
    RETURN NULL;
  END IF;
  UPDATE store_version SET version = version + 1
   WHERE id = (SELECT id FROM store_version ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED);
  IF NOT FOUND THEN
    INSERT INTO store_version (id, version) VALUES (nextval('store_version_slot'), 1);
  END IF;
  PERFORM set_config('gateway.store_version_bumped', 'yes', true);
  RETURN NULL;
END
"""

_BUMP_ONE_ROW = "BEGIN UPDATE store_version SET version = version + 1 WHERE id = 1; RETURN NULL; END"


def _replace_function(body: str) -> None:
    op.execute(
        "CREATE OR REPLACE FUNCTION gateway_bump_store_version() RETURNS trigger LANGUAGE plpgsql"
        f" SET search_path FROM CURRENT AS $${body}$$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE store_version_slot START WITH 2")  # slot 1 is the row 0002 made
    _replace_function(_BUMP_ONCE)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # One row again, holding the sum, so the counter never goes back.
    op.execute("UPDATE store_version SET version = (SELECT sum(version) FROM store_version) WHERE id = 1")
    op.execute("DELETE FROM store_version WHERE id <> 1")
    _replace_function(_BUMP_ONE_ROW)
    op.execute("DROP SEQUENCE store_version_slot")
