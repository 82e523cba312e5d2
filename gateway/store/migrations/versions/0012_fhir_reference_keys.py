"""The kept FHIR resources' references by key, indexed: a write of a patient-less resource finds its referrers by
index.

Why: writing a resource that belongs to no patient (a Medication, a Specimen without subject) must rebuild the
phenopackets of the patients whose resources reference it; they were found by a LIKE over the text of every row of
the dataset, so a write cost more the larger its dataset. Now each row keeps the keys its references may name a
target by (`reference_keys`, a JSON list: a reference as written and without `/_history/`; `Type?` for a
conditional one; none for references to a Patient, never looked up so), and `fhir_resource_references` holds them
one per row, indexed by (dataset, key). Triggers keep that table from the column on insert and on an update that
changes it (the application writes only the column, in the statement that writes the row: no extra round trip);
a deleted row's keys go with it (ON DELETE CASCADE). Existing rows are back-filled.

SQLite: a later migration that rebuilds `fhir_resources` (batch_alter_table) drops its triggers and must create
them again (`create_triggers`).

Revision ID: 0012_fhir_reference_keys
Revises: 0011_drop_updated_at_index
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012_fhir_reference_keys"
down_revision = "0011_drop_updated_at_index"
branch_labels = None
depends_on = None

BATCH = 1000
_MAX_KEY = 1024  # a longer reference names no kept resource (fullUrl and Type/id are at most this long)

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER fhir_resource_references_insert AFTER INSERT ON fhir_resources
    WHEN NEW.reference_keys IS NOT NULL
    BEGIN
        INSERT OR IGNORE INTO fhir_resource_references (resource_pk, ref_key, dataset_id)
        SELECT NEW.pk, value, NEW.dataset_id FROM json_each(NEW.reference_keys);
    END""",
    """CREATE TRIGGER fhir_resource_references_update AFTER UPDATE OF reference_keys ON fhir_resources
    WHEN OLD.reference_keys IS NOT NEW.reference_keys
    BEGIN
        DELETE FROM fhir_resource_references WHERE resource_pk = OLD.pk;
        INSERT OR IGNORE INTO fhir_resource_references (resource_pk, ref_key, dataset_id)
        SELECT NEW.pk, value, NEW.dataset_id FROM json_each(coalesce(NEW.reference_keys, '[]'));
    END""",
)
_POSTGRESQL_TRIGGERS = (
    """CREATE FUNCTION fhir_resource_references_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM fhir_resource_references WHERE resource_pk = OLD.pk;
        END IF;
        INSERT INTO fhir_resource_references (resource_pk, ref_key, dataset_id)
        SELECT NEW.pk, k.value, NEW.dataset_id
        FROM json_array_elements_text(coalesce(NEW.reference_keys, '[]')::json) AS k(value)
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER fhir_resource_references_insert AFTER INSERT ON fhir_resources
    FOR EACH ROW WHEN (NEW.reference_keys IS NOT NULL) EXECUTE FUNCTION fhir_resource_references_sync()""",
    """CREATE TRIGGER fhir_resource_references_update AFTER UPDATE OF reference_keys ON fhir_resources
    FOR EACH ROW WHEN (OLD.reference_keys IS DISTINCT FROM NEW.reference_keys)
    EXECUTE FUNCTION fhir_resource_references_sync()""",
)


def create_triggers(connection: sa.Connection) -> None:
    for statement in _POSTGRESQL_TRIGGERS if connection.dialect.name == "postgresql" else _SQLITE_TRIGGERS:
        connection.exec_driver_sql(statement)


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            found
            for name, value in node.items()
            for found in ([value] if name == "reference" and isinstance(value, str) else _references(value))
        ]
    if isinstance(node, list):
        return [found for value in node for found in _references(value)]
    return []


def reference_keys(resource: Any) -> str | None:
    """Frozen copy of gateway.services.fhir_resources.reference_keys (a migration must not change when it does)."""
    keys: set[str] = set()
    for reference in _references(resource):
        if not reference or reference.startswith("#"):
            continue
        if "?" in reference:
            wanted = reference.partition("?")[0]
            if wanted != "Patient":
                keys.add(wanted + "?")
            continue
        versionless = reference.split("/_history/", 1)[0]
        if versionless.rsplit("/", 2)[-2:-1] == ["Patient"]:
            continue
        keys.update(key for key in (reference, versionless) if len(key) <= _MAX_KEY)
    return json.dumps(sorted(keys)) if keys else None


def upgrade() -> None:
    op.add_column("fhir_resources", sa.Column("reference_keys", sa.Text(), nullable=True))
    op.create_table(
        "fhir_resource_references",
        sa.Column(
            "resource_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("fhir_resources.pk", name="fk_fhir_resource_references_resource", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ref_key", sa.String(1024), primary_key=True),
        sa.Column("dataset_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_fhir_resource_references_key", "fhir_resource_references", ["dataset_id", "ref_key"])
    connection = op.get_bind()
    create_triggers(connection)
    table = sa.table("fhir_resources", sa.column("pk"), sa.column("resource", sa.JSON()), sa.column("reference_keys"))
    last = 0
    while True:  # batches by primary key: a large table is never held in memory at once
        found = connection.execute(
            sa.select(table.c.pk, table.c.resource).where(table.c.pk > last).order_by(table.c.pk).limit(BATCH)
        ).all()
        if not found:
            break
        for pk, resource in found:
            keys = reference_keys(resource)
            if keys is not None:  # the update trigger fills fhir_resource_references
                connection.execute(sa.update(table).where(table.c.pk == pk).values(reference_keys=keys))
        last = found[-1][0]


def downgrade() -> None:
    connection = op.get_bind()
    for name in ("fhir_resource_references_insert", "fhir_resource_references_update"):
        on = " ON fhir_resources" if connection.dialect.name == "postgresql" else ""
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS fhir_resource_references_sync()")
    op.drop_index("ix_fhir_resource_references_key", table_name="fhir_resource_references")
    op.drop_table("fhir_resource_references")
    with op.batch_alter_table("fhir_resources") as batch:
        batch.drop_column("reference_keys")
