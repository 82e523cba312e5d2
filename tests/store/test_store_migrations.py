"""Schema migrations: explicit, applied in code, safe to start twice at once, no drift."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.store import MetadataStore
from gateway.store import migrate as migrations
from gateway.store.tables import metadata
from tests.store.store_workers import open_store, run_in_processes

TABLES = {
    "datasets",
    "phenopackets",
    "phenopacket_terms",
    "biosamples",
    "fhir_resources",
    "fhir_resource_references",
    "fhir_identifiers",
    "phenopacket_families",
}


def _tables(store: MetadataStore) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_migrates_an_empty_database_to_head(store_url):
    store = MetadataStore.open(store_url, migrate=False)
    try:
        assert not store.migrations_current()
        assert migrations.current_revision(store.engine) is None
        assert not TABLES & _tables(store)

        store.migrate()
        assert store.migrations_current()
        assert migrations.current_revision(store.engine) == migrations.head_revision() == "0016_fhir_identifiers_one"
        assert _tables(store) >= TABLES

        store.migrate()  # at head already: a no-op, not an error
        assert store.migrations_current()

        migrations.downgrade(store.engine, "base")
        assert not store.migrations_current()
        assert not TABLES & _tables(store)
    finally:
        store.close()


def test_migrated_schema_matches_the_table_definitions(store):
    # The tables queries are written against must be exactly what the migrations build.
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
    assert differences == []


def test_indexes_for_beacon_filters_exist(store):
    inspector = sa.inspect(store.engine)
    term_indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("phenopacket_terms")}
    assert term_indexes["ix_terms_lookup"] == ["kind", "term", "dataset_id", "phenopacket_pk"]
    packet_indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("phenopackets")}
    assert packet_indexes["ix_phenopackets_dataset_sex"] == ["dataset_id", "sex"]
    assert packet_indexes["ix_phenopackets_subject"] == ["subject_id"]
    assert "ix_phenopackets_updated_at" not in packet_indexes  # unread since the change log (migration 0011)


def test_two_processes_migrating_at_once_both_succeed(store_url):
    assert run_in_processes(open_store, [(store_url,)] * 2) == [True, True]
    store = MetadataStore.open(store_url, migrate=False)
    try:
        assert store.migrations_current()
    finally:
        store.close()
