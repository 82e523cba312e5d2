"""Person and sample identifiers left raw by phenopacket ingest, as real collections showed them.

Shapes seen in phenopacket-store (monarch-initiative, 10,580 files) and the phenopacket-tools examples:
- 157 store files (cohorts 11q terminal deletion, CYP21A2, EZH1) give their interpretation the subject's
  own label as id ("individual 51", "P9", "118"); the label survived in /interpretations/N/id.
- the GA4GH examples name biosamples "biosample.1": two unrelated people's samples were stored under one
  id, so /api/biosamples/biosample.1 answered both, and the registry's sample number was published.
- Individual.alternateIds (other record numbers of the person) were stored as sent.
The fixtures are our own, in those shapes (SQLite and PostgreSQL).
"""

from __future__ import annotations

import copy
import re

from gateway.security.rotation import rotate_metadata
from gateway.services.ingest import ingest_phenopackets
from gateway.validation.phenopacket import validate_phenopacket

KEY = b"real-identifiers-test-key-000000"
RESOURCES = [
    {
        "id": "hp",
        "name": "human phenotype ontology",
        "url": "http://purl.obolibrary.org/obo/hp.owl",
        "version": "2024-04-26",
        "namespacePrefix": "HP",
        "iriPrefix": "http://purl.obolibrary.org/obo/HP_",
    },
    {
        "id": "uberon",
        "name": "Uber-anatomy ontology",
        "url": "http://purl.obolibrary.org/obo/uberon.owl",
        "version": "2024-03-22",
        "namespacePrefix": "UBERON",
        "iriPrefix": "http://purl.obolibrary.org/obo/UBERON_",
    },
    {
        "id": "geno",
        "name": "Genotype Ontology",
        "url": "http://purl.obolibrary.org/obo/geno.owl",
        "version": "2023-10-08",
        "namespacePrefix": "GENO",
        "iriPrefix": "http://purl.obolibrary.org/obo/GENO_",
    },
    {
        "id": "omim",
        "name": "Online Mendelian Inheritance in Man",
        "url": "https://www.omim.org",
        "version": "2024-06-01",
        "namespacePrefix": "OMIM",
        "iriPrefix": "https://omim.org/entry/",
    },
]
META = {
    "created": "2024-06-01T10:00:00Z",
    "createdBy": "registry curator",
    "resources": RESOURCES,
    "phenopacketSchemaVersion": "2.0",
}


def _packet(doc_id: str, label: str, *, sample: str | None = None, alternate: list[str] | None = None) -> dict:
    """A case-report phenopacket: its interpretation named with the subject's label, a variant for the subject
    (or for its biosample `sample`)."""
    subject: dict = {"id": label, "sex": "FEMALE"}
    if alternate:
        subject["alternateIds"] = alternate
    doc: dict = {
        "id": doc_id,
        "subject": subject,
        "phenotypicFeatures": [{"type": {"id": "HP:0001250", "label": "Seizure"}}],
        "interpretations": [
            {
                "id": label,
                "progressStatus": "SOLVED",
                "diagnosis": {
                    "disease": {"id": "OMIM:201910", "label": "Adrenal hyperplasia, congenital"},
                    "genomicInterpretations": [
                        {
                            "subjectOrBiosampleId": sample or label,
                            "interpretationStatus": "CAUSATIVE",
                            "variantInterpretation": {
                                "variationDescriptor": {
                                    "id": "var-1",
                                    "geneContext": {"valueId": "HGNC:2600", "symbol": "CYP21A2"},
                                    "allelicState": {"id": "GENO:0000136", "label": "homozygous"},
                                }
                            },
                        }
                    ],
                },
            }
        ],
        "metaData": copy.deepcopy(META),
    }
    if sample:
        doc["biosamples"] = [
            {
                "id": sample,
                "individualId": label,
                "sampledTissue": {"id": "UBERON:0000178", "label": "blood"},
            },
            {
                "id": f"{sample}-dna",
                "individualId": label,
                "derivedFromId": sample,
                "sampledTissue": {"id": "UBERON:0000178", "label": "blood"},
                "files": [{"uri": "file://data/x.vcf.gz", "individualToFileIdentifiers": {f"{sample}-dna": "S1"}}],
            },
        ]
        doc["files"] = [{"uri": "file://data/y.bam", "individualToFileIdentifiers": {sample: "S1", label: "S1"}}]
    return doc


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    return []


def _stored(store, results):
    return [store.get_phenopacket(r.id).document for r in results]


def test_the_subjects_label_given_as_interpretation_id_does_not_survive(store):
    docs = [_packet("PMID_1_individual_51", "individual 51"), _packet("PMID_2_P9", "P9")]
    results, reports = ingest_phenopackets(docs, store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports)
    for doc, stored in zip(docs, _stored(store, results), strict=True):
        assert doc["subject"]["id"] not in _strings(stored)
        assert re.fullmatch(r"interpretation-[0-9a-f]{24}", stored["interpretations"][0]["id"])


def test_unrelated_biosamples_with_the_same_label_stay_two_samples(store):
    docs = [
        _packet("PMID_3_proband", "proband", sample="biosample.1"),
        _packet("PMID_4_II-1", "II-1", sample="biosample.1"),
    ]
    results, reports = ingest_phenopackets(docs, store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports)
    stored = _stored(store, results)
    ids = [[b["id"] for b in s["biosamples"]] for s in stored]
    assert len({i for pair in ids for i in pair}) == 4  # two people's two samples each: four
    for doc, packet in zip(docs, stored, strict=True):
        assert not {"biosample.1", "biosample.1-dna", doc["subject"]["id"]} & set(_strings(packet))
        blood, dna = packet["biosamples"]
        assert blood["individualId"] == dna["individualId"] == packet["subject"]["id"]
        assert dna["derivedFromId"] == blood["id"]  # the links between samples hold
        genomic = packet["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
        assert genomic["subjectOrBiosampleId"] == blood["id"]
        assert set(dna["files"][0]["individualToFileIdentifiers"]) == {dna["id"]}
        assert set(packet["files"][0]["individualToFileIdentifiers"]) == {blood["id"], packet["subject"]["id"]}


def test_alternate_ids_are_pseudonymised_alike_wherever_they_recur(store):
    docs = [
        _packet("PMID_5_a", "a", alternate=["MRN:12345", "local:x-9"]),
        _packet("PMID_6_b", "b", alternate=["MRN:12345"]),
    ]
    results, reports = ingest_phenopackets(docs, store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports)
    first, second = (s["subject"]["alternateIds"] for s in _stored(store, results))
    assert len(first) == 2 and not {"MRN:12345", "local:x-9"} & set(first + second)
    assert first[0] == second[0] != first[1]  # the same record number links the two, as it did


def test_key_rotation_carries_the_derived_sample_and_interpretation_ids(store):
    doc = _packet("PMID_7_p", "p", sample="s-77")
    (result,), _ = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    before = store.get_phenopacket(result.id).document
    rotate_metadata(store, b"the-next-key-in-the-chain-000000")
    (after,), _ = store.list_phenopackets(dataset_id="ds1")
    moved = after.document
    assert moved["biosamples"][0]["id"] != before["biosamples"][0]["id"]
    assert moved["interpretations"][0]["id"] != before["interpretations"][0]["id"]
    assert moved["biosamples"][1]["derivedFromId"] == moved["biosamples"][0]["id"]
    genomic = moved["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    assert genomic["subjectOrBiosampleId"] == moved["biosamples"][0]["id"]


def test_the_issues_kept_with_the_row_do_not_quote_the_labels(store):
    """The GA4GH examples name their variant's subject 'arbitrary interpretation id' (neither the subject nor
    a biosample): the warning quoted that label, and was stored with the row; a duplicate's note named the
    files (whose names are often the person's label)."""
    stray = _packet("PMID_8_Patient_2", "Patient 2", sample="blood 7")
    genomic = stray["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    genomic["subjectOrBiosampleId"] = "arbitrary interpretation id"
    stray["biosamples"][0]["individualId"] = "Patient 2's mother"
    locations = ["registry/Patient_2.json", "registry/Patient_2_again.json"]
    results, reports = ingest_phenopackets(
        [stray, copy.deepcopy(stray)], store=store, key=KEY, dataset_id="ds1", locations=locations
    )
    answered = [i.message for r in reports for i in r]
    assert any("'arbitrary interpretation id'" in m for m in answered)  # the sender is told in their own terms
    assert any("registry/Patient_2.json" in m for m in answered)
    row = store.get_phenopacket(results[1].id)
    kept = " ".join(i["message"] for i in row.issues)
    assert {i["code"] for i in row.issues} >= {"unknown-reference", "duplicate"}
    for raw in ("arbitrary interpretation id", "Patient 2", "blood 7", "PMID_8_Patient_2", "registry/"):
        assert raw not in kept
    named = row.document["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["subjectOrBiosampleId"]
    assert repr(named) in kept  # the stored warning names what the document now holds


def test_one_id_for_two_different_documents_in_a_request_is_refused_on_both(store):
    """The phenopacket-tools examples give eight different people the document id "arbitrary.id" (four of them
    the subject "proband A"); it used to store one of them, with warnings, exit 0."""
    docs = [_packet("arbitrary.id", "proband A"), _packet("arbitrary.id", "16-year-old boy"), _packet("x", "y")]
    docs.append(_packet("arbitrary.id", "proband A", sample="biosample.1"))
    results, reports = ingest_phenopackets(
        docs, store=store, key=KEY, dataset_id="ds1", locations=["a.json", "b.json", "c.json", "d.json"]
    )
    assert results == [] and store.list_phenopackets(dataset_id="ds1")[1] == 0
    errors = [[i for i in r if i.is_error] for r in reports]
    assert [len(e) for e in errors] == [1, 1, 0, 1]
    assert all(e[0].code == "duplicate" and e[0].location == "/id" for e in errors if e)
    assert "b.json, d.json" in errors[0][0].message and "a.json, d.json" in errors[1][0].message
    assert "c.json" not in errors[3][0].message


def _dated(doc: dict, birth: str | None) -> dict:
    """The dates a registry export carries (ERKER2Phenopackets: a birth date, onsets as timestamps; the GA4GH
    COVID example: timestamps and no birth date) and a dose interval, which the model keeps as timestamps."""
    if birth:
        doc["subject"]["dateOfBirth"] = birth
    doc["subject"]["vitalStatus"] = {"status": "DECEASED", "timeOfDeath": {"timestamp": "2024-12-05T14:41:44Z"}}
    doc["phenotypicFeatures"][0]["onset"] = {"timestamp": "1992-06-16T00:00:00Z"}
    doc["phenotypicFeatures"][0]["resolution"] = {
        "interval": {"start": "1993-01-01T00:00:00Z", "end": "2000-06-30T00:00:00Z"}
    }
    doc["medicalActions"] = [
        {
            "treatment": {
                "agent": {"id": "HP:0001250", "label": "Seizure"},
                "doseIntervals": [
                    {
                        "quantity": {"unit": {"id": "HP:0001250", "label": "Seizure"}, "value": 1.0},
                        "scheduleFrequency": {"id": "HP:0001250", "label": "Seizure"},
                        "interval": {"start": "2020-02-03T13:20:44Z", "end": "2020-03-01T00:00:00Z"},
                    }
                ],
            }
        }
    ]
    return doc


def _timestamps(value, path="") -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}/timestamp"] if "timestamp" in value else []
        if isinstance(value.get("interval"), dict) and "start" in value["interval"]:
            found.append(f"{path}/interval")
        return found + [p for k, v in value.items() for p in _timestamps(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [p for n, v in enumerate(value) for p in _timestamps(v, f"{path}/{n}")]
    return []


def test_dates_of_the_persons_life_become_ages_at_them(store):
    doc = _dated(_packet("ERKER_0", "0"), "1962-12-05T12:07:33Z")
    (result,), (report,) = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    stored = store.get_phenopacket(result.id).document
    assert _timestamps(stored) == ["/medicalActions/0/treatment/doseIntervals/0/interval"]
    assert stored["subject"]["vitalStatus"]["timeOfDeath"] == {
        "age": {"iso8601duration": "P62Y"}
    }  # on the 62nd birthday
    feature = stored["phenotypicFeatures"][0]
    assert feature["onset"] == {"age": {"iso8601duration": "P29Y"}}
    assert feature["resolution"] == {
        "ageRange": {"start": {"iso8601duration": "P30Y"}, "end": {"iso8601duration": "P37Y"}}
    }
    assert "dateOfBirth" not in stored["subject"]
    assert any(i.code == "minimised" and "3 date(s)" in i.message for i in report)
    assert validate_phenopacket(stored, target="output").ok


def test_dates_without_a_birth_date_are_removed_with_a_warning(store):
    doc = _dated(_packet("COVID_1", "P1"), None)
    (result,), (report,) = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    stored = store.get_phenopacket(result.id).document
    assert _timestamps(stored) == ["/medicalActions/0/treatment/doseIntervals/0/interval"]
    assert stored["subject"]["vitalStatus"] == {"status": "DECEASED"}
    removed = {i.location for i in report if i.code == "minimised"}
    expected = {"/subject/vitalStatus/timeOfDeath", "/phenotypicFeatures/0/onset", "/phenotypicFeatures/0/resolution"}
    assert removed == expected
