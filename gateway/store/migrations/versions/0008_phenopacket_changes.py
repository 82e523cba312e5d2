"""A change log of phenopacket rows: what the Beacon term index reads to patch itself after writes.

Why: a node keeps ingesting while it is queried, and every write makes each worker's in-memory term index
(gateway.beacon.term_index) stale. Patching it from an `updated_at` window (migration 0007) needed a check of the
whole table (count and sums of pks and revisions) on each patch: O(rows), 30-56 ms at 100,000 individuals. Here
triggers add one row per phenopacket inserted, replaced or deleted to `phenopacket_changes`, in the writing
transaction, whichever code or tool writes; a patch reads the log rows it has not seen and the phenopackets they
name: O(changes). Term rows change only with their phenopacket row (the store raises `revision`), so the log
watches `phenopackets` alone.

Which log rows a reader has not seen:
- SQLite has one writer at a time, so `seq` (AUTOINCREMENT: never reused) is commit order: a reader keeps the
  highest `seq` it read.
- PostgreSQL's `seq` is drawn before commit and transactions commit out of that order, so `seq` cannot be a
  high-water mark. Each row carries its writing transaction's id (`xid`), and a reader keeps the MVCC snapshot it
  read at (pg_current_snapshot()); the rows it has not seen are exactly those whose transaction that snapshot
  does not see (`pg_visible_in_snapshot`), all at `xid >= pg_snapshot_xmin` (indexed). No lock is shared by the
  writers (migration 0006 took care to have none).

Bounded: every `prune_every`-th log row, the writing transaction deletes the rows older than the last
`keep_entries` and records in `phenopacket_changes_horizon` the highest `seq` and `xid` it deleted, and counts the
prune. A reader whose mark may miss a deleted row reads every row's version instead (one full comparison, then
patches from the log again): on SQLite when its `seq` is below the pruned one; on PostgreSQL when a prune was
committed since its snapshot and the highest pruned `xid` is not below that snapshot's xmin (conservative: a
long-running write transaction anywhere in the cluster holds xmin down). TRUNCATE of phenopackets counts as a
prune past everything.

Revision ID: 0008_phenopacket_changes
Revises: 0007_phenopackets_updated_at
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_phenopacket_changes"
down_revision = "0007_phenopackets_updated_at"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration must not change when tables.py does).
_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

KEEP_ENTRIES = 100_000  # about a minute of a bulk load, hours of steady ingest
PRUNE_EVERY = 1024

# The transaction id as a bigint (xid8 has no portable column type; 64 bits, never wraps).
_PG_XID = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"

# PostgreSQL: statement triggers with transition tables (one set-based insert per statement, not one per row).
_PG_LOG = f"""
DECLARE
  hi bigint;
  n bigint;
  h record;
  gone_seq bigint;
  gone_xid bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN
    WITH added AS (
      INSERT INTO phenopacket_changes (phenopacket_pk, xid) SELECT pk, {_PG_XID} FROM old_rows RETURNING seq
    ) SELECT max(seq), count(*) INTO hi, n FROM added;
  ELSE
    WITH added AS (
      INSERT INTO phenopacket_changes (phenopacket_pk, xid) SELECT pk, {_PG_XID} FROM new_rows RETURNING seq
    ) SELECT max(seq), count(*) INTO hi, n FROM added;
  END IF;
  IF n = 0 THEN
    RETURN NULL;
  END IF;
  SELECT keep_entries, prune_every INTO h FROM phenopacket_changes_horizon WHERE id = 1;
  IF hi / h.prune_every = (hi - n) / h.prune_every THEN
    RETURN NULL;
  END IF;
  -- Only committed rows are deleted (MVCC): a row of a transaction still open stays until a later prune.
  WITH gone AS (
    DELETE FROM phenopacket_changes WHERE seq <= hi - h.keep_entries RETURNING seq, xid
  ) SELECT max(seq), max(xid) INTO gone_seq, gone_xid FROM gone;
  IF gone_seq IS NOT NULL THEN
    UPDATE phenopacket_changes_horizon
       SET pruned_seq = greatest(pruned_seq, gone_seq), pruned_xid = greatest(pruned_xid, gone_xid),
           prunes = prunes + 1
     WHERE id = 1;
  END IF;
  RETURN NULL;
END
"""

_PG_TRUNCATE = f"""
BEGIN
  UPDATE phenopacket_changes_horizon SET pruned_xid = greatest(pruned_xid, {_PG_XID}), prunes = prunes + 1
   WHERE id = 1;
  RETURN NULL;
END
"""

_PG_TRIGGERS = {
    "phenopackets_log_insert": "AFTER INSERT ON phenopackets REFERENCING NEW TABLE AS new_rows",
    "phenopackets_log_update": "AFTER UPDATE ON phenopackets REFERENCING NEW TABLE AS new_rows",
    "phenopackets_log_delete": "AFTER DELETE ON phenopackets REFERENCING OLD TABLE AS old_rows",
}

# SQLite: row triggers (cheap there); a delete of the whole table still deletes row by row when triggers exist.
_SQLITE_TRIGGERS = {
    "phenopackets_log_insert": "AFTER INSERT ON phenopackets BEGIN"
    " INSERT INTO phenopacket_changes (phenopacket_pk) VALUES (NEW.pk); END",
    "phenopackets_log_update": "AFTER UPDATE ON phenopackets BEGIN"
    " INSERT INTO phenopacket_changes (phenopacket_pk) VALUES (NEW.pk); END",
    "phenopackets_log_delete": "AFTER DELETE ON phenopackets BEGIN"
    " INSERT INTO phenopacket_changes (phenopacket_pk) VALUES (OLD.pk); END",
    # One writer at a time: every row up to NEW.seq - keep_entries is committed and goes.
    "phenopacket_changes_prune": "AFTER INSERT ON phenopacket_changes"
    " WHEN NEW.seq % (SELECT prune_every FROM phenopacket_changes_horizon WHERE id = 1) = 0 BEGIN"
    " UPDATE phenopacket_changes_horizon SET pruned_seq = max(pruned_seq, NEW.seq - keep_entries), prunes = prunes + 1"
    " WHERE id = 1"
    " AND NEW.seq - keep_entries > 0;"
    " DELETE FROM phenopacket_changes"
    " WHERE seq <= NEW.seq - (SELECT keep_entries FROM phenopacket_changes_horizon WHERE id = 1); END",
}


def upgrade() -> None:
    op.create_table(
        "phenopacket_changes",
        sa.Column("seq", _key, primary_key=True, autoincrement=True),
        sa.Column("phenopacket_pk", _key, nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=True),  # PostgreSQL: the writing transaction; SQLite: unused
        sqlite_autoincrement=True,
    )
    op.create_index("ix_phenopacket_changes_xid", "phenopacket_changes", ["xid", "phenopacket_pk"])
    op.create_table(
        "phenopacket_changes_horizon",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("pruned_seq", sa.BigInteger(), nullable=False),
        sa.Column("pruned_xid", sa.BigInteger(), nullable=False),
        sa.Column("keep_entries", sa.BigInteger(), nullable=False),
        sa.Column("prune_every", sa.BigInteger(), nullable=False),
        sa.Column("prunes", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO phenopacket_changes_horizon (id, pruned_seq, pruned_xid, keep_entries, prune_every, prunes)"
        f" VALUES (1, 0, 0, {KEEP_ENTRIES}, {PRUNE_EVERY}, 0)"
    )
    # Rows written before the log existed were never logged: readers start from a full read (their mark is None).
    if op.get_bind().dialect.name != "postgresql":
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
        return
    for name, body in (
        ("gateway_log_phenopacket_changes", _PG_LOG),
        ("gateway_log_phenopackets_truncate", _PG_TRUNCATE),
    ):
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $${body}$$"
        )
    for name, event in _PG_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {event} FOR EACH STATEMENT EXECUTE FUNCTION gateway_log_phenopacket_changes()"
        )
    op.execute(
        "CREATE TRIGGER phenopackets_log_truncate AFTER TRUNCATE ON phenopackets"
        " FOR EACH STATEMENT EXECUTE FUNCTION gateway_log_phenopackets_truncate()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in (*_PG_TRIGGERS, "phenopackets_log_truncate"):
            op.execute(f"DROP TRIGGER {name} ON phenopackets")
        op.execute("DROP FUNCTION gateway_log_phenopacket_changes()")
        op.execute("DROP FUNCTION gateway_log_phenopackets_truncate()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("phenopacket_changes_horizon")
    op.drop_index("ix_phenopacket_changes_xid", table_name="phenopacket_changes")
    op.drop_table("phenopacket_changes")
