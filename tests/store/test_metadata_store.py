"""The metadata store on SQLite and PostgreSQL: round trip, idempotence, all-or-nothing,
concurrency, pagination, erasure."""

from __future__ import annotations

import json
import threading
from datetime import UTC

import pytest
import sqlalchemy as sa

from gateway.store import MetadataStore, PhenopacketRecord, StoreError, UnknownDatasetError
from gateway.store.tables import biosamples, phenopacket_families, phenopacket_terms, phenopackets
from tests.store.store_workers import document, run_in_processes, save_same_subject


def record(subject: str, *, dataset: str = "ds1", phenotype: str = "HP:0001250", **changes) -> PhenopacketRecord:
    fields = {
        "id": f"pp-{dataset}-{subject}",
        "dataset_id": dataset,
        "subject_id": subject,
        "document": document(subject, phenotype),
        "source": "Bundle/b1",
    }
    return PhenopacketRecord(**{**fields, **changes})


def count(store: MetadataStore, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.fixture
def retinoblastoma(reference_dir) -> dict:
    return json.loads((reference_dir / "phenopackets/_phenopacket-tools/phenopackets/retinoblastoma.json").read_text())


def test_round_trip_keeps_document_source_issues_and_index(store, retinoblastoma):
    issue = {"severity": "warning", "code": "unmapped", "message": "Encounter not mapped", "location": "/entry/3"}
    saved = store.save_phenopackets(
        [PhenopacketRecord("pp-rb", "ds1", "subj-rb", retinoblastoma, source="Bundle/rb-1", issues=(issue,))]
    )
    assert [(r.id, r.subject_id, r.created) for r in saved] == [("pp-rb", "subj-rb", True)]

    stored = store.get_phenopacket("pp-rb")
    assert stored.document == retinoblastoma
    assert (stored.dataset_id, stored.subject_id, stored.sex) == ("ds1", "subj-rb", "FEMALE")
    assert stored.source == "Bundle/rb-1"
    assert stored.issues == (issue,)
    assert stored.phenotypes == ("HP:0000486", "HP:0000541", "HP:0000555", "HP:0030084")
    assert stored.excluded_phenotypes == ()
    assert stored.diseases == ("NCIT:C7541",)
    assert stored.extra["age_iso"] == "P6M"
    assert stored.extra["terms"]["sampled_tissue"] == ("UBERON:0000970",)
    assert stored.created_at.tzinfo is UTC and stored.created_at == stored.updated_at
    assert store.get_phenopacket("no-such-id") is None
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(biosamples.c.biosample_id, biosamples.c.sampled_tissue)).all() == [
            ("biosample.1", "UBERON:0000970")
        ]


def test_saving_again_updates_never_duplicates(store):
    first = store.save_phenopackets([record("s1", phenotype="HP:0000001"), record("s2")])
    assert [r.created for r in first] == [True, True]
    before = store.get_phenopacket("pp-ds1-s1")

    again = store.save_phenopackets([record("s1", phenotype="HP:0000002", source="Bundle/b2"), record("s3")])
    assert [(r.subject_id, r.created) for r in again] == [("s1", False), ("s3", True)]

    after = store.get_phenopacket("pp-ds1-s1")
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert after.source == "Bundle/b2"
    assert after.phenotypes == ("HP:0000002",)  # terms replaced, not accumulated
    assert after.extra["revision"] == 2
    assert count(store, phenopackets) == 3
    assert count(store, phenopacket_terms) == 3


def test_same_patient_twice_in_one_batch_keeps_the_last(store):
    results = store.save_phenopackets([record("s1", phenotype="HP:0000001"), record("s1", phenotype="HP:0000002")])
    assert [r.created for r in results] == [True, False]
    assert store.get_phenopacket("pp-ds1-s1").phenotypes == ("HP:0000002",)
    assert count(store, phenopackets) == 1


def test_a_new_id_for_the_same_patient_replaces_the_old_one(store):
    store.save_phenopackets([record("s1", id="old-id")])
    assert store.save_phenopackets([record("s1", id="new-id")])[0].created is False
    assert store.get_phenopacket("old-id") is None
    assert store.get_phenopacket("new-id").subject_id == "s1"


def test_a_constraint_violation_in_the_third_record_leaves_nothing(store):
    store.save_phenopackets([record("existing")])
    batch = [record("a"), record("b"), record("c", id="pp-ds1-existing"), record("d")]  # id taken by another patient
    with pytest.raises(sa.exc.IntegrityError):
        store.save_phenopackets(batch)
    assert count(store, phenopackets) == 1
    assert count(store, phenopacket_terms) == 1
    assert store.find_by_subject("a") == []


def test_a_failure_mid_batch_leaves_earlier_versions_untouched(store):
    store.save_phenopackets([record("s1", phenotype="HP:0000001")])
    bad = record("s2")
    bad.document["unserialisable"] = float("nan")  # refused by the strict JSON writer mid-transaction
    with pytest.raises((ValueError, sa.exc.StatementError)):
        store.save_phenopackets([record("s1", phenotype="HP:0000009"), record("s0"), bad, record("s3")])
    kept = store.get_phenopacket("pp-ds1-s1")
    assert kept.phenotypes == ("HP:0000001",)
    assert kept.extra["revision"] == 1
    assert count(store, phenopackets) == 1


def test_unknown_dataset_is_refused_before_anything_is_written(store):
    with pytest.raises(UnknownDatasetError, match="nowhere"):
        store.save_phenopackets([record("s1"), record("s2"), record("s3", dataset="nowhere")])
    assert count(store, phenopackets) == 0


@pytest.mark.parametrize(
    "bad",
    [
        PhenopacketRecord("", "ds1", "s1", {}),
        PhenopacketRecord("x", "ds1", "", {}),
        PhenopacketRecord("x", "ds1", "s1", ["not", "an", "object"]),
        {"id": "x"},
    ],
)
def test_malformed_records_are_refused_with_their_position(store, bad):
    with pytest.raises(StoreError, match="record 1"):
        store.save_phenopackets([record("ok"), bad])
    assert count(store, phenopackets) == 0


def test_concurrent_threads_saving_one_patient_leave_one_row(store):
    workers, times = 6, 8
    created: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(times):
                results = store.save_phenopackets([record("shared", phenotype=f"HP:{worker:03d}{i:04d}")])
                created.extend(r.created for r in results)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert created.count(True) == 1 and len(created) == workers * times
    [stored] = store.find_by_subject("shared")
    assert stored.extra["revision"] == workers * times
    assert len(stored.phenotypes) == 1 and count(store, phenopacket_terms) == 1


def test_concurrent_processes_saving_one_patient_leave_one_row(store, store_url):
    processes, times = 3, 10
    created = run_in_processes(save_same_subject, [(store_url, worker, times) for worker in range(processes)])
    flags = [flag for flags in created for flag in flags]
    assert len(flags) == processes * times and flags.count(True) == 1
    [stored] = store.find_by_subject("shared-subject")
    assert stored.extra["revision"] == processes * times
    assert count(store, phenopackets) == 1 and count(store, phenopacket_terms) == 1


def test_pagination_returns_every_record_once_with_the_total(store):
    store.ensure_dataset("ds2")
    store.save_phenopackets([record(f"s{i:02d}") for i in range(23)] + [record("other", dataset="ds2")])
    seen = []
    for offset in range(0, 30, 10):
        page, total = store.list_phenopackets(dataset_id="ds1", offset=offset, limit=10)
        assert total == 23
        seen.extend(p.subject_id for p in page)
    assert sorted(seen) == [f"s{i:02d}" for i in range(23)] and len(seen) == 23
    assert store.list_phenopackets()[1] == 24
    assert store.list_phenopackets(offset=100) == ([], 24)
    with pytest.raises(StoreError):
        store.list_phenopackets(limit=100_000)
    with pytest.raises(StoreError):
        store.list_phenopackets(offset=-1)


def test_datasets_are_listed_with_their_sizes(store):
    store.ensure_dataset("ds2", name="Two", description="second")
    store.ensure_dataset("ds1")  # no name given: keeps "Dataset one"
    store.save_phenopackets([record("s1"), record("s2")])
    listed = {d["id"]: d for d in store.list_datasets()}
    assert (listed["ds1"]["name"], listed["ds1"]["phenopackets"]) == ("Dataset one", 2)
    assert (listed["ds2"]["description"], listed["ds2"]["phenopackets"]) == ("second", 0)

    store.ensure_dataset("ds2", name="Renamed")  # configuration changed: name updated, description kept
    renamed = {d["id"]: d for d in store.list_datasets()}["ds2"]
    assert (renamed["name"], renamed["description"]) == ("Renamed", "second")
    assert renamed["updated_at"] > renamed["created_at"]


def test_delete_subject_removes_every_trace(store, retinoblastoma):
    store.ensure_dataset("ds2")
    store.save_phenopackets(
        [
            PhenopacketRecord("rb-1", "ds1", "gone", retinoblastoma),
            PhenopacketRecord("rb-2", "ds2", "gone", retinoblastoma),
            record("kept"),
        ]
    )
    assert len(store.find_by_subject("gone")) == 2
    assert [p.id for p in store.find_by_subject("gone", dataset_id="ds2")] == ["rb-2"]

    assert store.delete_subject("gone") == 2
    assert store.find_by_subject("gone") == []
    assert store.get_phenopacket("rb-1") is None
    assert count(store, biosamples) == 0
    with store.engine.connect() as connection:
        left = connection.execute(sa.select(phenopacket_terms.c.term)).scalars().all()
    assert left == ["HP:0001250"]  # only the kept patient's term
    assert store.delete_subject("gone") == 0


def test_delete_dataset_withdraws_its_phenopackets(store):
    store.ensure_dataset("ds2")
    store.save_phenopackets([record("a"), record("b", dataset="ds2")])
    assert store.delete_dataset("ds2") == 1
    assert [d["id"] for d in store.list_datasets()] == ["ds1"]
    assert store.list_phenopackets()[1] == 1


def test_ping_answers_for_a_live_store(store):
    assert store.ping()


def test_ping_is_false_when_the_server_is_unreachable():
    unreachable = MetadataStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    try:
        assert unreachable.ping() is False
        assert unreachable.migrations_current() is False
    finally:
        unreachable.close()


def test_in_memory_sqlite_works_for_quick_tools():
    store = MetadataStore.open("sqlite://")
    store.ensure_dataset("ds1")
    assert store.save_phenopackets([record("s1")])[0].created
    assert store.list_phenopackets()[1] == 1
    store.close()


def _indexed(subject: str, phenotypes: dict[str, str], samples: dict[str, str], family: bool) -> PhenopacketRecord:
    doc = document(subject, "HP:0000001")
    doc["phenotypicFeatures"] = [{"type": {"id": t, "label": label}} for t, label in phenotypes.items()]
    doc["diseases"] = [{"term": {"id": "MONDO:0007947", "label": "Marfan syndrome"}}]
    doc["biosamples"] = [{"id": s, "sampledTissue": {"id": tissue, "label": "tissue"}} for s, tissue in samples.items()]
    relatives = {"id": "fam-1", "relatives": [document("rel-1", "HP:0000002")]} if family else None
    return record(subject, document=doc, family=relatives)


def _index_rows(store: MetadataStore, subject: str) -> tuple[list, list, list]:
    """A patient's term, biosample and family rows, without its primary key."""
    pk = sa.select(phenopackets.c.pk).where(phenopackets.c.subject_id == subject).scalar_subquery()
    t, b, f = phenopacket_terms.c, biosamples.c, phenopacket_families.c
    with store.engine.connect() as connection:
        return (
            connection.execute(
                sa.select(t.dataset_id, t.kind, t.term, t.label).where(t.phenopacket_pk == pk).order_by(t.kind, t.term)
            ).all(),
            connection.execute(
                sa.select(b.dataset_id, b.biosample_id, b.sampled_tissue)
                .where(b.phenopacket_pk == pk)
                .order_by(b.biosample_id)
            ).all(),
            connection.execute(sa.select(f.id, f.relatives).where(f.phenopacket_pk == pk)).all(),
        )


@pytest.mark.parametrize("family_before,family_after", [(True, False), (False, True), (True, True)])
def test_a_replaced_phenopackets_index_rows_are_those_a_first_save_makes(store, family_before, family_after):
    """Replacing diffs the index rows (adds, relabels, re-tissues, removes) instead of rewriting them all:
    the result must be exactly what saving the new document afresh makes."""
    store.save_phenopackets(
        [_indexed("s1", {"HP:0000001": "a", "HP:0000002": "b"}, {"bs1": "UBERON:1", "bs2": "UBERON:2"}, family_before)]
    )
    new = {"HP:0000001": "a, relabelled", "HP:0000003": "c"}, {"bs1": "UBERON:3", "bs3": "UBERON:4"}
    assert store.save_phenopackets([_indexed("s1", *new, family_after)])[0].created is False
    store.save_phenopackets([_indexed("fresh", *new, family_after)])
    assert _index_rows(store, "s1") == _index_rows(store, "fresh")
    terms, samples, families = _index_rows(store, "s1")
    assert ("ds1", "phenotype", "HP:0000001", "a, relabelled") in terms
    assert "HP:0000002" not in {term for _, _, term, _ in terms}
    assert [s for _, s, _ in samples] == ["bs1", "bs3"] and len(families) == int(family_after)


def test_a_replaced_term_raises_sqlites_term_marker(tmp_path):
    """gateway.beacon.individuals caches the set of present terms keyed on SQLite's max(rowid) of
    phenopacket_terms: a patient whose terms are the newest rows, replaced by as many other terms, must
    still raise it (new rows go in before the removed ones go out, so no rowid is reused)."""
    store = MetadataStore.open(f"sqlite:///{tmp_path}/terms.db")
    try:
        store.ensure_dataset("ds1")
        marker = sa.text("SELECT max(rowid) FROM phenopacket_terms")
        store.save_phenopackets([record("s1", phenotype="HP:0000001")])
        with store.engine.connect() as connection:
            before = connection.execute(marker).scalar()
        store.save_phenopackets([record("s1", phenotype="HP:0000002")])
        with store.engine.connect() as connection:
            assert connection.execute(marker).scalar() > before
        assert store.get_phenopacket("pp-ds1-s1").phenotypes == ("HP:0000002",)
    finally:
        store.close()


def test_a_batch_replacing_every_term_of_several_patients_leaves_only_the_new_ones(store):
    """The set-based removal (a row-value IN list on SQLite, arrays on PostgreSQL) across patients."""
    subjects = [f"s{n}" for n in range(3)]
    old = {f"HP:00000{n:02d}": "old" for n in range(10)}
    new = {f"HP:00001{n:02d}": "new" for n in range(10)}
    store.save_phenopackets([_indexed(s, old, {"bs1": "UBERON:1", "bs2": "UBERON:2"}, False) for s in subjects])
    store.save_phenopackets([_indexed(s, new, {"bs9": "UBERON:9"}, False) for s in subjects])
    for subject in subjects:
        terms, samples, _ = _index_rows(store, subject)
        assert {term for _, kind, term, _ in terms if kind == "phenotype"} == set(new)
        assert [s for _, s, _ in samples] == ["bs9"]
    assert count(store, phenopacket_terms) == 3 * (10 + 1 + 1)  # phenotypes, the disease, the tissue
