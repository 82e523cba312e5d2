"""A write of a resource that belongs to no patient (a Medication, a Specimen without subject) rebuilds the
patients whose resources reference it, found by index (fhir_resource_references, migration 0012) — on SQLite and
PostgreSQL — and never by reading the dataset."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.services.fhir_resources import ResourceWrite, _referrers, apply_writes, read_resource, reference_keys
from gateway.store import MetadataStore
from gateway.store import migrate as migrations
from gateway.store.tables import fhir_resource_references
from tests.store.old_rows import keep_at_revision

KEY = bytes(range(32))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _write(store, resource, full_url=None, delete=False):
    resource_type, resource_id = resource["resourceType"], resource["id"]
    (change,) = apply_writes(
        [ResourceWrite(resource_type, resource_id, None if delete else resource, full_url)],
        store=store,
        key=KEY,
        dataset_id="ds1",
        now=NOW,
    )
    return change


def _patient(patient_id):
    return {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1990-01-01"}


def _statement(statement_id, patient_id, medication):
    return {
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationReference": {"reference": medication},
    }


ATC = {"aspirin": "N02BA01", "acetylsalicylic acid": "N02BA01", "ibuprofen": "M01AE01", "ibuprofen lysine": "M01AE01"}


def _medication(medication_id, name, ingredient=None):
    coding = {"system": "http://www.whocc.no/atc", "code": ATC.get(name, "V03AX99"), "display": name}
    medication = {"resourceType": "Medication", "id": medication_id, "code": {"coding": [coding]}}
    if ingredient:
        medication["ingredient"] = [{"itemReference": {"reference": ingredient}}]
    return medication


def _agents(store):
    found = {}
    for packet in store.list_phenopackets(dataset_id="ds1")[0]:
        actions = packet.document.get("medicalActions") or []
        found[packet.document["subject"]["id"]] = sorted(a["treatment"]["agent"]["label"] for a in actions)
    return found


def test_a_patient_less_write_rebuilds_the_patients_that_reference_it(store):
    """By `Type/id`, by the fullUrl it was sent with, and by that URL's `Type/id` tail; an update and a delete."""
    for n in (1, 2, 3):
        _write(store, _patient(f"p{n}"))
    _write(store, _medication("m1", "aspirin"))
    _write(store, _medication("m2", "ibuprofen"), full_url="http://h.example/fhir/Medication/med-x")
    _write(store, _statement("s1", "p1", "Medication/m1"))
    _write(store, _statement("s2", "p2", "http://h.example/fhir/Medication/med-x"))
    _write(store, _statement("s3", "p3", "Medication/med-x"))
    before = _agents(store)
    assert sorted(before.values()) == [["aspirin"], ["ibuprofen"], ["ibuprofen"]]

    _write(store, _medication("m1", "acetylsalicylic acid"))
    _write(store, _medication("m2", "ibuprofen lysine"))  # kept with its fullUrl: found by it and its tail
    assert sorted(_agents(store).values()) == [["acetylsalicylic acid"], ["ibuprofen lysine"], ["ibuprofen lysine"]]

    _write(store, _medication("m2", ""), delete=True)
    assert sorted(_agents(store).values()) == [[], [], ["acetylsalicylic acid"]]


def test_referrers_are_found_through_patient_less_resources(store):
    """A Medication's ingredient (another Medication) is part of the phenopacket of the patients whose
    statements name the Medication (fhir_resources.assemble follows patient-less resources to their own
    references): changing the ingredient rebuilds them. Before: only the direct referrers with a patient."""
    _write(store, _patient("p1"))
    _write(store, _medication("m0", "ingredient"))
    _write(store, _medication("m1", "aspirin", ingredient="Medication/m0"))
    _write(store, _statement("s1", "p1", "Medication/m1"))
    with store.engine.connect() as connection:
        assert _referrers(connection, "ds1", "Medication", "m0", set()) == {"p1"}
        assert _referrers(connection, "ds1", "Medication", "m1", set()) == {"p1"}
        assert _referrers(connection, "ds1", "Medication", "m2", set()) == set()


def test_the_reference_keys_follow_every_write_and_go_with_a_deleted_row(store):
    _write(store, _patient("p1"))
    _write(store, _statement("s1", "p1", "Medication/m1/_history/2"))
    assert _keys(store) == {"Medication/m1", "Medication/m1/_history/2"}  # not Patient/p1: never looked up so
    _write(store, _statement("s1", "p1", "Medication?code=x"))
    assert _keys(store) == {"Medication?"}
    _write(store, _statement("s1", "p1", ""), delete=True)
    assert _keys(store) == set()


def _keys(store):
    with store.engine.connect() as connection:
        return set(connection.execute(sa.select(fhir_resource_references.c.ref_key)).scalars())


def test_migration_0012_back_fills_the_rows_kept_before(store_url):
    store = MetadataStore.open(store_url, migrate=False)
    try:
        kept = (
            ("Patient", "p1", _patient("p1"), "p1"),
            ("MedicationStatement", "s1", _statement("s1", "p1", "Medication/m1"), "p1"),
        )
        keep_at_revision(store.engine, "0011_drop_updated_at_index", kept, NOW)
        migrations.upgrade(store.engine)
        assert _keys(store) == {"Medication/m1"}
        with store.engine.connect() as connection:
            assert _referrers(connection, "ds1", "Medication", "m1", set()) == {"p1"}
    finally:
        store.close()


def test_reference_keys_leave_out_patients_contained_and_overlong_references():
    resource = {
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "http://h.example/fhir/Patient/p1/_history/1"}, {"reference": "#c1"}],
        "specimen": {"reference": "urn:uuid:5"},
        "basedOn": [{"reference": "Patient?identifier=x"}, {"reference": "ServiceRequest?identifier=y"}],
        "note": [{"reference": "Organization/" + "o" * 1100}],
    }
    assert json.loads(reference_keys(resource) or "[]") == ["ServiceRequest?", "urn:uuid:5"]
    assert reference_keys({"resourceType": "Medication", "id": "m1"}) is None


# A read by index that pins one row or one key, never the dataset's range. `resource_type=?` alone: the patient-less
# rows of the types a conditional reference names (LooseKeys.every_of: none asked here, so none read).
LOOKUP = re.compile(
    r"\((?:dataset_id=\? AND (?:resource_type=\?|(?:patient_id|full_url|full_url_tail|ref_key)=\?)|rowid=\?)"
)


def _plans_of_reads(store, resource, full_url=None):
    """The SQLite query plan lines of every read of fhir_resources (or its reference table) the write makes."""
    executed: list[tuple[str, tuple]] = []

    def seen(_connection, _cursor, statement, parameters, *_args):
        if re.search(r"\bfhir_resource", statement) and statement.lstrip().upper().startswith("SELECT"):
            executed.append((statement, tuple(parameters or ())))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        _write(store, resource, full_url)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert executed
    with store.engine.connect() as connection:
        return [
            (detail, statement)
            for statement, parameters in executed
            for *_, detail in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            if re.search(r"\bfhir_resource", detail) and "ix_fhir_resources_pending" not in detail  # its first entry
        ]


def test_a_patient_less_writes_reads_of_the_resources_are_lookups(tmp_path):
    """Every read a Medication's update makes of fhir_resources (and its reference table) is a lookup. Before: the
    patients that reference the Medication were found by a LIKE over the text of every row with a patient."""
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    store.ensure_dataset("ds1")
    try:
        for n in range(3):
            _write(store, _patient(f"p{n}"))
            _write(store, _statement(f"s{n}", f"p{n}", "Medication/m1"))
        _write(store, _medication("m1", "aspirin"))
        for detail, statement in _plans_of_reads(store, _medication("m1", "acetylsalicylic acid")):
            assert detail.startswith("SEARCH") and LOOKUP.search(detail), (detail, statement)
    finally:
        store.close()


def test_a_patient_named_by_the_tail_of_its_full_url_is_found_by_index(tmp_path):
    """`Patient/x1` names the Patient kept as p9 with the fullUrl http://h.example/fhir/Patient/x1: found by the
    full_url_tail index. Before: a LIKE '%/Patient/x1' over the dataset's Patients."""
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    store.ensure_dataset("ds1")
    try:
        for n in range(3):
            _write(store, _patient(f"p{n}"), full_url=f"http://h.example/fhir/Patient/x{n + 5}")
        _write(store, _patient("p9"), full_url="http://h.example/fhir/Patient/x1")
        plans = _plans_of_reads(store, _statement("s1", "x1", "Medication/m1"))
        for detail, statement in plans:
            assert detail.startswith("SEARCH") and LOOKUP.search(detail), (detail, statement)
        assert any("ix_fhir_resources_full_url_tail" in detail for detail, _ in plans), plans
        assert not [statement for _, statement in plans if " LIKE " in statement]
        assert read_resource(store, "ds1", "MedicationStatement", "s1").patient_id == "p9"
    finally:
        store.close()
