"""Kept resources' identifiers by index (fhir_identifiers, migration 0013), on SQLite and PostgreSQL: a conditional
reference, create, update or delete (`Type?identifier=token`) finds its match there, never by reading the
dataset. Before: every Patient of the dataset was read with its content (62 ms per conditional update at 1,000
Patients, 150 ms at 4,000), other types were searched with LIKE over their JSON."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.security.pseudonym import pseudonymise
from gateway.services.fhir_resources import ResourceWrite, apply_writes, conditional_search, read_resource
from gateway.store import MetadataStore
from gateway.store import migrate as migrations
from gateway.store.tables import fhir_identifiers
from tests.store.old_rows import keep_at_revision

KEY = bytes(range(32))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MRN = "http://hospital.example/mrn"


def _patient(patient_id, *identifiers):
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": s, "value": v} if s else {"value": v} for s, v in identifiers],
        "gender": "female",
        "birthDate": "1990-01-01",
    }


def _condition(condition_id, subject, *identifiers):
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "identifier": [{"system": s, "value": v} for s, v in identifiers],
        "code": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "Q87.4"}]},
        "subject": {"reference": subject},
    }


def _apply(store, *writes):
    return apply_writes(list(writes), store=store, key=KEY, dataset_id="ds1", now=NOW)


def _put(store, resource):
    return _apply(store, ResourceWrite(resource["resourceType"], resource["id"], resource))[0]


def _indexed(store):
    with store.engine.connect() as connection:
        columns = (fhir_identifiers.c.resource_type, fhir_identifiers.c.system, fhir_identifiers.c.value)
        return sorted(tuple(row) for row in connection.execute(sa.select(*columns)))


def test_the_index_follows_every_write(store):
    store.ensure_dataset("ds1")
    _put(store, _patient("p1", (MRN, "A-1"), ("", "local-7")))
    _put(store, _condition("c1", "Patient/p1", ("http://hospital.example/problem", "P-1")))
    assert _indexed(store) == [
        ("Condition", "http://hospital.example/problem", "P-1"),
        ("Patient", "", pseudonymise(KEY, "local-7")),
        ("Patient", MRN, pseudonymise(KEY, "A-1", MRN)),  # as kept: the pseudonym, never the MRN
    ]
    _put(store, _patient("p1", (MRN, "A-2")))  # an update replaces them
    assert [row for row in _indexed(store) if row[0] == "Patient"] == [("Patient", MRN, pseudonymise(KEY, "A-2", MRN))]
    _apply(store, ResourceWrite("Condition", "c1", None))  # a delete takes them
    assert [row[0] for row in _indexed(store)] == ["Patient"]


def test_conditional_writes_find_their_match_through_the_index(store):
    store.ensure_dataset("ds1")
    for n in range(30):
        _put(store, _patient(f"p{n}", (MRN, f"A-{n}")))
    by_mrn = conditional_search("Patient", f"identifier={MRN}|A-7")
    updated = {**_patient("ignored", (MRN, "A-7")), "gender": "male"}
    del updated["id"]
    (change,) = _apply(store, ResourceWrite("Patient", None, updated, conditional=by_mrn))
    assert (change.resource_id, change.status) == ("p7", "updated")
    # a conditional patient reference, with and without system, resolves to that Patient
    for reference in (f"Patient?identifier={MRN}|A-7", "Patient?identifier=A-7"):
        condition = _condition(f"c-{len(reference)}", reference)
        (kept,) = _apply(store, ResourceWrite("Condition", condition["id"], condition))
        assert kept.patient_id == "p7" and not kept.pending, reference
    assert read_resource(store, "ds1", "Patient", "p7").resource["gender"] == "male"


def test_a_conditional_write_reads_its_match_not_the_dataset(tmp_path, monkeypatch):
    """A conditional update and a conditionally referenced write load the content of the one Patient they match,
    not of the dataset's Patients; and SQLite's plan of every statement they run scans neither fhir_resources nor
    fhir_identifiers whole (the index does not grow the cost with the dataset)."""
    from gateway.store import fhir_resources as rows

    store = MetadataStore.open(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    store.ensure_dataset("ds1")
    for n in range(30):
        _put(store, _patient(f"p{n}", (MRN, f"A-{n}"), ("", f"local-{n}")))
    loaded: list[str] = []
    stored = rows._stored

    def counted(row):
        found = stored(row)
        if found.resource_type == "Patient":
            loaded.append(found.resource_id)
        return found

    monkeypatch.setattr(rows, "_stored", counted)
    statements: list[tuple[str, tuple]] = []

    def record(_connection, _cursor, statement, parameters, *_):
        if statement.lstrip().upper().startswith("SELECT") and "fhir_" in statement:
            statements.append((statement, tuple(parameters) if isinstance(parameters, list | tuple) else ()))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        patient = _patient("x", (MRN, "A-3"))
        del patient["id"]
        search = conditional_search("Patient", f"identifier={MRN}|A-3")
        _apply(store, ResourceWrite("Patient", None, patient, conditional=search))
        _apply(store, ResourceWrite("Condition", "c1", _condition("c1", "Patient?identifier=local-3")))
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert any("fhir_identifiers" in sql for sql, _ in statements)
    assert set(loaded) == {"p3"}, loaded  # before: all 30, for each of the two writes
    with store.engine.connect() as connection:
        for sql, parameters in statements:
            plan = [detail for *_, detail in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)]
            scans = [d for d in plan if d.startswith("SCAN") and ("fhir_resources" in d or "fhir_identifiers" in d)]
            assert not scans, (sql, plan)
            # a range over a whole dataset or type is a scan too (before: the pending rows and a subject's Patient
            # were looked for through the identity index's (dataset, type): every Patient write read them all)
            whole = r"fhir_resources USING .*\(dataset_id=\?( AND resource_type=\?)?\)$"
            ranges = [d for d in plan if re.search(whole, d) and "ix_fhir_resources_pending" not in d]  # (partial)
            assert not ranges, (sql, plan)
    store.close()


def test_migration_0013_back_fills_the_rows_kept_before(store_url):
    store = MetadataStore.open(store_url, migrate=False)
    try:
        kept = (
            ("Patient", "p1", _patient("p1", (MRN, "pid-kept"), ("", "x" * 2000)), "p1"),  # too long to index
            ("Condition", "c1", _condition("c1", "Patient/p1", ("http://h.example/problem", "P-1")), "p1"),
            ("Condition", "c2", {**_condition("c2", "Patient/p1"), "identifier": "not a list"}, "p1"),
        )
        keep_at_revision(store.engine, "0012_fhir_reference_keys", kept, NOW)
        migrations.upgrade(store.engine)
        assert _indexed(store) == [("Condition", "http://h.example/problem", "P-1"), ("Patient", MRN, "pid-kept")]
    finally:
        store.close()


def test_migration_0016_indexes_one_identifier_and_back_fills_it(store_url, reference_dir):
    """R4's Composition.identifier is one Identifier: the real IPS document's Composition, kept before 0016, is
    indexed by the back-fill, and one kept after it by the triggers (insert and update)."""
    import json

    bundle = json.loads((reference_dir / "fhir" / "ips-1.1.0" / "Bundle-IPS-examples-Bundle-01.json").read_text())
    composition = bundle["entry"][0]["resource"]
    one = composition["identifier"]
    store = MetadataStore.open(store_url, migrate=False)
    try:
        kept = (
            ("Composition", "doc-1", {**composition, "id": "doc-1"}, None),
            ("Composition", "doc-2", {**composition, "id": "doc-2", "identifier": {"value": ""}}, None),  # empty
        )
        keep_at_revision(store.engine, "0015_phenopacket_subject_label", kept, NOW)
        migrations.upgrade(store.engine)
        assert _indexed(store) == [("Composition", one["system"], one["value"])]
        store.ensure_dataset("ds1")
        later = {**composition, "id": "doc-3", "identifier": {"system": one["system"], "value": "later"}}
        _put(store, later)
        assert ("Composition", one["system"], "later") in _indexed(store)
        _put(store, {**later, "identifier": {"system": one["system"], "value": "changed"}})
        assert ("Composition", one["system"], "changed") in _indexed(store)
        assert ("Composition", one["system"], "later") not in _indexed(store)
        migrations.downgrade(store.engine, "0015_phenopacket_subject_label")
        assert _indexed(store) == []
    finally:
        store.close()
