"""FHIR resources sent one by one, the way hospital systems send them, on SQLite and PostgreSQL.

Real Bundles from ../shared/reference/fhir are split into their resources; whatever the order of
arrival, the stored phenopacket must be the one the complete Bundle makes (lists compared as
sets: the assembled Bundle has its own fixed order; creation time and provenance aside).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.services.fhir_incremental import FragmentCache
from gateway.services.fhir_resources import (
    ResourceRejected,
    ResourceWrite,
    apply_document,
    apply_writes,
    pending_resources,
    provenance_id,
    read_resource,
    supported_types,
)
from gateway.services.ingest import process_fhir
from gateway.store.indexing import index_fields
from gateway.store.tables import biosamples, phenopacket_terms

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

KEY = bytes(range(32))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MARFAN = "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"
SELTENE = "mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json"
MOLGEN = "mii-testdata/Bundle-mii-exa-test-data-bundle-molgen-1.json"  # two patients


def _bundle(reference_dir, rel):
    return json.loads((reference_dir / "fhir" / rel).read_text())


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _comparable(packet):
    packet = copy.deepcopy(packet)
    packet["metaData"].pop("created", None)
    packet["metaData"].pop("externalReferences", None)  # provenance: checked on its own
    return _canonical(packet)


def _expected(bundle, dataset="ds1"):
    outcome = process_fhir(bundle, key=KEY, dataset_id=dataset, now=NOW)
    assert outcome.report.ok and outcome.packets
    return {p.phenopacket["id"]: _comparable(p.phenopacket) for p in outcome.packets}


def _stored(store, dataset="ds1"):
    return {p.id: _comparable(p.document) for p in store.list_phenopackets(dataset_id=dataset, limit=1000)[0]}


def _resources(bundle):
    """The mapped resources of a Bundle, each as a hospital would PUT it."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] in supported_types()]


def _put(store, resource, dataset="ds1", cache=None, full_url=None, profile=None):
    (change,) = apply_writes(
        [ResourceWrite(resource["resourceType"], resource["id"], resource, full_url)],
        store=store,
        key=KEY,
        dataset_id=dataset,
        now=NOW,
        cache=cache,
        profile=profile,
    )
    return change


@pytest.mark.parametrize("incremental", [False, True], ids=["whole", "incremental"])
@pytest.mark.parametrize("rel", [MARFAN, SELTENE, MOLGEN])
def test_patient_first_then_each_resource_makes_the_bundles_phenopacket(store, reference_dir, rel, incremental):
    bundle = _bundle(reference_dir, rel)
    resources = _resources(bundle)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    cache = FragmentCache() if incremental else None
    for resource in [*patients, *(r for r in resources if r["resourceType"] != "Patient")]:
        change = _put(store, resource, cache=cache)
        assert change.status == "created" and not change.pending
        assert change.phenopacket_id is not None
    assert _stored(store) == _expected(bundle)
    assert pending_resources(store) == []


@pytest.mark.parametrize("rel", [MARFAN, MOLGEN])
def test_patient_last_keeps_resources_pending_then_applies_them(store, reference_dir, rel):
    bundle = _bundle(reference_dir, rel)
    resources = _resources(bundle)
    others = [r for r in resources if r["resourceType"] != "Patient"]
    for resource in reversed(others):
        change = _put(store, resource)
        assert change.pending and change.phenopacket_id is None
        assert [i.code for i in change.issues] == ["pending"]
    assert _stored(store) == {}  # nothing to show before the Patient
    assert len(pending_resources(store, "ds1")) == len(others)

    for patient in (r for r in resources if r["resourceType"] == "Patient"):
        assert _put(store, patient).phenopacket_id is not None
    assert pending_resources(store) == []
    assert _stored(store) == _expected(bundle)


def test_the_same_resource_twice_changes_nothing(store, reference_dir):
    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    before = store.list_phenopackets()[0][0]
    again = _put(store, resources[3])
    assert again.status == "unchanged" and again.version == 1
    after = store.list_phenopackets()[0][0]
    assert after.extra["revision"] == before.extra["revision"]  # the phenopacket was not rewritten
    assert after.document == before.document


def test_update_replaces_and_delete_removes_a_resources_contribution(store, reference_dir):
    bundle = _bundle(reference_dir, MARFAN)
    resources = _resources(bundle)
    for resource in resources:
        _put(store, resource)
    cataract = next(r for r in resources if r["id"] == "condition-cataract")
    changed = copy.deepcopy(cataract)
    changed["code"]["coding"][0]["code"] = "H25.9"
    changed["code"]["coding"][0]["display"] = "Senile Katarakt, nicht näher bezeichnet"
    update = _put(store, changed)
    assert update.status == "updated" and update.version == 2

    updated_bundle = copy.deepcopy(bundle)
    for entry in updated_bundle["entry"]:
        if entry["resource"]["id"] == "condition-cataract":
            entry["resource"] = changed
    assert _stored(store) == _expected(updated_bundle)
    assert read_resource(store, "ds1", "Condition", "condition-cataract").version == 2

    (deleted,) = apply_writes(
        [ResourceWrite("Condition", "condition-cataract", None)], store=store, key=KEY, dataset_id="ds1", now=NOW
    )
    assert deleted.status == "deleted"
    without = copy.deepcopy(bundle)
    without["entry"] = [e for e in without["entry"] if e["resource"]["id"] != "condition-cataract"]
    assert _stored(store) == _expected(without)


def test_deleting_the_patient_removes_its_phenopacket_and_leaves_its_resources_pending(store, reference_dir):
    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    apply_writes([ResourceWrite("Patient", "patient-marfan-001", None)], store=store, key=KEY, dataset_id="ds1")
    assert _stored(store) == {}
    assert len(pending_resources(store)) == len(resources) - 1
    _put(store, resources[0])  # the Patient again: everything applies again
    assert len(_stored(store)) == 1 and pending_resources(store) == []


def test_provenance_names_every_contributing_resource_and_its_version(store, reference_dir):
    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    (packet,) = store.list_phenopackets()[0]
    cited = {ref["id"]: ref["description"] for ref in packet.document["metaData"]["externalReferences"]}
    for resource in resources:
        assert cited[provenance_id(KEY, "ds1", resource["resourceType"], resource["id"])].endswith("version 1")
    assert "patient-marfan-001" not in json.dumps(packet.document)  # the hospital's ids stay out


def test_transaction_applies_to_a_stored_patient_by_literal_and_conditional_reference(store, reference_dir):
    bundle = _bundle(reference_dir, SELTENE)
    resources = _resources(bundle)
    patient = resources[0]
    assert patient["resourceType"] == "Patient"
    _put(store, patient)
    system, value = patient["identifier"][0]["system"], patient["identifier"][0]["value"]
    others = [copy.deepcopy(r) for r in resources[1:]]
    for n, resource in enumerate(others):  # half by Patient/{id}, half by Patient?identifier=
        if n % 2:
            link = "subject" if "subject" in resource else "patient"
            resource[link]["reference"] = f"Patient?identifier={system}|{value}"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in others
        ],
    }
    bundle_type, results = apply_document(transaction, store=store, key=KEY, dataset_id="ds1", now=NOW)
    assert bundle_type == "transaction"
    assert all(r.change is not None and r.change.status == "created" and not r.change.pending for r in results)
    assert _stored(store) == _expected(bundle)


def test_a_batch_entry_translates_only_the_part_it_changed(store, reference_dir):
    """A batch is applied entry by entry; each entry, like a lone write, goes through the fragment cache (it
    used to translate the whole patient for every entry)."""
    bundle = _bundle(reference_dir, SELTENE)
    resources = _resources(bundle)
    cache = FragmentCache()
    _put(store, resources[0], cache=cache)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources[1:]
        ],
    }
    bundle_type, results = apply_document(batch, store=store, key=KEY, dataset_id="ds1", now=NOW, cache=cache)
    assert bundle_type == "batch" and all(r.change is not None and r.change.status == "created" for r in results)
    assert cache.merged == len(resources) and cache.whole == 0  # every write merged from its parts
    assert _stored(store) == _expected(bundle)


def test_a_patient_is_scoped_to_its_dataset(store, reference_dir):
    resources = _resources(_bundle(reference_dir, MARFAN))
    store.ensure_dataset("ds2")
    _put(store, resources[0], dataset="ds1")
    change = _put(store, resources[1], dataset="ds2")
    assert change.pending  # Patient/patient-marfan-001 exists, but in ds1
    assert [r.dataset_id for r in pending_resources(store)] == ["ds2"]


def test_an_invalid_change_is_refused_and_changes_nothing(store, reference_dir):
    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    before = _stored(store)
    broken = copy.deepcopy(resources[1])
    broken["onsetDateTime"] = "not a date"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": broken, "request": {"method": "PUT", "url": f"Condition/{broken['id']}"}},
            {"request": {"method": "DELETE", "url": f"Condition/{resources[2]['id']}"}},
        ],
    }
    with pytest.raises(ResourceRejected) as refused:
        apply_document(transaction, store=store, key=KEY, dataset_id="ds1")
    assert refused.value.status == 422 and refused.value.issues
    assert _stored(store) == before
    assert read_resource(store, "ds1", "Condition", resources[2]["id"]).version == 1


def test_erasing_a_subject_erases_the_resources_it_was_made_from(store, reference_dir):
    """Kept, the resources would make the erased phenopacket again on the next change."""
    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    store.ensure_dataset("ds2")
    _put(store, resources[0], dataset="ds2")  # the same person sent to another dataset
    (packet,) = store.list_phenopackets(dataset_id="ds1")[0]
    assert store.delete_subject(packet.subject_id, "ds1") == 1
    with pytest.raises(Exception, match="not stored"):
        read_resource(store, "ds1", "Patient", "patient-marfan-001")
    for resource in resources[1:]:
        with pytest.raises(Exception, match="not stored"):
            read_resource(store, "ds1", resource["resourceType"], resource["id"])
    assert read_resource(store, "ds2", "Patient", "patient-marfan-001").version == 1  # other dataset: kept
    assert _put(store, resources[1]).pending  # no Patient left to rebuild it from
    assert store.list_phenopackets(dataset_id="ds1")[1] == 0


def test_concurrent_writes_for_one_patient_lose_nothing(store_url, reference_dir):
    """Each write rebuilds from the patient's other resources: writes at once must not miss each other
    (nor a Patient miss the resources that became pending while it arrived)."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.store import MetadataStore

    bundle = _bundle(reference_dir, MARFAN)
    resources = _resources(bundle)
    opened = MetadataStore.open(store_url)
    try:
        opened.ensure_dataset("ds1")
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda r: _put(opened, r), [*resources[1:], resources[0]]))
        assert pending_resources(opened) == []
        assert _stored(opened) == _expected(bundle)
    finally:
        opened.close()


def test_pending_resources_expire_after_the_configured_days(store, reference_dir):
    """Before: a resource whose Patient never came stayed pending for ever."""
    from datetime import timedelta

    resources = _resources(_bundle(reference_dir, MARFAN))
    old, fresh = resources[1], resources[2]
    apply_writes(
        [ResourceWrite("Condition", old["id"], old)],
        store=store,
        key=KEY,
        dataset_id="ds1",
        now=NOW - timedelta(days=31),
    )
    apply_writes(
        [ResourceWrite("Condition", fresh["id"], fresh)],
        store=store,
        key=KEY,
        dataset_id="ds1",
        now=NOW - timedelta(days=29),
        pending_days=30,
    )
    assert len(pending_resources(store, "ds1")) == 2  # not yet: the first write saw a 0-day-old resource

    (change,) = apply_writes(
        [ResourceWrite("Patient", resources[0]["id"], resources[0])],
        store=store,
        key=KEY,
        dataset_id="ds1",
        now=NOW,
        pending_days=30,
    )
    assert [i.code for i in change.issues] == ["expired"] and old["id"] in change.issues[0].message
    assert change.phenopacket_id is not None
    with pytest.raises(Exception, match="not stored"):
        read_resource(store, "ds1", "Condition", old["id"])
    assert read_resource(store, "ds1", "Condition", fresh["id"]).patient_id == resources[0]["id"]


def test_the_operator_purges_pending_resources(store, reference_dir):
    from datetime import timedelta

    from gateway.services.fhir_resources import purge_pending

    resources = _resources(_bundle(reference_dir, MARFAN))
    for n, resource in enumerate(resources[1:4]):
        apply_writes(
            [ResourceWrite(resource["resourceType"], resource["id"], resource)],
            store=store,
            key=KEY,
            dataset_id="ds1",
            now=NOW - timedelta(days=n * 10),
            pending_days=0,
        )
    assert purge_pending(store, "ds1", older_than_days=15, now=NOW)[0].resource_id == resources[3]["id"]
    assert len(pending_resources(store, "ds1")) == 2
    assert len(purge_pending(store, older_than_days=0, now=NOW)) == 2
    assert pending_resources(store) == []


def test_a_transaction_entry_with_a_stale_if_match_changes_nothing(store, reference_dir):
    from gateway.services.fhir_resources import VersionConflict

    resources = _resources(_bundle(reference_dir, MARFAN))
    for resource in resources:
        _put(store, resource)
    before = _stored(store)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": f"Condition/{resources[1]['id']}", "ifMatch": 'W/"1"'}},
            {"request": {"method": "DELETE", "url": f"Condition/{resources[2]['id']}", "ifMatch": 'W/"4"'}},
        ],
    }
    with pytest.raises(VersionConflict) as refused:
        apply_document(transaction, store=store, key=KEY, dataset_id="ds1")
    assert refused.value.status == 412
    assert _stored(store) == before
    assert read_resource(store, "ds1", "Condition", resources[1]["id"]).version == 1


def _corpus_with_patients(reference_dir):
    for path in sorted((reference_dir / "fhir").rglob("Bundle-*.json")):
        bundle = json.loads(path.read_text())
        kinds = [e["resource"]["resourceType"] for e in bundle.get("entry") or ()]
        if "Patient" in kinds and "vcf2fhir" not in path.parts:
            yield path.relative_to(reference_dir / "fhir").as_posix(), bundle


def test_every_real_bundle_sent_resource_by_resource_incrementally_makes_its_phenopacket(store, reference_dir):
    """Each write translates the part it changed (cache.translated grows by about one per write) and
    merges the parts; the result equals the phenopacket of the same resources in one Bundle, for every
    real Bundle. (Types no phenopacket element comes from are not kept: an IPS Composition, which
    tells its profile apart, is named by the operator instead; dates of unkept resources do not count
    for timeAtLastEncounter.)"""
    import mappings

    cache = FragmentCache()
    writes = 0
    for n, (name, bundle) in enumerate(_corpus_with_patients(reference_dir)):
        dataset = f"corpus{n}"
        store.ensure_dataset(dataset)
        entries = [e for e in bundle["entry"] if e["resource"]["resourceType"] in supported_types()]
        ordered = sorted(entries, key=lambda e: e["resource"]["resourceType"] != "Patient")
        profile = mappings.detect_profile(bundle)
        for entry in ordered:
            _put(store, entry["resource"], dataset, cache, entry.get("fullUrl"), profile)
            writes += 1
        sent = {"resourceType": "Bundle", "type": "collection", "entry": [{**e, "request": None} for e in entries]}
        for entry in sent["entry"]:
            entry.pop("request")
        outcome = process_fhir(sent, key=KEY, dataset_id=dataset, now=NOW, profile=profile)
        expected = {p.phenopacket["id"]: _comparable(p.phenopacket) for p in outcome.packets}
        assert _stored(store, dataset) == expected, name
    # Translating everything at once is the exception (parts whose sources name two versions of one code
    # system in an order the merge cannot see: 82 % merged since TNM Observations join their Condition).
    assert cache.merged > 0.8 * (cache.merged + cache.whole)
    assert cache.translated < 1.6 * writes  # a write translates about one part, not the whole patient


def test_a_write_to_a_stored_patient_is_a_few_statements_and_reads_back_nothing_it_wrote(store, reference_dir):
    """Round trips per write (the store's share of resource-by-resource ingest): the dataset and its lock,
    the row with its Patient (on SQLite, whose writers are serialised before the first statement, in the same
    round trip as the dataset), the row written, the patient's heads (with its phenopacket's index rows),
    the phenopacket; the content the write kept is not read back, nor the Patient's content (it comes with
    the heads), nor the index rows (they come with the heads too)."""
    resources = _resources(_bundle(reference_dir, MARFAN))
    cache = FragmentCache()
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    for resource in resources:
        if resource is not observations[-1]:
            _put(store, resource, cache=cache)
    statements: list[str] = []

    def seen(_connection, _cursor, statement, *_args):
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", "SELECT 1"):
            statements.append(" ".join(statement.split()))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        change = _put(store, observations[-1], cache=cache)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert change.status == "created" and change.phenopacket_id is not None
    lock_first = store.engine.dialect.name == "postgresql"  # the lock's statement cannot read the rows too
    assert len(statements) <= (6 if lock_first else 5), statements  # + one insert when the write adds a term
    assert not [s for s in statements if s.startswith("SELECT fhir_resources.pk, fhir_resources.resource ")]
    assert not [s for s in statements if s.startswith("SELECT phenopacket_terms.")]  # read with the heads
    assert _stored(store) == _expected(_bundle(reference_dir, MARFAN))


def _index_rows(store, dataset="ds1"):
    with store.engine.connect() as connection:
        terms = connection.execute(
            sa.select(phenopacket_terms.c.kind, phenopacket_terms.c.term, phenopacket_terms.c.label).where(
                phenopacket_terms.c.dataset_id == dataset
            )
        ).all()
        samples = connection.execute(
            sa.select(biosamples.c.biosample_id, biosamples.c.sampled_tissue).where(biosamples.c.dataset_id == dataset)
        ).all()
    return sorted(map(tuple, terms)), sorted(map(tuple, samples))


def _indexed(store, dataset="ds1"):
    """The index rows the stored documents make (gateway.store.indexing), to compare with those stored."""
    terms, samples = [], []
    for packet in store.list_phenopackets(dataset_id=dataset, limit=1000)[0]:
        fields = index_fields(packet.document)
        terms += fields["terms"]
        samples += [(b["id"], b["sampled_tissue"]) for b in fields["biosamples"]]
    return sorted(terms), sorted(samples)


@pytest.mark.parametrize("rel", [SELTENE, MOLGEN])
def test_the_index_rows_follow_every_write_they_were_read_ahead_for(store, reference_dir, rel):
    """The index rows a write diffs against are read with the patient's heads: after every write (terms
    added, a term changed, a term, a biosample or a Family removed, the Patient's identifier changed) the
    stored rows are exactly those the stored phenopackets make."""
    resources = _resources(_bundle(reference_dir, rel))
    cache = FragmentCache()
    for resource in resources:
        _put(store, resource, cache=cache)
        assert _index_rows(store) == _indexed(store), resource["resourceType"]
    condition = next(r for r in resources if r["resourceType"] == "Condition")
    changed = copy.deepcopy(condition)
    changed["code"] = {"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]}
    _put(store, changed, cache=cache)
    assert _index_rows(store) == _indexed(store)
    gone = [condition, *[r for r in resources if r["resourceType"] in ("Specimen", "FamilyMemberHistory")][:1]]
    for resource in gone:
        write = ResourceWrite(resource["resourceType"], resource["id"], None)
        apply_writes([write], store=store, key=KEY, dataset_id="ds1", now=NOW, cache=cache)
        assert _index_rows(store) == _indexed(store), resource["resourceType"]
    patient = copy.deepcopy(next(r for r in resources if r["resourceType"] == "Patient"))
    for identifier in patient["identifier"]:
        identifier["value"] += "-new"
    _put(store, patient, cache=cache)
    terms, samples = _index_rows(store)
    assert terms and (terms, samples) == _indexed(store)


def test_a_writes_reads_are_index_lookups_not_the_whole_dataset(tmp_path):
    """Every read of fhir_resources a write makes is a lookup by one of its indexes: the patient's rows (a range
    of ix_fhir_resources_patient), the patient-less ones its references may name (by fullUrl, fullUrl tail,
    identity), the oldest pending time (the first entry of the partial ix_fhir_resources_pending), the referrers of a
    patient-less resource (by key in fhir_resource_references, then by primary key). Reading the
    dataset's whole unattached set, or walking every row without a patient for the pending time, made a write
    cost more the larger its dataset (≈6 ms per write at 8,300 rows); a lookup does not grow with it."""
    from gateway.store import MetadataStore
    from gateway.store import fhir_resources as rows

    looked_up = rows.LooseKeys(
        frozenset({"urn:uuid:1", "Medication/m"}),
        frozenset({"Medication/m"}),
        frozenset({"Medication"}),
        frozenset("m"),
    )
    store = MetadataStore.open(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    try:
        with store.engine.connect() as connection:
            keys = looked_up.params(connection)
            for statement, params, indexes in (
                (
                    rows._ASSEMBLY_HEADS,
                    {"dataset_id": "d", "patient_id": "p", "subject_id": "s", **keys},
                    ["patient", "full_url", "full_url_tail", "identity", "identity"],
                ),
                (rows._LOOSE_HEADS, {"dataset_id": "d", **keys}, ["full_url", "full_url_tail", "identity", "identity"]),
                (rows._LOOSE_ROWS, {"dataset_id": "d", **keys}, ["full_url", "full_url_tail", "identity", "identity"]),
                (rows._PATIENT_ROWS, {"dataset_id": "d", "patient_id": "p"}, ["patient"]),
                (rows._DATASET_STATE, {"dataset_id": "d"}, ["pending"]),
                (
                    rows._DATASET_AND_STATES,
                    {"dataset_id": "d", "resource_type": "Observation", "resource_id": "o", "patient_id": "p"},
                    ["identity", "identity", "pending"],
                ),
            ):
                compiled = statement.compile(dialect=connection.dialect)
                values = compiled.construct_params(params)
                sql, values = str(compiled), tuple(values[k] for k in compiled.positiontup)
                plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, values).all()
                reads = [detail for *_, detail in plan if "fhir_resources" in detail]
                assert len(reads) == len(indexes), plan
                for read, index in zip(reads, indexes, strict=True):
                    name = "sqlite_autoindex_fhir_resources_1" if index == "identity" else f"ix_fhir_resources_{index}"
                    assert read.startswith("SEARCH") and f"INDEX {name} (dataset_id=?" in read, (read, plan)
            # a patient-less write's referrers: the reference table by key, then their rows by primary key
            compiled = rows._REFERRERS.compile(dialect=connection.dialect)
            values = compiled.construct_params({"dataset_id": "d", "keys": '["Medication/m", "Medication?"]'})
            sql, values = str(compiled), tuple(values[k] for k in compiled.positiontup)
            plan = [detail for *_, detail in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, values).all()]
            reads = [detail for detail in plan if "fhir_resource" in detail]
            assert len(reads) == 2 and all(read.startswith("SEARCH") for read in reads), plan
            assert "INDEX ix_fhir_resource_references_key (dataset_id=? AND ref_key=?)" in reads[0], plan
            assert "fhir_resources USING INTEGER PRIMARY KEY (rowid=?)" in reads[1], plan
    finally:
        store.close()


def test_a_patient_less_resource_is_found_by_the_tail_of_its_full_url(store):
    """A reference `Medication/med-x` names a patient-less Medication kept as `m1` with the fullUrl
    `http://h/fhir/Medication/med-x` (BundleIndex finds a resource by its fullUrl's Type/id tail): the lookup by
    key must find it too, in the incremental assembly and in the whole one."""
    from gateway.services.fhir_incremental import assemble_parts
    from gateway.services.fhir_resources import assemble

    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-01-01"}
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "a medication"}}
    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/med-x"},
    }
    cache = FragmentCache()
    _put(store, patient, cache=cache)
    _put(store, medication, cache=cache, full_url="http://h/fhir/Medication/med-x")
    _put(store, statement, cache=cache)
    with store.engine.connect() as connection:
        whole = assemble(connection, "ds1", "p1")
        parts = assemble_parts(connection, "ds1", "p1", FragmentCache())
    assert whole is not None and parts is not None
    assert [(r.resource_type, r.resource_id) for r in whole] == [
        ("Patient", "p1"),
        ("Medication", "m1"),
        ("MedicationStatement", "ms1"),
    ]
    assert [(h.resource_type, h.resource_id) for h in parts.heads] == [(r.resource_type, r.resource_id) for r in whole]


def test_one_parameter_in_lists_stay_visible_to_sqlites_planner():
    """`in_values` past SMALL and InParameter compile to a bare IN (no `= 1` after it, which SQLite cannot use an
    index through), and pass the values as one parameter."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    from gateway.store.tables import phenopacket_terms
    from gateway.store.values import SMALL, InParameter, in_values

    many = [f"HP:{n:07d}" for n in range(SMALL + 1)]
    for condition in (in_values(phenopacket_terms.c.term, many), InParameter(phenopacket_terms.c.term, "keys")):
        query = sa.select(phenopacket_terms.c.term).where(condition)
        on_sqlite = str(query.compile(dialect=sqlite.dialect()))
        assert "json_each" in on_sqlite and "= 1" not in on_sqlite and "IS 1" not in on_sqlite
        assert "= ANY" in str(query.compile(dialect=postgresql.dialect()))
    few = str(sa.select(phenopacket_terms.c.term).where(in_values(phenopacket_terms.c.term, many[:3])).compile())
    assert "json_each" not in few
