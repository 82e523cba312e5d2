"""Issue 11: phenopacket ingest never lets two different people collapse into one, and no raw person
identifier survives inside a stored document. Real collections in ../shared/reference/phenopackets
reuse subject ids such as "proband", "patient" and "Patient 2" for unrelated people."""

import json
from collections import defaultdict

import pytest

from gateway.services.ingest import ingest_phenopackets

KEY = b"identity-test-key-not-a-secret-0"


def _collection(reference_dir, subject_ids):
    """Every reference phenopacket whose subject.id is one of `subject_ids` (outside the tool fixtures)."""
    found = []
    for path in sorted((reference_dir / "phenopackets").glob("*/*.json")):
        if path.parent.name.startswith("_"):
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("subject", {}).get("id") in subject_ids:
            found.append((path, doc))
    return found


@pytest.fixture
def shared_subject_ids(reference_dir):
    docs = _collection(reference_dir, {"proband", "patient", "Patient 2"})
    by_subject = defaultdict(set)
    for _, doc in docs:
        by_subject[doc["subject"]["id"]].add(doc["id"])
    assert all(len(ids) > 2 for ids in by_subject.values())  # the reuse the test is about is really there
    return docs


def test_unrelated_phenopackets_sharing_a_subject_id_are_all_stored(store, shared_subject_ids):
    """Was: 149 in, 123 stored, exit 0; here every distinct document must be stored."""
    docs = [doc for _, doc in shared_subject_ids]
    results, reports = ingest_phenopackets(docs, store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports)
    assert len({r.id for r in results}) == len({d["id"] for d in docs}) == len(docs)
    assert all(r.created for r in results)
    assert store.list_phenopackets(dataset_id="ds1")[1] == len(docs)


def test_same_document_twice_is_an_update_said_so(store, shared_subject_ids):
    doc = shared_subject_ids[0][1]
    first, _ = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    again, _ = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    assert first[0].created and not again[0].created and first[0].id == again[0].id
    results, reports = ingest_phenopackets([doc, doc], store=store, key=KEY, dataset_id="ds1", locations=["a", "b"])
    duplicates = [[i.message for i in report if i.code == "duplicate"] for report in reports]
    assert len(results) == 2 and results[0].id == results[1].id
    assert len(duplicates[0]) == 1 and "at b" in duplicates[0][0]
    assert len(duplicates[1]) == 1 and "at a" in duplicates[1][0]


def test_no_raw_person_identifier_survives_in_a_stored_document(store, shared_subject_ids):
    """Was: genomicInterpretations[].subjectOrBiosampleId kept the raw subject id."""
    docs = [doc for _, doc in shared_subject_ids]
    ingest_phenopackets(docs, store=store, key=KEY, dataset_id="ds1")
    raw = {doc["subject"]["id"] for doc in docs}
    carried = 0
    for stored in store.list_phenopackets(dataset_id="ds1", limit=100)[0]:
        document = stored.document
        for interpretation in document.get("interpretations", ()):
            for genomic in interpretation.get("diagnosis", {}).get("genomicInterpretations", ()):
                assert genomic["subjectOrBiosampleId"] not in raw
                assert genomic["subjectOrBiosampleId"] == document["subject"]["id"]
                carried += 1
        assert document["subject"]["id"].startswith("pid-")
    assert carried > 0
