"""Property (issue 11): phenopacket ingest never reduces the number of distinct documents without saying so.

Collections as phenopacket-store publishes them reuse subject labels ("Patient 1" 184 times, "proband" 90
times in 10,580 files) and, merged with other sources, document ids too. Whatever the mix of ids, labels,
Families and requests: every distinct document id is one stored phenopacket of its own, a document that
does not add one is answered as an update (`created` false) or carries a `duplicate` warning, one id
given to two different documents of one request refuses the request with an error on both, and a later
request with a stored id about another subject label (another person) is refused (`another-person`).
"""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.services.ingest import ingest_phenopackets
from tests.store.test_phenopacket_real_identifiers import _packet

KEY = b"no-silent-loss-test-key-00000000"
DOC_IDS = ("PMID_1_proband", "PMID_2_proband", "PMID_2_Patient_1", "patient", "P1")
LABELS = ("proband", "patient", "Patient 1", "P1")
_datasets = itertools.count()


@st.composite
def documents(draw) -> dict:
    doc_id, label = draw(st.sampled_from(DOC_IDS)), draw(st.sampled_from(LABELS))
    sample = draw(st.sampled_from((None, "biosample.1")))
    packet = _packet(doc_id, label, sample=sample)
    packet["phenotypicFeatures"][0]["excluded"] = draw(st.booleans())  # same id, different content
    if not draw(st.booleans()):
        return packet
    mother = _packet(f"{doc_id}-mother", "mother")
    return {
        "id": f"family-of-{label}",
        "proband": packet,
        "relatives": [mother],
        "pedigree": {
            "persons": [
                {"familyId": "f", "individualId": label, "maternalId": "mother", "paternalId": "0", "sex": "FEMALE"},
                {"familyId": "f", "individualId": "mother", "sex": "FEMALE"},
            ]
        },
        "metaData": packet["metaData"],
    }


def _phenopacket(doc: dict) -> dict:
    return doc.get("proband", doc)


def _identity(doc: dict) -> str:
    return doc["proband"]["id"] if "proband" in doc else doc["id"]


def _label(doc: dict) -> str:
    return _phenopacket(doc)["subject"]["id"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.lists(documents(), min_size=1, max_size=6), min_size=1, max_size=3))
def test_ingest_never_loses_a_distinct_document_silently(store, requests):
    dataset = f"prop{next(_datasets)}"
    seen: set[str] = set()
    labels: dict[str, str] = {}  # stored document id -> the subject label it was stored with
    for docs in requests:
        before = store.list_phenopackets(dataset_id=dataset, limit=1)[1] if seen else 0
        results, reports = ingest_phenopackets(docs, store=store, key=KEY, dataset_id=dataset)
        by_identity: dict[str, list[dict]] = {}
        for doc in docs:
            by_identity.setdefault(_identity(doc), []).append(doc)
        # one id, two different phenopackets, or two different Families around one (a phenopacket sent alone and
        # as a Family's proband is one document: stored once, with its Family)
        two_in_one = any(
            any(_phenopacket(d) != _phenopacket(same[0]) for d in same)
            or len({json.dumps(d, sort_keys=True) for d in same if "proband" in d}) > 1
            for same in by_identity.values()
        )
        another = any(labels.get(_identity(d), _label(d)) != _label(d) for d in docs)
        if two_in_one:  # one id, two different documents: refused on both, nothing stored
            assert results == []
            errors = [i for r in reports for i in r if i.is_error]
            assert errors and "duplicate" in {i.code for i in errors} <= {"duplicate", "another-person"}
            assert (store.list_phenopackets(dataset_id=dataset, limit=1)[1] if seen else 0) == before
            continue
        if another:  # a stored id, another subject: refused, nothing replaced
            assert results == []
            errors = [i for r in reports for i in r if i.is_error]
            assert errors and {i.code for i in errors} == {"another-person"}
            assert (store.list_phenopackets(dataset_id=dataset, limit=1)[1] if seen else 0) == before
            continue
        assert all(r.ok for r in reports) and len(results) == len(docs)
        in_request: set[str] = set()
        for doc, result, report in zip(docs, results, reports, strict=True):
            identity = _identity(doc)
            said = not result.created or any(i.code == "duplicate" for i in report)
            if identity in seen or identity in in_request:
                assert said, f"{identity!r} replaced an earlier document without a word"
            in_request.add(identity)
            labels[identity] = _label(doc)
        seen |= in_request
        stored, total = store.list_phenopackets(dataset_id=dataset, limit=1000)
        assert total == len(seen) >= before  # one stored phenopacket per distinct document id, never fewer
        assert len({p.subject_id for p in stored}) == total  # and no two of them are one person
