"""Beacon answers on phenopackets in the shapes other real collections give them.

Seen on PhEval's corpora (monarch-initiative/pheval, 853 phenopackets made for benchmarking Exomiser,
LIRICAL and Phen2Gene), counted independently from the input files:
- 666 documents name genes by a bare Ensembl id (`geneContext.valueId: "ENSG00000196839"`); the spec says
  the id SHOULD be a CURIE, and the gateway refused every one of them (an error, not a warning).
- 381 documents give their disease only as the diagnosis of a SOLVED interpretation (no `diseases`):
  a filter on that OMIM id found none of them (OMIM:616900: 19 expected, 0 found).
- 317 documents have no `subject.sex` (proto3's UNKNOWN_SEX, omitted in JSON): their Beacon records say
  sex NCIT:C17998 and filtering_terms lists it, but a filter on it (or on sex = UNKNOWN_SEX) found 0.
A hand-made cancer phenopacket using the v2 biosample elements phenopacket-store never has
(histologicalDiagnosis, tumorGrade, pathologicalStage, pathologicalTnmFinding, diagnosticMarkers,
materialSample): its Beacon biosample record showed them, but a filter on any of them found nothing.
Fixtures are our own, in those shapes.
"""

from __future__ import annotations

import copy

from gateway.validation import validate_phenopacket
from tests.store.test_phenopacket_real_identifiers import _packet


def _individuals(client, operator, filters: list[dict], granularity: str = "count") -> dict:
    body = {"meta": {"apiVersion": "v2.0"}, "query": {"filters": filters, "requestedGranularity": granularity}}
    answer = client.post("/api/individuals", json=body, headers=operator)
    assert answer.status_code == 200, answer.json
    return answer.json


def _count(client, operator, filters: list[dict]) -> int:
    return _individuals(client, operator, filters)["responseSummary"]["numTotalResults"]


def _store(client, operator, *docs: dict) -> None:
    answer = client.post("/phenopackets", json=list(docs), headers=operator)
    assert answer.status_code == 201, answer.json


def _bare_gene(doc_id: str) -> dict:
    doc = _packet(doc_id, "Patient")
    call = doc["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    call["variantInterpretation"]["variationDescriptor"]["geneContext"] = {
        "valueId": "ENSG00000231852",
        "symbol": "CYP21A2",
    }
    return doc


def test_a_bare_gene_id_is_a_warning_not_a_refusal(client, operator):
    report = validate_phenopacket(_bare_gene("PMID_1_a"), target="input")
    assert report.ok, report.to_text()
    warned = [(i.code, i.location) for i in report if i.code == "not-curie"]
    where = "/interpretations/0/diagnosis/genomicInterpretations/0/variantInterpretation/variationDescriptor"
    assert warned == [("not-curie", f"{where}/geneContext/valueId")]
    _store(client, operator, _bare_gene("PMID_1_a"))
    listed = client.get("/phenopackets", headers=operator).json["phenopackets"]
    stored = listed[0]["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    assert stored["variantInterpretation"]["variationDescriptor"]["geneContext"]["valueId"] == "ENSG00000231852"


def test_an_empty_gene_id_is_still_refused():
    doc = _bare_gene("PMID_2_b")
    call = doc["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    call["variantInterpretation"]["variationDescriptor"]["geneContext"]["valueId"] = " "
    assert not validate_phenopacket(doc, target="input").ok


def _diagnosed_only(doc_id: str, progress: str, disease: str) -> dict:
    doc = _packet(doc_id, "proband")
    doc["interpretations"][0]["progressStatus"] = progress
    doc["interpretations"][0]["diagnosis"]["disease"] = {"id": disease, "label": "a disease"}
    doc.pop("diseases", None)
    return doc


def test_the_diagnosis_of_a_solved_case_is_found_as_a_disease(client, operator):
    _store(
        client,
        operator,
        _diagnosed_only("PMID_3_c", "SOLVED", "OMIM:616900"),
        _diagnosed_only("PMID_4_d", "SOLVED", "OMIM:616900"),
        _diagnosed_only("PMID_5_e", "IN_PROGRESS", "OMIM:616900"),  # a hypothesis, not the subject's disease
        _diagnosed_only("PMID_6_f", "UNSOLVED", "OMIM:616975"),
    )
    assert _count(client, operator, [{"id": "OMIM:616900"}]) == 2
    assert _count(client, operator, [{"id": "OMIM:616975"}]) == 0
    records = _individuals(client, operator, [{"id": "OMIM:616900"}], "record")["response"]["resultSets"]
    results = [r for s in records for r in s["results"]]
    assert len(results) == 2
    assert all([d["diseaseCode"]["id"] for d in r["diseases"]] == ["OMIM:616900"] for r in results)


def test_a_disease_named_both_ways_is_counted_once(client, operator):
    doc = _diagnosed_only("PMID_7_g", "SOLVED", "OMIM:616900")
    doc["diseases"] = [{"term": {"id": "OMIM:616900", "label": "a disease"}}]
    _store(client, operator, doc)
    assert _count(client, operator, [{"id": "OMIM:616900"}]) == 1
    records = _individuals(client, operator, [], "record")["response"]["resultSets"][0]["results"]
    assert [d["diseaseCode"]["id"] for d in records[0]["diseases"]] == ["OMIM:616900"]


def test_a_subject_without_sex_is_found_as_unknown_sex(client, operator):
    female = _packet("PMID_8_h", "h")
    unsaid = copy.deepcopy(_packet("PMID_9_i", "i"))
    del unsaid["subject"]["sex"]
    said = _packet("PMID_10_j", "j")
    said["subject"]["sex"] = "UNKNOWN_SEX"
    _store(client, operator, female, unsaid, said)
    assert _count(client, operator, [{"id": "NCIT:C17998"}]) == 2
    assert _count(client, operator, [{"id": "sex", "operator": "=", "value": "UNKNOWN_SEX"}]) == 2
    assert _count(client, operator, [{"id": "sex", "operator": "!", "value": "UNKNOWN_SEX"}]) == 1
    assert _count(client, operator, [{"id": "sex", "operator": "!", "value": "FEMALE"}]) == 2
    assert _count(client, operator, [{"id": "NCIT:C16576"}]) == 1
    assert _count(client, operator, [{"id": "NCIT:C17998"}, {"id": "HP:0001250"}]) == 2
    listed = client.get("/api/filtering_terms", headers=operator).json["response"]["filteringTerms"]
    assert "NCIT:C17998" in {t["id"] for t in listed}


def _tumour(doc_id: str, histology: str) -> dict:
    doc = _packet(doc_id, "patient")
    doc["metaData"]["resources"].append(
        {
            "id": "ncit",
            "name": "NCI Thesaurus",
            "url": "http://purl.obolibrary.org/obo/ncit.owl",
            "version": "24.01d",
            "namespacePrefix": "NCIT",
            "iriPrefix": "http://purl.obolibrary.org/obo/NCIT_",
        }
    )
    doc["biosamples"] = [
        {
            "id": "tumour-1",
            "individualId": "patient",
            "sampledTissue": {"id": "UBERON:0002048", "label": "lung"},
            "histologicalDiagnosis": {"id": histology, "label": "a histology"},
            "tumorGrade": {"id": "NCIT:C28080", "label": "Grade 3a"},
            "pathologicalTnmFinding": [{"id": "NCIT:C48725", "label": "T2a"}, {"id": "NCIT:C48706", "label": "N1"}],
            "diagnosticMarkers": [{"id": "NCIT:C131711", "label": "marker"}],
        }
    ]
    return doc


def test_a_biosamples_histology_grade_tnm_and_markers_are_filters(client, operator):
    _store(client, operator, _tumour("PMID_20_t", "NCIT:C3512"), _tumour("PMID_21_u", "NCIT:C4917"))
    for term, expected in (
        ("NCIT:C3512", 1),
        ("NCIT:C4917", 1),
        ("NCIT:C28080", 2),
        ("NCIT:C48706", 2),
        ("NCIT:C131711", 2),
    ):
        body = {"meta": {"apiVersion": "v2.0"}, "query": {"filters": [{"id": term}], "requestedGranularity": "record"}}
        answer = client.post("/api/biosamples", json=body, headers=operator).json
        assert answer["responseSummary"]["numTotalResults"] == expected, (term, answer.get("info"))
        for record in (r for s in answer["response"]["resultSets"] for r in s["results"]):
            shown = {record["histologicalDiagnosis"]["id"], record["tumorGrade"]["id"]}
            shown |= {t["id"] for t in record["pathologicalTnmFinding"] + record["diagnosticMarkers"]}
            assert term in shown
    listed = client.get("/api/filtering_terms", headers=operator).json["response"]["filteringTerms"]
    scopes = {t["id"]: set(t.get("scopes", ())) for t in listed}
    assert "biosamples" in scopes["NCIT:C3512"]


def test_a_gene_of_a_genomic_interpretation_is_a_filter(client, operator):
    """ "Individuals with a variant in CYP21A2" had no answer: genes were not indexed at all."""
    carrier = _packet("PMID_30_v", "v")  # a CAUSATIVE variant in HGNC:2600
    studied = _packet("PMID_31_w", "w")
    studied["interpretations"][0]["diagnosis"]["genomicInterpretations"] = [
        {
            "subjectOrBiosampleId": "w",
            "interpretationStatus": "CANDIDATE",
            "gene": {"valueId": "HGNC:2600", "symbol": "CYP21A2"},
        }
    ]
    rejected = _packet("PMID_32_x", "x")
    rejected["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["interpretationStatus"] = "REJECTED"
    _store(client, operator, carrier, studied, rejected, _bare_gene("PMID_33_y"))
    assert _count(client, operator, [{"id": "HGNC:2600"}]) == 2
    assert _count(client, operator, [{"id": "HGNC:2600"}, {"id": "NCIT:C16576"}]) == 2  # both FEMALE
    listed = client.get("/api/filtering_terms", headers=operator).json["response"]["filteringTerms"]
    gene = next(t for t in listed if t["id"] == "HGNC:2600")
    assert gene.get("label") == "CYP21A2" and "individuals" in gene["scopes"]
