"""The pure phenopacket → Beacon translator: every reference phenopacket gives records that validate
against the official individuals/biosamples default schemas, and the mapping rules hold."""

from __future__ import annotations

import json

from tests.beacon.official_schemas import MODELS, REFERENCE, errors_against
from translators.phenopacket_to_beacon import biosample_records, individual_record, sex_term, time_element


def test_every_reference_phenopacket_translates_to_valid_records(reference_dir):
    files = sorted((REFERENCE / "phenopackets").rglob("*.json"))
    checked = biosamples = 0
    for path in files:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "subject" not in doc:
            continue
        record = individual_record(doc)
        assert errors_against(MODELS / "individuals/defaultSchema.json", record) == [], path
        for sample in biosample_records(doc):
            biosamples += 1
            assert errors_against(MODELS / "biosamples/defaultSchema.json", sample) == [], path
        checked += 1
    assert checked >= 300 and biosamples >= 1


def test_mapping_rules():
    assert sex_term("FEMALE") == {"id": "NCIT:C16576", "label": "female"}
    assert sex_term("MALE")["id"] == "NCIT:C20197"
    assert sex_term(None)["id"] == sex_term("UNKNOWN_SEX")["id"] == "NCIT:C17998"
    assert time_element({"age": {"iso8601duration": "P3Y"}}) == {"iso8601duration": "P3Y"}
    assert time_element({"ontologyClass": {"id": "HP:0003577", "label": "Congenital onset"}})["id"] == "HP:0003577"
    assert time_element({"timestamp": "2020-01-01T00:00:00Z"}) is None  # no object form in Beacon
    doc = {
        "id": "p1",
        "subject": {"id": "s1", "sex": "FEMALE", "timeAtLastEncounter": {"age": {"iso8601duration": "P40Y"}}},
        "phenotypicFeatures": [
            {"type": {"id": "HP:0001250", "label": "Seizure"}, "onset": {"age": {"iso8601duration": "P2Y"}}},
            {"type": {"id": "HP:0001263", "label": "Global developmental delay"}, "excluded": True},
        ],
        "diseases": [{"term": {"id": "OMIM:607208", "label": "Dravet"}}, {"term": {"id": "OMIM:1"}, "excluded": True}],
        "medicalActions": [
            {"procedure": {"code": {"id": "NCIT:C5189", "label": "Cystoprostatectomy"}}},
            {"treatment": {"agent": {"id": "DrugCentral:257", "label": "carbamazepine"}}},
        ],
        "measurements": [
            {
                "assay": {"id": "LOINC:2345-7", "label": "Glucose"},
                "value": {"quantity": {"unit": {"id": "UCUM:mg/dL", "label": "mg/dL"}, "value": 90}},
            }
        ],
        "biosamples": [{"id": "b1", "sampledTissue": {"id": "UBERON:0000178", "label": "blood"}}],
    }
    record = individual_record(doc, individual_id="pid-1")
    assert record["id"] == "pid-1" and record["sex"]["id"] == "NCIT:C16576"
    assert record["phenotypicFeatures"][0] == {
        "featureType": {"id": "HP:0001250", "label": "Seizure"},
        "onset": {"iso8601duration": "P2Y"},
    }
    assert record["phenotypicFeatures"][1]["excluded"] is True
    assert [d["diseaseCode"]["id"] for d in record["diseases"]] == ["OMIM:607208"]
    assert record["info"]["excludedDiseases"] == [{"id": "OMIM:1"}]
    assert record["interventionsOrProcedures"] == [
        {"procedureCode": {"id": "NCIT:C5189", "label": "Cystoprostatectomy"}}
    ]
    assert record["treatments"][0]["treatmentCode"]["id"] == "DrugCentral:257"
    assert record["measures"][0]["measurementValue"] == {"unit": {"id": "UCUM:mg/dL", "label": "mg/dL"}, "value": 90}
    (sample,) = biosample_records(doc, individual_id="pid-1")
    assert sample["individualId"] == "pid-1" and sample["sampleOriginDetail"]["id"] == "UBERON:0000178"
    assert errors_against(MODELS / "individuals/defaultSchema.json", record) == []
    assert errors_against(MODELS / "biosamples/defaultSchema.json", sample) == []
