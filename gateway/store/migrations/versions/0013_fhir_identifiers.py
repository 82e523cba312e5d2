"""The kept FHIR resources' identifiers, indexed: a conditional reference, create, update or delete finds its
match by index.

Why: `Patient?identifier=…` (a conditional patient reference in a resource, `If-None-Exist`, `PUT` or `DELETE
Patient?identifier=…`) read every Patient of the dataset with its content and matched them in memory, and other
types were text-searched (`LIKE` over the JSON): a hospital that upserts its patients by MRN paid for the whole
dataset on every write (62 ms at 1,000 Patients, 150 ms at 4,000). `fhir_identifiers` holds each identifier of a
kept resource (its system, '' for none, and its value as kept: a Patient's as its pseudonym), indexed by (dataset,
type, value, system) and (dataset, type, system). Triggers fill it from the resource itself on insert and on an update of
it (no statement of the application's), and a deleted row's identifiers go with it (ON DELETE CASCADE); so every
path that writes a resource — a key rotation, a restatement — keeps it. Existing rows are back-filled.

Also `ix_fhir_resources_subject_of` (subject, dataset, type), in place of the subject alone: every Patient write asks which Patients already have
its subject, and SQLite's planner read all the dataset's Patients through the identity index for it (8 ms per
Patient write at 16,000 Patients).

SQLite: a later migration that rebuilds `fhir_resources` (batch_alter_table) drops its triggers and must create
them again (`create_triggers`), as for 0012's.

Revision ID: 0013_fhir_identifiers
Revises: 0012_fhir_reference_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_fhir_identifiers"
down_revision = "0012_fhir_reference_keys"
branch_labels = None
depends_on = None

# An identifier's system and value as the index holds them (longer ones are not indexed: no search names them).
_SQLITE_ROWS = """
    SELECT {pk}, {dataset}, {kind}, coalesce(json_extract(i.value, '$.system'), ''), json_extract(i.value, '$.value')
    FROM json_each({resource}, '$.identifier') AS i
    WHERE i.type = 'object' AND json_type(i.value, '$.value') = 'text'
      AND length(json_extract(i.value, '$.value')) BETWEEN 1 AND 1024
      AND coalesce(json_type(i.value, '$.system'), 'text') = 'text'
      AND length(coalesce(json_extract(i.value, '$.system'), '')) <= 1024"""
_POSTGRESQL_ROWS = """
    SELECT {pk}, {dataset}, {kind}, coalesce(i ->> 'system', ''), i ->> 'value'
    FROM json_array_elements(CASE WHEN json_typeof({resource}::json -> 'identifier') = 'array'
                                  THEN {resource}::json -> 'identifier' ELSE '[]'::json END) AS i
    WHERE json_typeof(i) = 'object' AND json_typeof(i -> 'value') = 'string'
      AND length(i ->> 'value') BETWEEN 1 AND 1024
      AND coalesce(json_typeof(i -> 'system'), 'string') = 'string'
      AND length(coalesce(i ->> 'system', '')) <= 1024"""
_INSERT = "INSERT INTO fhir_identifiers (resource_pk, dataset_id, resource_type, system, value)"

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER fhir_identifiers_insert AFTER INSERT ON fhir_resources
    BEGIN
        {_INSERT} {_SQLITE_ROWS.format(pk="NEW.pk", dataset="NEW.dataset_id", kind="NEW.resource_type",
                                      resource="NEW.resource")}
        ON CONFLICT DO NOTHING;
    END""",
    f"""CREATE TRIGGER fhir_identifiers_update AFTER UPDATE OF resource ON fhir_resources
    BEGIN
        DELETE FROM fhir_identifiers WHERE resource_pk = OLD.pk;
        {_INSERT} {_SQLITE_ROWS.format(pk="NEW.pk", dataset="NEW.dataset_id", kind="NEW.resource_type",
                                      resource="NEW.resource")}
        ON CONFLICT DO NOTHING;
    END""",
)
_POSTGRESQL_TRIGGERS = (
    f"""CREATE FUNCTION fhir_identifiers_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM fhir_identifiers WHERE resource_pk = OLD.pk;
        END IF;
        {_INSERT} {_POSTGRESQL_ROWS.format(pk="NEW.pk", dataset="NEW.dataset_id", kind="NEW.resource_type",
                                          resource="NEW.resource")}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER fhir_identifiers_insert AFTER INSERT ON fhir_resources
    FOR EACH ROW EXECUTE FUNCTION fhir_identifiers_sync()""",
    """CREATE TRIGGER fhir_identifiers_update AFTER UPDATE OF resource ON fhir_resources
    FOR EACH ROW EXECUTE FUNCTION fhir_identifiers_sync()""",
)


def create_triggers(connection: sa.Connection) -> None:
    for statement in _POSTGRESQL_TRIGGERS if connection.dialect.name == "postgresql" else _SQLITE_TRIGGERS:
        connection.exec_driver_sql(statement)


def upgrade() -> None:
    op.create_table(
        "fhir_identifiers",
        sa.Column(
            "resource_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("fhir_resources.pk", name="fk_fhir_identifiers_resource", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("system", sa.String(1024), primary_key=True),
        sa.Column("value", sa.String(1024), primary_key=True),
        sa.Column("dataset_id", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
    )
    # value before system: a token with both is a lookup of one entry (a system alone is the other index's)
    op.create_index("ix_fhir_identifiers_value", "fhir_identifiers", ["dataset_id", "resource_type", "value", "system"])
    op.create_index("ix_fhir_identifiers_system", "fhir_identifiers", ["dataset_id", "resource_type", "system"])
    # A Patient write asks which Patients of the dataset already have its subject (one person, one Patient id):
    # SQLite's planner preferred the identity index's (dataset, type) to the subject index and read them all. The
    # subject index now pins all three (and leads with the subject, so it competes for no other query).
    op.drop_index("ix_fhir_resources_subject", table_name="fhir_resources")
    op.create_index("ix_fhir_resources_subject_of", "fhir_resources", ["subject_id", "dataset_id", "resource_type"])
    connection = op.get_bind()
    create_triggers(connection)
    postgresql = connection.dialect.name == "postgresql"
    rows = (_POSTGRESQL_ROWS if postgresql else _SQLITE_ROWS).format(
        pk="r.pk", dataset="r.dataset_id", kind="r.resource_type", resource="r.resource"
    )
    # one statement over every kept resource: the database reads the JSON, no row comes to Python
    every_row = "FROM fhir_resources AS r CROSS JOIN LATERAL json_array_elements" if postgresql else (
        "FROM fhir_resources AS r, json_each"
    )
    rows = rows.replace("FROM json_array_elements" if postgresql else "FROM json_each", every_row, 1)
    connection.exec_driver_sql(f"{_INSERT} {rows} ON CONFLICT DO NOTHING")


def downgrade() -> None:
    connection = op.get_bind()
    for name in ("fhir_identifiers_insert", "fhir_identifiers_update"):
        on = " ON fhir_resources" if connection.dialect.name == "postgresql" else ""
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS fhir_identifiers_sync()")
    op.drop_index("ix_fhir_resources_subject_of", table_name="fhir_resources")
    op.create_index("ix_fhir_resources_subject", "fhir_resources", ["subject_id"])
    op.drop_index("ix_fhir_identifiers_system", table_name="fhir_identifiers")
    op.drop_index("ix_fhir_identifiers_value", table_name="fhir_identifiers")
    op.drop_table("fhir_identifiers")
