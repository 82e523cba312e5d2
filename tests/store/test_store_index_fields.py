"""index_fields on the real phenopackets of the reference set, and the stored index
answering the look-ups Beacon filters will make."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from gateway.store import PhenopacketRecord, index_fields
from gateway.store.indexing import duration_days
from gateway.store.tables import PHENOTYPE, TERM_KINDS, phenopacket_terms, phenopackets

CURIE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*:[^\s:][^\s]*$")


@pytest.fixture(scope="module")
def real_phenopackets(reference_dir) -> dict[str, dict]:
    files = sorted((reference_dir / "phenopackets").glob("*/PMID_*.json"))
    assert len(files) == 300
    return {f"{f.parent.name}/{f.name}": json.loads(f.read_text()) for f in files}


def test_a_known_phenopacket(reference_dir):
    path = reference_dir / "phenopackets/ATP2A2/PMID_39970126_FAMILY_3_individual_F3P2_pedigree_I1.json"
    fields = index_fields(json.loads(path.read_text()))
    assert fields["sex"] == "MALE"
    assert fields["age_iso"] == "P75Y" and fields["age_days"] == pytest.approx(75 * 365.2425)
    assert fields["vital_status"] == "DECEASED"
    assert fields["phenotypes"] == ["HP:0002913", "HP:0003701", "HP:0008942", "HP:0003326"]
    assert fields["excluded_phenotypes"] == ["HP:0002460"]
    assert fields["diseases"] == ["OMIM:621236"]
    assert fields["biosample_ids"] == []


def test_biosamples_and_other_terms(reference_dir):
    path = reference_dir / "phenopackets/_phenopacket-tools/phenopackets/retinoblastoma.json"
    fields = index_fields(json.loads(path.read_text()))
    assert fields["biosample_ids"] == ["biosample.1"]
    assert fields["biosamples"] == [{"id": "biosample.1", "sampled_tissue": "UBERON:0000970"}]
    kinds = {kind for kind, _, _ in fields["terms"]}
    assert {"sampled_tissue", "biosample_phenotype", "measurement", "medical_action", "disease"} <= kinds
    assert ("medical_action", "NCIT:C48601", "Enucleation") in fields["terms"]


def test_every_real_phenopacket_is_indexed_completely(real_phenopackets):
    seen_excluded = seen_age = 0
    for name, document in real_phenopackets.items():
        fields = index_fields(document)
        features = document.get("phenotypicFeatures", [])
        assert set(fields["phenotypes"]) == {f["type"]["id"] for f in features if not f.get("excluded")}, name
        assert set(fields["excluded_phenotypes"]) == {f["type"]["id"] for f in features if f.get("excluded")}, name
        assert set(fields["diseases"]) == {d["term"]["id"] for d in document.get("diseases", [])}, name
        assert fields["sex"] == document["subject"].get("sex"), name
        keys = [(kind, term) for kind, term, _ in fields["terms"]]
        assert len(keys) == len(set(keys)), f"{name}: duplicate index terms"
        assert all(kind in TERM_KINDS and CURIE.match(term) for kind, term in keys), name
        if fields["age_iso"] is not None:
            assert fields["age_days"] is not None and fields["age_days"] > 0, name
            seen_age += 1
        seen_excluded += bool(fields["excluded_phenotypes"])
    assert seen_excluded > 100 and seen_age > 100  # the set exercises both, as its SOURCE.md says


def test_odd_shapes_are_not_indexed_and_do_not_fail():
    assert index_fields({}) == {
        "sex": None,
        "age_iso": None,
        "age_days": None,
        "vital_status": None,
        "phenotypes": [],
        "excluded_phenotypes": [],
        "diseases": [],
        "excluded_diseases": [],
        "biosample_ids": [],
        "biosamples": [],
        "terms": [],
    }
    odd = {"subject": "x", "phenotypicFeatures": {"type": {}}, "diseases": [None, {"term": {"id": ""}}, {"term": 3}]}
    assert index_fields(odd)["terms"] == []
    assert index_fields({"diseases": [{"term": {"id": "OMIM:1"}, "excluded": True}]})["excluded_diseases"] == ["OMIM:1"]


@pytest.mark.parametrize(
    ("duration", "days"),
    [("P1Y", 365.2425), ("P12M", 365.2425), ("P2W", 14), ("P1DT12H", 1.5), ("P1Y6M2W3D", 365.2425 * 1.5 + 17)],
)
def test_durations_in_days(duration, days):
    assert duration_days(duration) == pytest.approx(days)


@pytest.mark.parametrize("bad", ["P", "PT", "1Y", "P1YT", "P-1Y", "", None, 12])
def test_non_durations_give_none(bad):
    assert duration_days(bad) is None


def test_stored_index_answers_term_lookups_like_a_scan(store, real_phenopackets):
    records = [
        PhenopacketRecord(id=doc["id"], dataset_id="ds1", subject_id=f"subject-{i}", document=doc, source=name)
        for i, (name, doc) in enumerate(real_phenopackets.items())
    ]
    assert all(r.created for r in store.save_phenopackets(records))

    for term in ("HP:0001250", "HP:0001263", "HP:0000252"):
        expected = {
            doc["id"]
            for doc in real_phenopackets.values()
            if any(f["type"]["id"] == term and not f.get("excluded") for f in doc.get("phenotypicFeatures", []))
        }
        query = (
            sa.select(phenopackets.c.id)
            .join(phenopacket_terms, phenopacket_terms.c.phenopacket_pk == phenopackets.c.pk)
            .where(phenopacket_terms.c.kind == PHENOTYPE, phenopacket_terms.c.term == term)
            .where(phenopacket_terms.c.dataset_id == "ds1", phenopackets.c.sex == "FEMALE")
        )
        with store.engine.connect() as connection:
            found = set(connection.execute(query).scalars())
        females = {i for i in expected if _by_id(real_phenopackets, i)["subject"].get("sex") == "FEMALE"}
        assert expected, term
        assert found == females, term

    sample = next(iter(real_phenopackets.values()))
    assert store.get_phenopacket(sample["id"]).document == sample


def _by_id(documents: dict[str, dict], phenopacket_id: str) -> dict:
    return next(doc for doc in documents.values() if doc["id"] == phenopacket_id)
