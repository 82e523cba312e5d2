"""The identifier index reads a resource's one Identifier too: R4's `Composition.identifier` is 0..1, not a list.

Why: migration 0013's triggers read `identifier` as a list, so a kept Composition's identifier was never in
`fhir_identifiers`: a conditional create or update of a Composition (`If-None-Exist: identifier=…`, `PUT
Composition?identifier=…`) matched nothing and kept another copy each time, and a search by identifier found
nothing (the REST surface refused them with 400 instead). The triggers now also index an `identifier` that is one
object, with the limits of 0013 (value 1–1024 characters, system at most 1024); the Compositions kept before are
back-filled. A list is read as before.

SQLite: a later migration that rebuilds `fhir_resources` (batch_alter_table) drops its triggers and must create
them again with this module's `create_triggers`.

Revision ID: 0016_fhir_identifiers_one
Revises: 0015_phenopacket_subject_label
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_fhir_identifiers_one"
down_revision = "0015_phenopacket_subject_label"
branch_labels = None
depends_on = None

_INSERT = "INSERT INTO fhir_identifiers (resource_pk, dataset_id, resource_type, system, value)"

# 0013's rows (a list of Identifiers), unchanged.
_SQLITE_LIST = """
    SELECT {pk}, {dataset}, {kind}, coalesce(json_extract(i.value, '$.system'), ''), json_extract(i.value, '$.value')
    FROM json_each({resource}, '$.identifier') AS i
    WHERE json_type({resource}, '$.identifier') = 'array' AND i.type = 'object'
      AND json_type(i.value, '$.value') = 'text'
      AND length(json_extract(i.value, '$.value')) BETWEEN 1 AND 1024
      AND coalesce(json_type(i.value, '$.system'), 'text') = 'text'
      AND length(coalesce(json_extract(i.value, '$.system'), '')) <= 1024"""
# One Identifier (an object): the same limits.
_SQLITE_ONE = """
    SELECT {pk}, {dataset}, {kind}, coalesce(json_extract({resource}, '$.identifier.system'), ''),
           json_extract({resource}, '$.identifier.value')
    WHERE json_type({resource}, '$.identifier') = 'object'
      AND json_type({resource}, '$.identifier.value') = 'text'
      AND length(json_extract({resource}, '$.identifier.value')) BETWEEN 1 AND 1024
      AND coalesce(json_type({resource}, '$.identifier.system'), 'text') = 'text'
      AND length(coalesce(json_extract({resource}, '$.identifier.system'), '')) <= 1024"""
_POSTGRESQL_LIST = """
    SELECT {pk}, {dataset}, {kind}, coalesce(i ->> 'system', ''), i ->> 'value'
    FROM json_array_elements(CASE WHEN json_typeof({resource}::json -> 'identifier') = 'array'
                                  THEN {resource}::json -> 'identifier'
                                  WHEN json_typeof({resource}::json -> 'identifier') = 'object'
                                  THEN json_build_array({resource}::json -> 'identifier')
                                  ELSE '[]'::json END) AS i
    WHERE json_typeof(i) = 'object' AND json_typeof(i -> 'value') = 'string'
      AND length(i ->> 'value') BETWEEN 1 AND 1024
      AND coalesce(json_typeof(i -> 'system'), 'string') = 'string'
      AND length(coalesce(i ->> 'system', '')) <= 1024"""
_POSTGRESQL_0013 = _POSTGRESQL_LIST.replace(
    """                                  WHEN json_typeof({resource}::json -> 'identifier') = 'object'
                                  THEN json_build_array({resource}::json -> 'identifier')
""",
    "",
)

_NEW = {"pk": "NEW.pk", "dataset": "NEW.dataset_id", "kind": "NEW.resource_type", "resource": "NEW.resource"}
_TRIGGER_NAMES = ("fhir_identifiers_insert", "fhir_identifiers_update")


def _sqlite_triggers(selects: tuple[str, ...]) -> tuple[str, ...]:
    inserts = "\n".join(f"{_INSERT} {s.format(**_NEW)} ON CONFLICT DO NOTHING;" for s in selects)
    return (
        f"""CREATE TRIGGER fhir_identifiers_insert AFTER INSERT ON fhir_resources
        BEGIN
            {inserts}
        END""",
        f"""CREATE TRIGGER fhir_identifiers_update AFTER UPDATE OF resource ON fhir_resources
        BEGIN
            DELETE FROM fhir_identifiers WHERE resource_pk = OLD.pk;
            {inserts}
        END""",
    )


def _postgresql_triggers(select: str) -> tuple[str, ...]:
    return (
        f"""CREATE FUNCTION fhir_identifiers_sync() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                DELETE FROM fhir_identifiers WHERE resource_pk = OLD.pk;
            END IF;
            {_INSERT} {select.format(**_NEW)}
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER fhir_identifiers_insert AFTER INSERT ON fhir_resources
        FOR EACH ROW EXECUTE FUNCTION fhir_identifiers_sync()""",
        """CREATE TRIGGER fhir_identifiers_update AFTER UPDATE OF resource ON fhir_resources
        FOR EACH ROW EXECUTE FUNCTION fhir_identifiers_sync()""",
    )


def _drop_triggers(connection: sa.Connection) -> None:
    postgresql = connection.dialect.name == "postgresql"
    for name in _TRIGGER_NAMES:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{' ON fhir_resources' if postgresql else ''}")
    if postgresql:
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS fhir_identifiers_sync()")


def create_triggers(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        statements = _postgresql_triggers(_POSTGRESQL_LIST)
    else:
        statements = _sqlite_triggers((_SQLITE_LIST, _SQLITE_ONE))
    for statement in statements:
        connection.exec_driver_sql(statement)


def upgrade() -> None:
    connection = op.get_bind()
    _drop_triggers(connection)
    create_triggers(connection)
    # the rows kept before: only a single Identifier is new (a list was indexed by 0013)
    rows = {"pk": "r.pk", "dataset": "r.dataset_id", "kind": "r.resource_type", "resource": "r.resource"}
    if connection.dialect.name == "postgresql":
        one = (
            "SELECT r.pk, r.dataset_id, r.resource_type, coalesce(r.resource::json #>> '{identifier,system}', ''), "
            "r.resource::json #>> '{identifier,value}' FROM fhir_resources AS r "
            "WHERE json_typeof(r.resource::json -> 'identifier') = 'object' "
            "AND json_typeof(r.resource::json -> 'identifier' -> 'value') = 'string' "
            "AND length(r.resource::json #>> '{identifier,value}') BETWEEN 1 AND 1024 "
            "AND coalesce(json_typeof(r.resource::json -> 'identifier' -> 'system'), 'string') = 'string' "
            "AND length(coalesce(r.resource::json #>> '{identifier,system}', '')) <= 1024"
        )
    else:
        one = _SQLITE_ONE.format(**rows).replace("\n    WHERE", "\n    FROM fhir_resources AS r\n    WHERE", 1)
    connection.exec_driver_sql(f"{_INSERT} {one} ON CONFLICT DO NOTHING")


def downgrade() -> None:
    connection = op.get_bind()
    _drop_triggers(connection)
    if connection.dialect.name == "postgresql":
        statements = _postgresql_triggers(_POSTGRESQL_0013)
        one = "json_typeof(resource::json -> 'identifier') = 'object'"
    else:
        statements = _sqlite_triggers((_SQLITE_LIST,))
        one = "json_type(resource, '$.identifier') = 'object'"
    for statement in statements:
        connection.exec_driver_sql(statement)
    connection.exec_driver_sql(
        f"DELETE FROM fhir_identifiers WHERE resource_pk IN (SELECT pk FROM fhir_resources WHERE {one})"
    )
